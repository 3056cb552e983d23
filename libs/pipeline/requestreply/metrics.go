package requestreply

import (
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// replyWait times the waits for replies. Its name is the gateway's, where
// Send began: the dashboards and alerts read it.
var replyWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "answerback_gateway_reply_wait_seconds",
	Help:    "Time a command request waited for its reply after producing the command, by result (reply, none).",
	Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms to about 33 s
}, []string{"result"})

func init() { prometheus.MustRegister(replyWait) }

// observeReplyWait records a reply wait begun at began; replied says whether a reply came.
func observeReplyWait(began time.Time, replied bool) {
	result := "none"
	if replied {
		result = "reply"
	}
	replyWait.WithLabelValues(result).Observe(time.Since(began).Seconds())
}

// newCommandID is a random (version 4) UUID.
func newCommandID() string { return uuid.NewString() }

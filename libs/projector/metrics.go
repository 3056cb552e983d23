package projector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// batchSeconds times one batch's PostgreSQL transaction, retries not
	// included, by whether it committed.
	batchSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "answerback_projector_batch_seconds",
		Help:    "Duration of one projector batch (one PostgreSQL transaction), by projection and result.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1 ms to 8 s
	}, []string{"projection", "result"})
	// batchRecords sizes a committed batch by the event records it held.
	batchRecords = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "answerback_projector_batch_records",
		Help:    "Event records in one committed projector batch, by projection.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
	}, []string{"projection"})
	// repliesSent counts replies the broker acknowledged.
	repliesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "answerback_projector_replies_sent_total",
		Help: "Replies the projector produced to a gateway's reply topic after its batch committed, by projection.",
	}, []string{"projection"})
)

func init() { prometheus.MustRegister(batchSeconds, batchRecords, repliesSent) }

// observeBatch records one batch of projection, of records events, begun at began.
func observeBatch(projection string, began time.Time, records int, err error) {
	result := "committed"
	if err != nil {
		result = "failed"
	}
	batchSeconds.WithLabelValues(projection, result).Observe(time.Since(began).Seconds())
	if err == nil {
		batchRecords.WithLabelValues(projection).Observe(float64(records))
	}
}

package projector

import (
	"time"

	"github.com/answerback/answerback/libs/pipeline/batchmetrics"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// batches times each batch's PostgreSQL transaction, retries not
	// included, by whether it committed, and sizes a committed one by the
	// event records it held.
	batches = batchmetrics.New("answerback_projector_batch", "projection",
		"Duration of one projector batch (one PostgreSQL transaction), by projection and result.",
		"Event records in one committed projector batch, by projection.")
	// repliesSent counts replies the broker acknowledged.
	repliesSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "answerback_projector_replies_sent_total",
		Help: "Replies the projector produced to a gateway's reply topic after its batch committed, by projection.",
	}, []string{"projection"})
)

func init() { prometheus.MustRegister(append(batches.Collectors(), repliesSent)...) }

// observeBatch records one batch of projection, of records events, begun at began.
func observeBatch(projection string, began time.Time, records int, err error) {
	result := "committed"
	if err != nil {
		result = "failed"
	}
	batches.Observe(projection, began, result, err == nil, records)
}

// Package batchmetrics measures a runtime that works in batches — the
// aggregator's transactions, the projector's PostgreSQL transactions — the
// same way: how long each batch took, by result, and how many records a
// committed one held.
package batchmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Batches are one runtime's batch metrics: <name>_seconds{<by>, result} and
// <name>_records{<by>}. Register them once (MustRegister).
type Batches struct {
	Seconds *prometheus.HistogramVec // by owner and result
	Records *prometheus.HistogramVec // by owner
}

// New describes the batches of name ("answerback_projector_batch"), labelled
// by the label by ("projection"), with the help texts of their duration and
// their size.
func New(name, by, secondsHelp, recordsHelp string) Batches {
	return Batches{
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: name + "_seconds", Help: secondsHelp,
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1 ms to 8 s
		}, []string{by, "result"}),
		Records: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: name + "_records", Help: recordsHelp,
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
		}, []string{by}),
	}
}

// Collectors are the metrics, for prometheus.MustRegister.
func (b Batches) Collectors() []prometheus.Collector {
	return []prometheus.Collector{b.Seconds, b.Records}
}

// Observe records a batch of owner that began at began and ended with
// result; records is its size, counted when committed is set.
func (b Batches) Observe(owner string, began time.Time, result string, committed bool, records int) {
	b.Seconds.WithLabelValues(owner, result).Observe(time.Since(began).Seconds())
	if committed {
		b.Records.WithLabelValues(owner).Observe(float64(records))
	}
}

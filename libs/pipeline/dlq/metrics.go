package dlq

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// deadLetters counts the dead letters this process has committed, by the
// stage that refused the record and the topic it came from.
var deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "answerback_dead_letters_total",
	Help: "Records sent to a dead-letter topic, by the stage that refused them and their source topic.",
}, []string{"stage", "source_topic"})

func init() { prometheus.MustRegister(deadLetters) }

// Counted records that dead letter d (made by Record) reached its topic:
// call it once the produce, or the transaction carrying it, committed.
func Counted(d *kgo.Record) {
	var stage, source string
	for _, h := range d.Headers {
		switch h.Key {
		case HStage:
			stage = string(h.Value)
		case HSourceTopic:
			source = string(h.Value)
		}
	}
	deadLetters.WithLabelValues(stage, source).Inc()
}

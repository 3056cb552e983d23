package aggregate

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a command, as counted by answerback_aggregator_commands_total.
const (
	outcomeApplied      = "applied"
	outcomeRejected     = "rejected"
	outcomeDuplicate    = "duplicate"
	outcomeDeadLettered = "dead_lettered"
)

var (
	// transactionSeconds times one batch's transaction, Begin to End, by
	// whether it committed.
	transactionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "answerback_aggregator_transaction_seconds",
		Help:    "Duration of one aggregator transaction (begin to commit or abort), by aggregate and result.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1 ms to 8 s
	}, []string{"aggregate", "result"})
	// transactionRecords sizes a committed transaction by the commands it decided.
	transactionRecords = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "answerback_aggregator_transaction_records",
		Help:    "Command records decided in one committed aggregator transaction, by aggregate.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 to 1024
	}, []string{"aggregate"})
	// commandsDecided counts commands once the transaction deciding them committed.
	commandsDecided = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "answerback_aggregator_commands_total",
		Help: "Commands decided in committed transactions, by aggregate and outcome (applied, rejected, duplicate, dead_lettered).",
	}, []string{"aggregate", "outcome"})
)

func init() { prometheus.MustRegister(transactionSeconds, transactionRecords, commandsDecided) }

// observeTransaction records one transaction of aggregate that began at
// began and decided outcomes (command count per outcome); only a committed
// one counts its size and commands.
func observeTransaction(aggregate string, began time.Time, committed bool, outcomes map[string]int) {
	result := "aborted"
	if committed {
		result = "committed"
	}
	transactionSeconds.WithLabelValues(aggregate, result).Observe(time.Since(began).Seconds())
	if !committed {
		return
	}
	n := 0
	for outcome, count := range outcomes {
		commandsDecided.WithLabelValues(aggregate, outcome).Add(float64(count))
		n += count
	}
	transactionRecords.WithLabelValues(aggregate).Observe(float64(n))
}

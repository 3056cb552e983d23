package aggregate

import (
	"time"

	"github.com/answerback/answerback/libs/pipeline/batchmetrics"

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
	// transactions times each batch's transaction, Begin to End, by whether
	// it committed, and sizes a committed one by the commands it decided.
	transactions = batchmetrics.New("answerback_aggregator_transaction", "aggregate",
		"Duration of one aggregator transaction (begin to commit or abort), by aggregate and result.",
		"Command records decided in one committed aggregator transaction, by aggregate.")
	// commandsDecided counts commands once the transaction deciding them committed.
	commandsDecided = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "answerback_aggregator_commands_total",
		Help: "Commands decided in committed transactions, by aggregate and outcome (applied, rejected, duplicate, dead_lettered).",
	}, []string{"aggregate", "outcome"})
)

func init() { prometheus.MustRegister(append(transactions.Collectors(), commandsDecided)...) }

// observeTransaction records one transaction of aggregate that began at
// began and decided outcomes (command count per outcome); only a committed
// one counts its size and commands.
func observeTransaction(aggregate string, began time.Time, committed bool, outcomes map[string]int) {
	result := "aborted"
	if committed {
		result = "committed"
	}
	n := 0
	if committed {
		for outcome, count := range outcomes {
			commandsDecided.WithLabelValues(aggregate, outcome).Add(float64(count))
			n += count
		}
	}
	transactions.Observe(aggregate, began, result, committed, n)
}

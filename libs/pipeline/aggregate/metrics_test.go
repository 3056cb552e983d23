package aggregate

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestObserveTransaction: a committed transaction counts its commands by
// outcome and its size; an aborted one only its duration.
func TestObserveTransaction(t *testing.T) {
	const agg = "metrics-test"
	applied := func() float64 { return testutil.ToFloat64(commandsDecided.WithLabelValues(agg, outcomeApplied)) }
	rejected := func() float64 { return testutil.ToFloat64(commandsDecided.WithLabelValues(agg, outcomeRejected)) }
	a0, r0 := applied(), rejected()
	sizes0 := testutil.CollectAndCount(transactions.Records)

	observeTransaction(agg, time.Now(), true, map[string]int{outcomeApplied: 3, outcomeRejected: 1})
	observeTransaction(agg, time.Now(), false, map[string]int{outcomeApplied: 5})

	if got := applied() - a0; got != 3 {
		t.Errorf("applied rose by %v, want 3 (the aborted transaction's commands are not counted)", got)
	}
	if got := rejected() - r0; got != 1 {
		t.Errorf("rejected rose by %v, want 1", got)
	}
	if sizes0 == 0 && testutil.CollectAndCount(transactions.Records) != 1 {
		t.Errorf("transaction size not observed")
	}
	if n := testutil.CollectAndCount(transactions.Seconds, "answerback_aggregator_transaction_seconds"); n < 2 {
		t.Errorf("%d duration series, want committed and aborted", n)
	}
}

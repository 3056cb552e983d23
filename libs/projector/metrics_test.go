package projector

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestObserveBatch: every batch is timed by result; only a committed one is sized.
func TestObserveBatch(t *testing.T) {
	const name = "metrics-test"
	observeBatch(name, time.Now(), 12, nil)
	observeBatch(name, time.Now(), 7, errors.New("database down"))
	if n := testutil.CollectAndCount(batches.Seconds, "answerback_projector_batch_seconds"); n < 2 {
		t.Errorf("%d duration series, want committed and failed", n)
	}
	if n := testutil.CollectAndCount(batches.Records, "answerback_projector_batch_records"); n != 1 {
		t.Errorf("%d size series, want 1 (the failed batch is not sized)", n)
	}
	before := testutil.ToFloat64(repliesSent.WithLabelValues(name))
	repliesSent.WithLabelValues(name).Inc()
	if got := testutil.ToFloat64(repliesSent.WithLabelValues(name)) - before; got != 1 {
		t.Errorf("replies sent rose by %v, want 1", got)
	}
}

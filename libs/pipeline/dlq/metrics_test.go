package dlq

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCountedByStageAndSource: each committed dead letter adds one under its
// stage and source topic.
func TestCountedByStageAndSource(t *testing.T) {
	src := &kgo.Record{Topic: "metrics-test.commands", Partition: 2, Offset: 7, Value: []byte("x")}
	before := testutil.ToFloat64(deadLetters.WithLabelValues("aggregator", src.Topic))
	d := Record("metrics-test.dlq", "aggregator", src, errors.New("not JSON"))
	Counted(d)
	Counted(d)
	if got := testutil.ToFloat64(deadLetters.WithLabelValues("aggregator", src.Topic)) - before; got != 2 {
		t.Fatalf("counter rose by %v, want 2", got)
	}
}

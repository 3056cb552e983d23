package aggregate

import (
	"fmt"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// TestWithKeyForgetsOldestBeyondLimit: past the limit the commands sent
// first are forgotten and forgotten moves to the newest of them; commands
// decided longer than the window ago are dropped.
func TestWithKeyForgetsOldestBeyondLimit(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var e entry[struct{}]
	for i := range 5 {
		sent := base.Add(time.Duration(i) * time.Second)
		e = e.withKey(fmt.Sprint("k", i), keyRecord{At: sent, Sent: sent}, time.Hour, 3)
	}
	if len(e.keys) != 3 {
		t.Fatalf("%d keys remembered, want 3", len(e.keys))
	}
	for _, k := range []string{"k2", "k3", "k4"} {
		if _, ok := e.keys[k]; !ok {
			t.Errorf("%s forgotten, want it remembered", k)
		}
	}
	if want := base.Add(time.Second); !e.forgotten.Equal(want) {
		t.Errorf("forgotten = %s, want %s (k1's send time)", e.forgotten, want)
	}

	later := base.Add(2 * time.Hour)
	e = e.withKey("k9", keyRecord{At: later, Sent: later}, time.Hour, 3)
	if len(e.keys) != 1 {
		t.Errorf("after the window: %d keys, want only k9", len(e.keys))
	}
}

// TestDedupeKey: the idempotency key when there is one, else the command ID
// in a namespace no idempotency key can reach (keys have no spaces).
func TestDedupeKey(t *testing.T) {
	t.Parallel()
	keyed := envelope.Command{Meta: envelope.Meta{CommandID: "c1", IdempotencyKey: "k"}}
	bare := envelope.Command{Meta: envelope.Meta{CommandID: "c1"}}
	if dedupeKey(keyed) != "k" || dedupeKey(bare) != "command c1" {
		t.Fatalf("dedupeKey: %q, %q", dedupeKey(keyed), dedupeKey(bare))
	}
}

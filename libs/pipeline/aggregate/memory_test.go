package aggregate

import (
	"fmt"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// TestRememberForgetsOldestBeyondLimit: past the limit the commands sent
// first are forgotten — deleted, so their records get tombstones — and
// forgotten moves to the newest of them; pruneOlderThan drops the commands
// decided before the window.
func TestRememberForgetsOldestBeyondLimit(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := newPending(entry[struct{}]{}, 0)
	for i := range 5 {
		sent := base.Add(time.Duration(i) * time.Second)
		e.remember(fmt.Sprint("k", i), keyRecord{At: sent, Sent: sent}, 3)
	}
	if len(e.keys) != 3 {
		t.Fatalf("%d keys remembered, want 3", len(e.keys))
	}
	for _, k := range []string{"k2", "k3", "k4"} {
		if _, ok := e.keys[k]; !ok || !e.written[k] {
			t.Errorf("%s forgotten or not to be written, want it remembered", k)
		}
	}
	for _, k := range []string{"k0", "k1"} {
		if kept, ok := e.written[k]; !ok || kept {
			t.Errorf("%s: written = %v, %v; want a tombstone", k, kept, ok)
		}
	}
	if want := base.Add(time.Second); !e.forgotten.Equal(want) {
		t.Errorf("forgotten = %s, want %s (k1's send time)", e.forgotten, want)
	}

	later := base.Add(2 * time.Hour)
	e.remember("k9", keyRecord{At: later, Sent: later}, 3)
	e.pruneOlderThan(later.Add(-time.Hour))
	if len(e.keys) != 1 {
		t.Errorf("after the window: %d keys, want only k9", len(e.keys))
	}
}

// TestRememberForgetsFirstDecidedOfTheSameInstant: commands whose records
// were sent in the same millisecond are forgotten in the order they were
// decided.
func TestRememberForgetsFirstDecidedOfTheSameInstant(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 20 { // map order varies from run to run
		e := newPending(entry[struct{}]{}, 0)
		for i := range 6 {
			e.remember(fmt.Sprint("k", i), keyRecord{Sent: sent, At: sent.Add(time.Duration(i) * time.Microsecond)}, 3)
		}
		for _, k := range []string{"k3", "k4", "k5"} {
			if _, ok := e.keys[k]; !ok {
				t.Fatalf("%s forgotten; want the three decided last remembered, have %v", k, e.keys)
			}
		}
	}
}

// TestPendingLeavesCommittedUntouched: a batch works on a copy; the
// committed entry keeps its commands whatever the batch does.
func TestPendingLeavesCommittedUntouched(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	committed := entry[struct{}]{keys: map[string]keyRecord{"a": {At: at, Sent: at}}}
	e := newPending(committed, 0)
	e.remember("b", keyRecord{At: at.Add(time.Second), Sent: at.Add(time.Second)}, 1)
	if _, ok := committed.keys["a"]; !ok || len(committed.keys) != 1 {
		t.Fatalf("committed keys changed by the batch: %v", committed.keys)
	}
	if _, ok := e.keys["a"]; ok {
		t.Fatalf("the batch still remembers a past its limit of 1")
	}
}

// TestRemembersWithinWindowOnly: a command decided longer than the window
// ago is not answered as a duplicate even before it is pruned.
func TestRemembersWithinWindowOnly(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := entry[struct{}]{keys: map[string]keyRecord{"k": {At: at}}}
	if _, ok := e.remembers("k", at.Add(time.Minute), time.Hour); !ok {
		t.Error("k not remembered within its window")
	}
	if _, ok := e.remembers("k", at.Add(2*time.Hour), time.Hour); ok {
		t.Error("k remembered past its window")
	}
}

// TestLegacySnapshotKeysAreWrittenAgain: an entry restored from a snapshot
// that carried its commands inline writes them all as records of their own
// at its next change, so that none is lost when the new state record
// replaces the old one.
func TestLegacySnapshotKeysAreWrittenAgain(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := newPending(entry[struct{}]{keys: map[string]keyRecord{"a": {At: at}, "b": {At: at}}, legacyKeys: true}, 0)
	if !e.written["a"] || !e.written["b"] || e.legacyKeys {
		t.Fatalf("written = %v, legacyKeys = %v; want a and b written, legacy cleared", e.written, e.legacyKeys)
	}
}

// TestRememberedKeyRoundTrip: the key of a remembered command names its
// stream and dedupe key unambiguously, whatever bytes they hold, and no
// state record's key parses as one.
func TestRememberedKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ stream, dedupe string }{
		{"acme/order-1", "command c1"},
		{"acme/order-1\x00r", "k"},
		{"", ""},
		{"t/" + string(make([]byte, 300)), "key/with/slashes"},
	} {
		stream, dedupe, ok, err := parseRememberedKey(rememberedKey(c.stream, c.dedupe))
		if err != nil || !ok || stream != c.stream || dedupe != c.dedupe {
			t.Errorf("%q %q: got %q %q ok=%v err=%v", c.stream, c.dedupe, stream, dedupe, ok, err)
		}
	}
	if _, _, ok, err := parseRememberedKey([]byte("acme/order-1")); ok || err != nil {
		t.Errorf("a stream key parsed as a remembered command: ok=%v err=%v", ok, err)
	}
	if _, _, _, err := parseRememberedKey([]byte(rememberedPrefix + "\x7f")); err == nil {
		t.Error("a truncated remembered-command key parsed")
	}
	if validStreamKey([]byte(rememberedPrefix+"x")) == nil || validStreamKey([]byte("acme/o-1")) != nil {
		t.Error("validStreamKey: want keys starting with NUL refused, others accepted")
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

// TestForgottenInTheSameInstantIsExact: of records sent in the millisecond
// of the newest command forgotten, only those under a key forgotten then
// count as possibly applied (stale); a new command sent in that millisecond
// is decided. The keys survive the snapshot, and a snapshot without them
// (an older format) counts every record of that millisecond as forgotten.
func TestForgottenInTheSameInstantIsExact(t *testing.T) {
	t.Parallel()
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := newPending(entry[struct{}]{}, 0)
	for i := range 5 {
		e.remember(fmt.Sprint("k", i), keyRecord{Sent: sent, At: sent.Add(time.Duration(i) * time.Microsecond)}, 3)
	}
	for _, c := range []struct {
		key  string
		sent time.Time
		want bool
	}{
		{"k0", sent, true},
		{"k1", sent, true},
		{"new", sent, false},
		{"new", sent.Add(-time.Millisecond), true},
		{"k0", sent.Add(time.Millisecond), false},
	} {
		if got := e.mayHaveForgotten(c.key, c.sent); got != c.want {
			t.Errorf("mayHaveForgotten(%s, %s) = %v, want %v", c.key, c.sent.Format(time.StampMilli), got, c.want)
		}
	}

	r := &Runtime[struct{}]{cfg: Config{Topics: topics.For("", "t")}}
	e.stateJSON = []byte(`{}`)
	state, remembered := map[string]entry[struct{}]{}, map[string]map[string]keyRecord{}
	for _, rec := range r.snapshotRecords("s", e) {
		if err := restoreRecord(state, remembered, rec); err != nil {
			t.Fatal(err)
		}
	}
	restored := state["s"]
	if !restored.mayHaveForgotten("k1", sent) || restored.mayHaveForgotten("new", sent) {
		t.Errorf("restored: forgotten %s, keys at it %v; want k0 and k1 only", restored.forgotten, restored.forgottenAt)
	}

	legacy := entry[struct{}]{forgotten: sent}
	if !legacy.mayHaveForgotten("new", sent) {
		t.Error("a snapshot without the keys forgotten: a record of the same millisecond must count as forgotten")
	}
}

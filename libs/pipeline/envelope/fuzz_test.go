package envelope

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordFrom builds a record from fuzzed parts: a key, a value and up to
// four headers given as name/value pairs.
func recordFrom(key, value []byte, h1, v1, h2, v2, h3, v3, h4, v4 string) *kgo.Record {
	rec := &kgo.Record{Topic: "t", Key: key, Value: value}
	for _, h := range [][2]string{{h1, v1}, {h2, v2}, {h3, v3}, {h4, v4}} {
		if h[0] != "" {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
	}
	return rec
}

// FuzzDecodeCommand: decoding never panics, and what decodes re-encodes to
// a record that decodes to the same command.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte("order-1"), []byte(`{"sku":"pear","quantity":2}`), HCommandID, "c-1", HCommandType, "orders.add-item", HDeadline, "2026-01-02T03:04:05Z", HExpectedVersion, "3")
	f.Add([]byte(""), []byte("not json"), HCommandID, "", HCommandType, "x", HDeadline, "tomorrow", HExpectedVersion, "-1")
	f.Add([]byte("k"), []byte(`{}`), HCommandID, "c", HCommandType, "t", HReplyTo, "r", HIdempotencyKey, "\x00")
	f.Fuzz(func(t *testing.T, key, value []byte, h1, v1, h2, v2, h3, v3, h4, v4 string) {
		cmd, err := DecodeCommand(recordFrom(key, value, h1, v1, h2, v2, h3, v3, h4, v4))
		if err != nil {
			return
		}
		again, err := DecodeCommand(EncodeCommand("t", cmd))
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if again.CommandID != cmd.CommandID || again.Type != cmd.Type || again.AggregateID != cmd.AggregateID ||
			again.ExpectedVersion != cmd.ExpectedVersion || !again.Deadline.Equal(cmd.Deadline) || string(again.Data) != string(cmd.Data) {
			t.Fatalf("round trip changed the command: %+v → %+v", cmd, again)
		}
	})
}

// FuzzDecodeEvent: decoding never panics; a decoded event re-encodes to the same event.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte("order-1"), []byte(`{}`), CESpecVersion, "1.0", CESubject, "order-1", CEType, "orders.created.v1", CESequence, "1")
	f.Add([]byte("order-1"), []byte(`{}`), CESpecVersion, "1.0", CESubject, "order-1", HCommandEvents, "3/2", CESequence, "0")
	f.Add([]byte("o"), []byte(`[]`), CESpecVersion, "1.0", CESubject, "o", CEType, "t", CETime, "yesterday")
	f.Fuzz(func(t *testing.T, key, value []byte, h1, v1, h2, v2, h3, v3, h4, v4 string) {
		ev, err := DecodeEvent(recordFrom(key, value, h1, v1, h2, v2, h3, v3, h4, v4))
		if err != nil {
			return
		}
		if ev.Version < 1 || ev.Index < 1 || ev.Index > ev.Count {
			t.Fatalf("decoded an event breaking its invariants: %+v", ev)
		}
		again, err := DecodeEvent(EncodeEvent("t", "s", ev))
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		if again.Version != ev.Version || again.Type != ev.Type || again.Index != ev.Index || again.Count != ev.Count || !again.Time.Equal(ev.Time.Truncate(0)) {
			t.Fatalf("round trip changed the event: %+v → %+v", ev, again)
		}
	})
}

// FuzzDecodeReplyAndOutcome: replies and outcomes never panic the decoder,
// and only the three outcomes decode.
func FuzzDecodeReplyAndOutcome(f *testing.F) {
	f.Add([]byte("c-1"), []byte(`{}`), HCommandID, "c-1", HOutcome, "applied", HVersion, "2", HTenant, "acme")
	f.Add([]byte(""), []byte(`{`), HCommandID, "", HOutcome, "maybe", HVersion, "x", "", "")
	f.Fuzz(func(t *testing.T, key, value []byte, h1, v1, h2, v2, h3, v3, h4, v4 string) {
		rec := recordFrom(key, value, h1, v1, h2, v2, h3, v3, h4, v4)
		if reply, err := DecodeReply(rec); err == nil {
			switch reply.Outcome {
			case Applied, Rejected, Duplicate:
			default:
				t.Fatalf("decoded unknown outcome %q", reply.Outcome)
			}
		}
		_, _, _, _ = DecodeOutcome(rec)
	})
}

package envelope

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func sampleCommand() Command {
	return Command{
		Meta: Meta{
			CommandID: "c-1", AggregateID: "order-1", ReplyTo: "replies.gw1",
			Deadline: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Tenant: "acme",
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", IdempotencyKey: "k-1", ExpectedVersion: 7,
		},
		Type: "orders.add-item",
		Data: []byte(`{"sku":"pear","quantity":2}`),
	}
}

func TestCommandRoundTrip(t *testing.T) {
	t.Parallel()
	in := sampleCommand()
	rec := EncodeCommand("orders.commands", in)
	if string(rec.Key) != "acme/order-1" || rec.Topic != "orders.commands" {
		t.Fatalf("record keyed %q on %q: want the tenant's aggregate ID on the commands topic", rec.Key, rec.Topic)
	}
	out, err := DecodeCommand(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Deadline.Equal(in.Deadline) {
		t.Fatalf("deadline %v, want %v", out.Deadline, in.Deadline)
	}
	out.Deadline = in.Deadline
	if out.Meta != in.Meta || out.Type != in.Type || string(out.Data) != string(in.Data) {
		t.Fatalf("decoded %+v, want %+v", out, in)
	}
	noVersion := sampleCommand()
	noVersion.ExpectedVersion = NoVersion
	if out, _ := DecodeCommand(EncodeCommand("t", noVersion)); out.ExpectedVersion != NoVersion {
		t.Fatalf("expected version %d, want NoVersion", out.ExpectedVersion)
	}
}

func TestDecodeCommandRejectsBadInput(t *testing.T) {
	t.Parallel()
	without := func(name string) *kgo.Record {
		rec := EncodeCommand("t", sampleCommand())
		var hs []kgo.RecordHeader
		for _, h := range rec.Headers {
			if h.Key != name {
				hs = append(hs, h)
			}
		}
		rec.Headers = hs
		return rec
	}
	with := func(name, value string) *kgo.Record {
		rec := without(name)
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: name, Value: []byte(value)})
		return rec
	}
	noKey := EncodeCommand("t", sampleCommand())
	noKey.Key = nil
	badJSON := EncodeCommand("t", sampleCommand())
	badJSON.Value = []byte("{not json")

	cases := map[string]struct {
		rec    *kgo.Record
		header string // "" for a non-header error
	}{
		"no command ID":    {without(HCommandID), HCommandID},
		"no command type":  {without(HCommandType), HCommandType},
		"bad deadline":     {with(HDeadline, "tomorrow"), HDeadline},
		"negative version": {with(HExpectedVersion, "-3"), HExpectedVersion},
		"no key":           {noKey, ""},
		"bad JSON":         {badJSON, ""},
	}
	for name, c := range cases {
		_, err := DecodeCommand(c.rec)
		var he *HeaderError
		var pe *PayloadError
		switch {
		case err == nil:
			t.Errorf("%s: accepted", name)
		case c.header != "" && (!errors.As(err, &he) || he.Header != c.header):
			t.Errorf("%s: error %v, want a HeaderError on %s", name, err, c.header)
		case name == "no key" && !errors.Is(err, ErrNoKey):
			t.Errorf("%s: error %v, want ErrNoKey", name, err)
		case name == "bad JSON" && !errors.As(err, &pe):
			t.Errorf("%s: error %v, want a PayloadError", name, err)
		}
	}
}

func TestEventRoundTripIsCloudEvents(t *testing.T) {
	t.Parallel()
	cmd := sampleCommand()
	in := Event{Meta: cmd.Meta, Type: "orders.item-added.v1", Version: 8, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Index: 1, Count: 2, Data: []byte(`{"sku":"pear"}`)}
	in.ExpectedVersion = NoVersion
	in.IdempotencyKey = ""
	rec := EncodeEvent("orders.events", "/answerback/orders", in)
	want := map[string]string{CESpecVersion: "1.0", CEID: "acme/order-1@8", CEType: "orders.item-added.v1", CESubject: "order-1", CESequence: "8", CESource: "/answerback/orders", HContentType: ContentTypeJSON, CECorrelationID: "c-1", CECausationID: "c-1"}
	for k, v := range want {
		if got, _ := Header(rec, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	out, err := DecodeEvent(rec)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != 8 || out.Index != 1 || out.Count != 2 || out.LastOfCommand() || out.CommandID != "c-1" || out.ReplyTo != "replies.gw1" || !out.Time.Equal(in.Time) {
		t.Fatalf("decoded %+v", out)
	}

	subjectMismatch := EncodeEvent("t", "s", in)
	subjectMismatch.Key = []byte("order-2")
	badCount := EncodeEvent("t", "s", Event{Meta: cmd.Meta, Type: "x", Version: 1, Index: 3, Count: 2, Data: []byte(`{}`)})
	for name, rec := range map[string]*kgo.Record{"subject mismatch": subjectMismatch, "index beyond count": badCount} {
		var he *HeaderError
		if _, err := DecodeEvent(rec); !errors.As(err, &he) {
			t.Errorf("%s: error %v, want a HeaderError", name, err)
		}
	}
}

func TestReplyRoundTrip(t *testing.T) {
	t.Parallel()
	in := Reply{CommandID: "c-1", Outcome: Rejected, Version: 3, Body: []byte(`{"type":"order-not-open"}`)}
	rec := EncodeReply("replies.gw1", in)
	if ct, _ := Header(rec, HContentType); ct != ProblemJSON {
		t.Errorf("content type of a rejection %q, want %s", ct, ProblemJSON)
	}
	out, err := DecodeReply(rec)
	if err != nil || out.CommandID != in.CommandID || out.Outcome != in.Outcome || out.Version != 3 {
		t.Fatalf("decoded %+v, %v", out, err)
	}
	rec.Headers = append(rec.Headers[:1], kgo.RecordHeader{Key: HOutcome, Value: []byte("maybe")})
	if _, err := DecodeReply(rec); err == nil {
		t.Error("reply with outcome 'maybe' accepted")
	}
}

func TestWantsReply(t *testing.T) {
	t.Parallel()
	now := time.Now()
	m := Meta{ReplyTo: "r", Deadline: now.Add(time.Second)}
	if !m.WantsReply(now) || m.WantsReply(now.Add(2*time.Second)) || (Meta{Deadline: now.Add(time.Second)}).WantsReply(now) {
		t.Error("WantsReply: want true only with a reply topic before the deadline")
	}
}

// TestTenantKeys: records are keyed per tenant; a key whose tenant the
// header contradicts, or a command without a tenant, is refused; a record
// from before tenants (a bare key) still decodes.
func TestTenantKeys(t *testing.T) {
	t.Parallel()
	cmd := sampleCommand()
	rec := EncodeCommand("c", cmd)
	for i, h := range rec.Headers {
		if h.Key == HTenant {
			rec.Headers[i].Value = []byte("globex")
		}
	}
	var he *HeaderError
	if _, err := DecodeCommand(rec); !errors.As(err, &he) || he.Header != HTenant {
		t.Errorf("tenant header contradicting the key: %v", err)
	}
	cmd.Tenant = ""
	if _, err := DecodeCommand(EncodeCommand("c", cmd)); !errors.As(err, &he) || he.Header != HTenant {
		t.Errorf("command without tenant: %v", err)
	}
	ev := Event{Meta: Meta{AggregateID: "o-1", Tenant: "acme"}, Type: "t", Version: 1, Index: 1, Count: 1, Data: []byte(`{}`)}
	legacy := EncodeEvent("e", "/s", Event{Meta: Meta{AggregateID: "o-1"}, Type: "t", Version: 1, Index: 1, Count: 1, Data: []byte(`{}`)})
	legacy.Headers = append(legacy.Headers, kgo.RecordHeader{Key: CETenant, Value: []byte("default")})
	out, err := DecodeEvent(legacy)
	if err != nil || out.AggregateID != "o-1" || out.Tenant != "default" {
		t.Errorf("a bare-keyed event: %+v %v", out.Meta, err)
	}
	out, err = DecodeEvent(EncodeEvent("e", "/s", ev))
	if err != nil || out.AggregateID != "o-1" || out.Tenant != "acme" {
		t.Errorf("a tenant's event: %+v %v", out.Meta, err)
	}
	reply, id, tenant, err := DecodeOutcome(EncodeOutcome("o", "o-1", "acme", Reply{CommandID: "c", Outcome: Applied, Version: 1, Body: []byte(`{}`)}))
	if err != nil || id != "o-1" || tenant != "acme" || reply.CommandID != "c" {
		t.Errorf("outcome: %s %s %+v %v", id, tenant, reply, err)
	}
}

// TestLogAttrs: a command's log lines name it, its aggregate, tenant and trace.
func TestLogAttrs(t *testing.T) {
	t.Parallel()
	m := sampleCommand().Meta
	got := m.LogAttrs()
	want := []any{"command_id", "c-1", "aggregate_id", "order-1", "tenant", "acme", "trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("LogAttrs() = %v, want %v", got, want)
	}
	if id := TraceID("garbage"); id != "" {
		t.Errorf("TraceID(garbage) = %q", id)
	}
}

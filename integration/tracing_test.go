package integration

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/testenv"
)

// spanRecorder installs, once per test process, a global tracer provider
// that records in memory the traces whose root came with a sampled
// traceparent (ParentBased(NeverSample)): the other tests' requests send
// none, so they record nothing.
var spanRecorder = sync.OnceValue(func() *tracetest.SpanRecorder {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())),
		sdktrace.WithSpanProcessor(rec)))
	return rec
})

// TestTracingEndToEnd: a create sent with a client's traceparent makes one
// trace across the gateway, the aggregator and the projector, linked through
// the traceparent headers of the command, event and reply records:
//
//	client span (the request's traceparent)
//	└─ POST /v1/orders (gateway, server)
//	   ├─ send orders.create (gateway, producer)
//	   │  └─ handle orders.create (aggregator, consumer)
//	   │     └─ project orders.created.v1 (projector, consumer)
//	   │        ├─ postgres apply, postgres reply, postgres commit (client)
//	   │        └─ reply (producer, after the commit)
//	   │           └─ reply received (gateway's reply router, consumer)
//	   └─ wait reply (gateway; linked to "reply received")
//
// and the server span ends after the reply was received: it covers the answer.
func TestTracingEndToEnd(t *testing.T) {
	t.Parallel()
	recorder := spanRecorder()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{gateways: 1})

		traceID, clientSpan := randomHex(t, 16), randomHex(t, 8)
		created := s.callWith(0, http.MethodPost, "/v1/orders", map[string]any{"id": "traced", "customerId": "c"},
			map[string]string{"traceparent": fmt.Sprintf("00-%s-%s-01", traceID, clientSpan)})
		if created.Status != http.StatusCreated {
			t.Fatalf("create: status %d, body %s", created.Status, created.Body)
		}
		commandID, _ := created.json(t)["commandId"].(string)

		want := []string{"POST /v1/orders", "send " + orders.CommandCreate, "handle " + orders.CommandCreate,
			"project " + orders.EventCreated, "postgres apply", "postgres reply", "postgres commit", "reply", "reply received", "wait reply"}
		spans := waitForSpans(t, recorder, traceID, want)

		// Each span is looked up among its parent's children; a remote parent
		// is another process's span, or one handed on in a record's headers.
		var server sdktrace.ReadOnlySpan
		for _, sp := range spans {
			if sp.Name() == "POST /v1/orders" {
				server = sp
			}
		}
		if server == nil || server.Parent().SpanID().String() != clientSpan || !server.Parent().IsRemote() || server.SpanKind() != trace.SpanKindServer {
			t.Fatalf("no server span POST /v1/orders whose parent is the client's span %s", clientSpan)
		}
		send := childOf(t, spans, server, "send "+orders.CommandCreate, trace.SpanKindProducer, false)
		handle := childOf(t, spans, send, "handle "+orders.CommandCreate, trace.SpanKindConsumer, true)
		project := childOf(t, spans, handle, "project "+orders.EventCreated, trace.SpanKindConsumer, true)
		for _, name := range []string{"postgres apply", "postgres reply", "postgres commit"} {
			childOf(t, spans, project, name, trace.SpanKindClient, false)
		}
		reply := childOf(t, spans, project, "reply", trace.SpanKindProducer, true) // handed on after the commit in the reply record's headers
		received := childOf(t, spans, reply, "reply received", trace.SpanKindConsumer, true)
		wait := childOf(t, spans, server, "wait reply", trace.SpanKindInternal, false)
		if !linksTo(wait, received) {
			t.Errorf("wait reply is not linked to reply received: links %v", wait.Links())
		}
		if server.EndTime().Before(received.EndTime()) || server.EndTime().Before(wait.EndTime()) {
			t.Errorf("the server span ended at %v, before the reply was received (%v) or waited for (%v)",
				server.EndTime(), received.EndTime(), wait.EndTime())
		}

		for _, sp := range []sdktrace.ReadOnlySpan{send, handle, project} {
			attrs := attributes(sp)
			if attrs["answerback.command_id"] != commandID || attrs["answerback.aggregate_id"] != "traced" || attrs["answerback.tenant"] == "" {
				t.Errorf("%s: command %q aggregate %q tenant %q, want command %q of aggregate traced", sp.Name(),
					attrs["answerback.command_id"], attrs["answerback.aggregate_id"], attrs["answerback.tenant"], commandID)
			}
		}
		for _, sp := range []sdktrace.ReadOnlySpan{send, handle, project, reply, received} {
			attrs := attributes(sp)
			if attrs["messaging.system"] != "kafka" || !strings.Contains(attrs["messaging.destination.name"], k.Prefix) {
				t.Errorf("%s: messaging.system %q destination %q, want kafka and one of this test's topics", sp.Name(),
					attrs["messaging.system"], attrs["messaging.destination.name"])
			}
		}
		if sent, handled := attributes(send)["messaging.kafka.message.key"], attributes(handle)["messaging.kafka.message.key"]; sent == "" || sent != handled {
			t.Errorf("message key %q sent, %q handled: want the same record key", sent, handled)
		}
		if attrs := attributes(server); attrs["http.route"] != "/v1/orders" || attrs["http.response.status_code"] != "201" {
			t.Errorf("server span attributes %v", attrs)
		}
	})
}

// waitForSpans returns the ended spans of trace traceID once every name in
// want is among them (a span ends after the client has its answer, and a
// reply's producer span when Kafka acknowledges it).
func waitForSpans(t *testing.T, rec *tracetest.SpanRecorder, traceID string, want []string) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var spans []sdktrace.ReadOnlySpan
		names := map[string]bool{}
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID().String() == traceID {
				spans = append(spans, sp)
				names[sp.Name()] = true
			}
		}
		var missing []string
		for _, n := range want {
			if !names[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return spans
		}
		if time.Now().After(deadline) {
			var got []string
			for _, sp := range spans {
				got = append(got, sp.Name())
			}
			t.Fatalf("trace %s: spans %v missing; it has %v", traceID, missing, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// childOf returns parent's one successful child span named name, checking
// its kind and whether its parent is remote. Failed attempts are allowed
// beside it: a transaction aborted by a rebalance decides its commands again.
func childOf(t *testing.T, spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan, name string, kind trace.SpanKind, remote bool) sdktrace.ReadOnlySpan {
	t.Helper()
	var ok []sdktrace.ReadOnlySpan
	failed := 0
	for _, sp := range spans {
		if sp.Name() != name || sp.Parent().SpanID() != parent.SpanContext().SpanID() {
			continue
		}
		if sp.Status().Code == codes.Error {
			failed++
			continue
		}
		ok = append(ok, sp)
	}
	if len(ok) != 1 {
		t.Fatalf("%d successful spans %q (and %d failed) are children of %s, want 1", len(ok), name, failed, parent.Name())
	}
	if failed > 0 {
		t.Logf("%s: %d failed attempts before it succeeded", name, failed)
	}
	child := ok[0]
	if child.Parent().IsRemote() != remote || child.SpanKind() != kind {
		t.Errorf("%s: kind %v, parent remote %v; want kind %v, remote %v", name, child.SpanKind(), child.Parent().IsRemote(), kind, remote)
	}
	return child
}

func linksTo(sp, target sdktrace.ReadOnlySpan) bool {
	for _, l := range sp.Links() {
		if l.SpanContext.SpanID() == target.SpanContext().SpanID() {
			return true
		}
	}
	return false
}

func attributes(sp sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, a := range sp.Attributes() {
		m[string(a.Key)] = a.Value.String()
	}
	return m
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

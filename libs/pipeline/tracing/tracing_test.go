package tracing

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// recorder installs an SDK provider recording every span in memory as the
// global one, for one test, and returns its recorder.
func recorder(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	return rec
}

func headerCount(rec *kgo.Record, key string) int {
	n := 0
	for _, h := range rec.Headers {
		if h.Key == key {
			n++
		}
	}
	return n
}

// TestCarrierRoundTrip: a command record made by the envelope from
// TraceParent(ctx) carries ctx's span; a producer span replaces that header
// (one traceparent, never two), and the consumer span read from the record
// is the producer span's child. Meta.TraceParent and the headers agree.
func TestCarrierRoundTrip(t *testing.T) {
	spans := recorder(t)
	ctx, root := Tracer().Start(context.Background(), "root")

	cmd := envelope.Command{Meta: envelope.Meta{CommandID: "c-1", AggregateID: "o-1", Tenant: "t-1", TraceParent: TraceParent(ctx),
		ExpectedVersion: envelope.NoVersion}, Type: "orders.create", Data: []byte(`{}`)}
	rec := envelope.EncodeCommand("orders.commands", cmd)
	if got := trace.SpanContextFromContext(Extract(context.Background(), rec)); got.SpanID() != root.SpanContext().SpanID() || !got.IsRemote() {
		t.Fatalf("extracted %v, want the root span %v as a remote parent", got, root.SpanContext())
	}

	_, producer := StartProducer(ctx, "send orders.create", rec, MetaAttributes(cmd.Meta)...)
	producer.End()
	if n := headerCount(rec, envelope.HTraceParent); n != 1 {
		t.Fatalf("%d traceparent headers, want 1: %v", n, rec.Headers)
	}
	decoded, err := envelope.DecodeCommand(rec)
	if err != nil {
		t.Fatal(err)
	}
	parent := WithTraceParent(context.Background(), decoded.TraceParent)
	if got := trace.SpanContextFromContext(parent); got.SpanID() != producer.SpanContext().SpanID() {
		t.Fatalf("the decoded command's traceparent names %v, want the producer span %v", got.SpanID(), producer.SpanContext().SpanID())
	}
	cctx, consumer := StartConsumer(Extract(context.Background(), rec), "handle orders.create", rec)
	consumer.End()
	root.End()

	ended := spans.Ended()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		byName[s.Name()] = s
	}
	p, c := byName["send orders.create"], byName["handle orders.create"]
	if p == nil || c == nil {
		t.Fatalf("spans %v", ended)
	}
	if p.Parent().SpanID() != root.SpanContext().SpanID() || p.SpanKind() != trace.SpanKindProducer {
		t.Errorf("producer span: parent %v kind %v", p.Parent().SpanID(), p.SpanKind())
	}
	if c.Parent().SpanID() != p.SpanContext().SpanID() || !c.Parent().IsRemote() || c.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("consumer span: parent %v (remote %v) kind %v, want the producer span %v", c.Parent().SpanID(), c.Parent().IsRemote(), c.SpanKind(), p.SpanContext().SpanID())
	}
	if c.SpanContext().TraceID() != root.SpanContext().TraceID() || TraceParent(cctx) == "" {
		t.Errorf("the consumer span left the trace")
	}
	attrs := map[string]string{}
	for _, a := range p.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	for k, v := range map[string]string{"messaging.system": "kafka", "messaging.destination.name": "orders.commands",
		"messaging.kafka.message.key": string(rec.Key), "answerback.command_id": "c-1", "answerback.aggregate_id": "o-1", "answerback.tenant": "t-1"} {
		if attrs[k] != v {
			t.Errorf("producer attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
}

// TestCarrier: Set replaces a header in place and removes its duplicates,
// Keys lists each name once, Get reads the first.
func TestCarrier(t *testing.T) {
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "traceparent", Value: []byte("x")},
		{Key: "b", Value: []byte("2")}, {Key: "traceparent", Value: []byte("y")}}}
	original := slices.Clone(rec.Headers)
	c := RecordCarrier{rec}
	if c.Get("traceparent") != "x" || c.Get("missing") != "" {
		t.Fatalf("Get: %q %q", c.Get("traceparent"), c.Get("missing"))
	}
	if keys := c.Keys(); !slices.Equal(keys, []string{"a", "traceparent", "b"}) {
		t.Fatalf("Keys %v", keys)
	}
	shared := rec.Headers
	c.Set("traceparent", "z")
	c.Set("new", "n")
	want := []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "traceparent", Value: []byte("z")}, {Key: "b", Value: []byte("2")}, {Key: "new", Value: []byte("n")}}
	if !slices.EqualFunc(rec.Headers, want, func(x, y kgo.RecordHeader) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) }) {
		t.Fatalf("headers %v, want %v", rec.Headers, want)
	}
	if !slices.EqualFunc(shared, original, func(x, y kgo.RecordHeader) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) }) {
		t.Errorf("Set changed the headers' old backing array: %v", shared)
	}
}

// TestTraceParentWithoutSpan: no span, no traceparent; a malformed one is ignored.
func TestTraceParentWithoutSpan(t *testing.T) {
	ctx := context.Background()
	if tp := TraceParent(ctx); tp != "" {
		t.Errorf("TraceParent without a span = %q", tp)
	}
	if got := WithTraceParent(ctx, "not-a-traceparent"); trace.SpanContextFromContext(got).IsValid() {
		t.Errorf("a malformed traceparent became a parent")
	}
	Inject(ctx, &kgo.Record{}) // nothing to write, no panic
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if got := TraceParent(WithTraceParent(ctx, tp)); got != tp {
		t.Errorf("round trip of %s gave %s", tp, got)
	}
}

// TestPassThroughWithoutProvider: with no SDK installed a span records
// nothing, yet the trace context a record carries is passed on unchanged.
func TestPassThroughWithoutProvider(t *testing.T) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx, span := StartConsumer(WithTraceParent(context.Background(), tp), "handle", &kgo.Record{Topic: "t"})
	defer span.End()
	if span.IsRecording() {
		t.Error("a no-op provider's span records")
	}
	if got := TraceParent(ctx); got != tp {
		t.Errorf("passed on %q, want %q", got, tp)
	}
}

// TestSetupOff: without an OTLP endpoint Setup installs the W3C propagator
// and leaves the provider alone.
func TestSetupOff(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	otel.SetTracerProvider(noop.NewTracerProvider())
	shutdown, err := Setup(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(context.Background()) }()
	if _, span := Tracer().Start(context.Background(), "x"); span.IsRecording() {
		t.Error("tracing is off, yet a span records")
	}
	if fields := otel.GetTextMapPropagator().Fields(); !slices.Contains(fields, "traceparent") {
		t.Errorf("global propagator fields %v, want W3C traceparent", fields)
	}
}

// TestSetupRejectsGRPC: a protocol that is not built in is an error, not spans lost.
func TestSetupRejectsGRPC(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if _, err := Setup(context.Background(), "test"); err == nil {
		t.Fatal("Setup accepted the grpc protocol")
	}
}

// TestSetupExports: with OTEL_EXPORTER_OTLP_ENDPOINT set, a span ends up at
// the OTLP/HTTP endpoint once shutdown flushes, under the service's name.
func TestSetupExports(t *testing.T) {
	var (
		mu       sync.Mutex
		received []*coltracepb.ExportTraceServiceRequest
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		received = append(received, &req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	shutdown, err := Setup(context.Background(), "answerback-test")
	if err != nil {
		t.Fatal(err)
	}
	_, span := Tracer().Start(context.Background(), "exported span")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var names, services []string
	for _, req := range received {
		for _, rs := range req.ResourceSpans {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					services = append(services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
	}
	if !slices.Contains(names, "exported span") || !slices.Contains(services, "answerback-test") {
		t.Fatalf("exported spans %v of services %v, want \"exported span\" of answerback-test", names, services)
	}
}

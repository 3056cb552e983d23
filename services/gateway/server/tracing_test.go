package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/requestreply"
	"github.com/answerback/answerback/libs/pipeline/tracing"
)

const clientTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTraceHTTP: the server span continues the client's traceparent, is named
// by method and route pattern, and the command sent inside it names the
// "send" span as its trace parent.
func TestTraceHTTP(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	var cmd envelope.Command
	r := chi.NewRouter()
	r.Use(traceHTTP)
	r.Post("/v1/orders/{id}/items", func(w http.ResponseWriter, r *http.Request) {
		cmd = envelope.Command{Meta: envelope.Meta{CommandID: "c-1", AggregateID: chi.URLParam(r, "id")}, Type: "orders.add-item"}
		requestreply.TraceSend(r.Context(), "orders.commands", &cmd)(nil)
		w.WriteHeader(http.StatusOK)
	})
	r.Get("/boom", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })

	req := httptest.NewRequest(http.MethodPost, "/v1/orders/o-7/items", nil)
	req.Header.Set("traceparent", clientTraceParent)
	r.ServeHTTP(httptest.NewRecorder(), req)
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/boom", nil))

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = s
	}
	server, send, boom := spans["POST /v1/orders/{id}/items"], spans["send orders.add-item"], spans["GET /boom"]
	if server == nil || send == nil || boom == nil {
		t.Fatalf("spans %v", spans)
	}
	client := trace.SpanContextFromContext(tracing.WithTraceParent(context.Background(), clientTraceParent))
	if server.Parent().SpanID() != client.SpanID() || server.SpanContext().TraceID() != client.TraceID() || server.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span: parent %v trace %v kind %v, want the client's span %v", server.Parent().SpanID(), server.SpanContext().TraceID(), server.SpanKind(), client.SpanID())
	}
	if send.Parent().SpanID() != server.SpanContext().SpanID() || send.SpanKind() != trace.SpanKindProducer {
		t.Errorf("send span: parent %v kind %v", send.Parent().SpanID(), send.SpanKind())
	}
	if got := trace.SpanContextFromContext(tracing.WithTraceParent(context.Background(), cmd.TraceParent)); got.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("command traceparent %q does not name the send span %v", cmd.TraceParent, send.SpanContext().SpanID())
	}
	if boom.Status().Code != codes.Error {
		t.Errorf("a 503's span status %v, want Error", boom.Status())
	}
}

// TestTraceHTTPOff: without a tracer provider nothing records, and a
// client's traceparent still reaches the command unchanged.
func TestTraceHTTPOff(t *testing.T) {
	otel.SetTracerProvider(noop.NewTracerProvider())
	var cmd envelope.Command
	h := traceHTTP(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		cmd = envelope.Command{Type: "orders.create"}
		requestreply.TraceSend(r.Context(), "orders.commands", &cmd)(errors.New("ignored"))
	}))
	req := httptest.NewRequest(http.MethodPost, "/v1/orders", nil)
	req.Header.Set("traceparent", clientTraceParent)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if cmd.TraceParent != clientTraceParent {
		t.Errorf("command traceparent %q, want the client's %q", cmd.TraceParent, clientTraceParent)
	}
}

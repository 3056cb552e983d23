package server

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// traceHTTP records a server span per request, child of the client's W3C
// traceparent when it sent one, named by method and chi route pattern
// ("POST /v1/orders/{id}/items") once routing has found it — never by the raw
// path. The span is in the request's context, so the command a handler sends
// continues its trace, and it ends once the answer is written.
func traceHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := spanMethod(r.Method)
		name := method
		if method == "_OTHER" {
			name = "HTTP"
		}
		ctx := tracing.Propagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracing.Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		if !span.IsRecording() { // tracing off: only pass the trace context on
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r.WithContext(ctx))
		if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePattern() != "" {
			span.SetName(name + " " + rctx.RoutePattern())
			span.SetAttributes(attribute.String("http.route", rctx.RoutePattern()))
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK // nothing written: net/http answers 200
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	})
}

// spanMethod is r's method as the semantic conventions name it: a known
// method, else "_OTHER" (any token is a method: keep span names bounded).
func spanMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "_OTHER"
}

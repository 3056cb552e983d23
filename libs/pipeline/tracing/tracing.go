// Package tracing is the pipeline's OpenTelemetry tracing: Setup installs the
// process's tracer provider, and the helpers carry a trace from record to
// record, so that one trace shows a command's whole path — HTTP request,
// command produced, decided by the aggregator, its events projected into
// PostgreSQL, the reply produced and received, the HTTP answer.
//
// The trace context travels as a W3C traceparent: in the `traceparent`
// header of commands and replies, and in the `ce_traceparent` header of
// events (the CloudEvents distributed-tracing extension). The envelope writes
// the command's and event's header from Meta.TraceParent; fill it with
// TraceParent(ctx) so that it names the span that sent the record.
//
// Propagation does not depend on Setup: Propagator, Inject, Extract,
// TraceParent and WithTraceParent always speak W3C Trace Context, so a
// client's traceparent is passed through the pipeline even when this
// process records no spans.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// TracerName is the instrumentation scope of every span the pipeline records.
const TracerName = "github.com/answerback/answerback"

// Attributes of the pipeline's own, beside the semantic conventions'.
const (
	AttrCommandID   = attribute.Key("answerback.command_id")
	AttrAggregateID = attribute.Key("answerback.aggregate_id")
	AttrTenant      = attribute.Key("answerback.tenant")
	AttrOutcome     = attribute.Key("answerback.outcome")
	AttrVersion     = attribute.Key("answerback.version") // an event's aggregate version
)

// Tracer returns the tracer of the global provider, looked up on each call
// so that a provider installed later (Setup, a test) is used.
func Tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(TracerName) }

var w3c = propagation.TraceContext{}

// Propagator is the pipeline's wire format for trace context: W3C Trace
// Context (traceparent, tracestate).
func Propagator() propagation.TextMapPropagator { return w3c }

// Setup configures tracing for the process named serviceName. It always
// installs the W3C Trace Context propagator globally. When an OTLP endpoint
// is configured (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT), it installs an SDK tracer provider that
// batches spans to it over OTLP/HTTP (protobuf); the exporter's other
// OTEL_EXPORTER_OTLP_* settings (headers, timeout, compression) and
// OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES apply
// as the OpenTelemetry specification says. Otherwise — or with
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none — the global provider
// stays the no-op one and spans cost next to nothing.
//
// The protocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
// OTEL_EXPORTER_OTLP_PROTOCOL) must be http/protobuf, the default: gRPC is
// not built in, and another protocol is an error rather than spans lost.
//
// shutdown flushes the spans still buffered and stops the exporter; call it
// once on the way out. It is never nil.
func Setup(ctx context.Context, serviceName string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(w3c)
	off := func(context.Context) error { return nil }
	if !exporterConfigured() {
		return off, nil
	}
	protocol := firstEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	if protocol != "" && protocol != "http/protobuf" {
		return off, fmt.Errorf("tracing: OTLP protocol %q is not supported: use http/protobuf (usually port 4318)", protocol)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return off, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// Later options override earlier ones: OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES win over the name the program gives.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		_ = exp.Shutdown(ctx)
		return off, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		slog.Warn("opentelemetry", "err", err)
	}))
	return tp.Shutdown, nil
}

// exporterConfigured reports whether the environment asks for spans to be exported.
func exporterConfigured() bool {
	if disabled, _ := strconv.ParseBool(os.Getenv("OTEL_SDK_DISABLED")); disabled {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")), "none") {
		return false
	}
	return firstEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// RecordCarrier is a propagation.TextMapCarrier over a Kafka record's headers.
type RecordCarrier struct{ Record *kgo.Record }

var _ propagation.TextMapCarrier = RecordCarrier{}

// Get returns the value of the first header named key, or "".
func (c RecordCarrier) Get(key string) string {
	v, _ := envelope.Header(c.Record, key)
	return v
}

// Set makes value the record's only header named key: an existing one is
// replaced (the first in place, later duplicates removed), else it is added.
func (c RecordCarrier) Set(key, value string) {
	hs, found := c.Record.Headers[:0:0], false
	for _, h := range c.Record.Headers {
		if h.Key != key {
			hs = append(hs, h)
		} else if !found {
			hs, found = append(hs, kgo.RecordHeader{Key: key, Value: []byte(value)}), true
		}
	}
	if !found {
		hs = append(hs, kgo.RecordHeader{Key: key, Value: []byte(value)})
	}
	c.Record.Headers = hs
}

// Keys returns the record's header names, each once, in order.
func (c RecordCarrier) Keys() []string {
	keys := make([]string, 0, len(c.Record.Headers))
	for _, h := range c.Record.Headers {
		if !slices.Contains(keys, h.Key) {
			keys = append(keys, h.Key)
		}
	}
	return keys
}

// Inject writes the trace context of ctx's span into rec's traceparent (and
// tracestate) headers, replacing any there; without a valid span it writes
// nothing.
func Inject(ctx context.Context, rec *kgo.Record) { w3c.Inject(ctx, RecordCarrier{rec}) }

// Extract returns ctx with the remote span context carried by rec's
// traceparent header, or ctx itself when there is none valid.
func Extract(ctx context.Context, rec *kgo.Record) context.Context {
	return w3c.Extract(ctx, RecordCarrier{rec})
}

// TraceParent returns the W3C traceparent of ctx's span, "" without a valid
// one: the value for envelope.Meta.TraceParent.
func TraceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	w3c.Inject(ctx, c)
	return c[envelope.HTraceParent]
}

// WithTraceParent returns ctx with the remote span context traceparent names
// (as read from envelope.Meta.TraceParent); ctx itself when it is empty or
// malformed.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return w3c.Extract(ctx, propagation.MapCarrier{envelope.HTraceParent: traceparent})
}

// KafkaAttributes describes a record sent to or read from topic with key.
func KafkaAttributes(topic string, key []byte) []attribute.KeyValue {
	attrs := []attribute.KeyValue{semconv.MessagingSystemKafka, semconv.MessagingDestinationName(topic)}
	if len(key) > 0 {
		attrs = append(attrs, semconv.MessagingKafkaMessageKey(string(key)))
	}
	return attrs
}

// MetaAttributes are a command's identity: its ID, aggregate and tenant.
func MetaAttributes(m envelope.Meta) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	for _, a := range []attribute.KeyValue{AttrCommandID.String(m.CommandID), AttrAggregateID.String(m.AggregateID), AttrTenant.String(m.Tenant)} {
		if a.Value.AsString() != "" {
			attrs = append(attrs, a)
		}
	}
	return attrs
}

// StartProducer starts a producer span name, child of ctx's span, for
// sending rec, and writes the new span's context into rec's headers, so
// that its reader continues the trace. End the span when the produce is
// acknowledged (see End).
func StartProducer(ctx context.Context, name string, rec *kgo.Record, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx, span := Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(KafkaAttributes(rec.Topic, rec.Key)...),
		trace.WithAttributes(semconv.MessagingOperationTypeSend),
		trace.WithAttributes(attrs...))
	Inject(ctx, rec)
	return ctx, span
}

// StartConsumer starts a consumer span name for processing rec, child of
// ctx's span — usually the remote one Extract or WithTraceParent found in
// rec.
func StartConsumer(ctx context.Context, name string, rec *kgo.Record, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(KafkaAttributes(rec.Topic, rec.Key)...),
		trace.WithAttributes(semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(rec.Partition))),
			semconv.MessagingKafkaOffset(int(rec.Offset))),
		trace.WithAttributes(attrs...))
}

// End ends span, marking it failed with err when err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// EndAll ends every span of spans as End does.
func EndAll(spans []trace.Span, err error) {
	for _, s := range spans {
		End(s, err)
	}
}

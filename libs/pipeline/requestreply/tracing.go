package requestreply

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/replies"
	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// TraceSend starts the producer span "send <command type>" of producing cmd
// to topic, child of ctx's span, and makes it cmd's trace parent
// (Meta.TraceParent, the command's traceparent header): the aggregator's
// span continues the trace from it. Call the returned function with the
// produce's result.
func TraceSend(ctx context.Context, topic string, cmd *envelope.Command) (end func(error)) {
	ctx, span := tracing.Tracer().Start(ctx, "send "+cmd.Type, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.operation.type", "send")),
		trace.WithAttributes(tracing.MetaAttributes(cmd.Meta)...))
	cmd.TraceParent = tracing.TraceParent(ctx)
	if span.IsRecording() { // the record's key is the envelope's to choose
		span.SetAttributes(tracing.KafkaAttributes(topic, envelope.EncodeCommand(topic, *cmd).Key)...)
	}
	return func(err error) { tracing.End(span, err) }
}

// waitTraced waits for waiter's reply within the span "wait reply", child of
// ctx's span; the router links it to the span that recorded the reply's arrival.
func waitTraced(ctx context.Context, waiter *replies.Waiter) (envelope.Reply, error) {
	ctx, span := tracing.Tracer().Start(ctx, "wait reply")
	reply, err := waiter.Wait(ctx)
	if err == nil {
		span.SetAttributes(tracing.AttrOutcome.String(string(reply.Outcome)))
	} else {
		span.SetAttributes(attribute.Bool("answerback.reply.timeout", true))
	}
	span.End()
	return reply, err
}

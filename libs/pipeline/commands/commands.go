// Package commands is the gateway's side of the command topic: it produces
// commands keyed by aggregate ID, so that one partition — and so one
// aggregator — owns each aggregate.
package commands

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// ErrUnavailable wraps every failure to hand a command to Kafka: the broker is
// down, slow beyond the context's deadline, or refused the record.
var ErrUnavailable = errors.New("command bus unavailable")

// Producer sends commands. It is safe for concurrent use.
type Producer struct {
	cl *kgo.Client
}

// NewProducer returns a producer on cl. The client should keep linger at 0
// (franz-go's default lingers 10ms, which every synchronous request would pay).
func NewProducer(cl *kgo.Client) *Producer { return &Producer{cl: cl} }

// Send produces cmd to topic and returns once Kafka has acknowledged it, or
// with an error wrapping ErrUnavailable when the produce fails or ctx ends
// first. It never outlives ctx, even while a produce request is in flight to
// a broker that stopped answering; the outcome is then unknown — the command
// may still be written — so callers should let clients retry with the same
// idempotency key.
func (p *Producer) Send(ctx context.Context, topic string, cmd envelope.Command) error {
	if cmd.AggregateID == "" || cmd.CommandID == "" || cmd.Type == "" {
		return errors.New("commands: aggregate ID, command ID and type are required")
	}
	done := make(chan error, 1)
	p.cl.Produce(ctx, envelope.EncodeCommand(topic, cmd), func(_ *kgo.Record, err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

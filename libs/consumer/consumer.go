// Package consumer is for services outside the pipeline that consume its
// event topics (<domain>.events): a typed decoder of the events, a Runner
// that hands records to a handler in partition order on a consumer group,
// and a Guard that applies each event to a PostgreSQL read model once.
//
// The contract a downstream service can rely on, and this package builds on:
//
//   - Events are CloudEvents in binary mode (see package envelope), written
//     in Kafka transactions exactly once, keyed by envelope.StreamKey(tenant,
//     aggregate ID), "tenant/id". A consumer must read read_committed (the
//     Runner does) or it sees aborted records.
//   - Tenants never meet: two tenants may use the same aggregate IDs (order
//     IDs, SKUs), which are then two aggregates. A read model keys its rows
//     by Meta.Tenant as well as by Meta.AggregateID, and so does the Guard.
//   - The events of one aggregate are in one partition, in version order:
//     ce_sequence is 1, 2, 3… per aggregate (per tenant and ID). The pipeline never changes a
//     topic's partition count (topics.Ensure leaves it alone), so this order
//     holds for the topic's life; adding partitions by hand would break it.
//   - Delivery to a consumer group is at least once: a record whose offset
//     was not committed before a crash or a rebalance is delivered again.
//     The Guard turns this into exactly-once effects: the handler applies an
//     event and records its version in one PostgreSQL transaction, and an
//     event at or below the recorded version is skipped.
//   - Data members may be added to an event type without a new version
//     (orders.item-added.v1 stays v1): decoding ignores unknown members.
//
// A typical handler:
//
//	func (s *S) Handle(ctx context.Context, rec *kgo.Record) error {
//		ev, err := consumer.Decode[ItemAdded](rec)
//		if err != nil {
//			return err // poison: logged, counted, skipped by the Runner
//		}
//		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
//			v, err := s.guard.Apply(ctx, tx, ev.Meta)
//			if err != nil || !v.New {
//				return err // seen before: nothing to do
//			}
//			return s.apply(ctx, tx, ev) // in the same transaction
//		})
//	}
package consumer

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// ErrPoison marks a record that can never be handled: retrying it cannot
// help, so the Runner logs, counts and skips it (see Config.DLQTopic).
// Decode's errors match it; a handler may wrap its own permanent errors with
// it (fmt.Errorf("%w: ...", consumer.ErrPoison)).
var ErrPoison = errors.New("poison record")

// DecodeError reports a record that is not a valid event: a bad envelope
// (errors.As finds the *envelope.HeaderError, *envelope.PayloadError, or
// errors.Is envelope.ErrNoKey) or data that is not the expected JSON.
// It matches ErrPoison.
type DecodeError struct {
	Topic     string
	Partition int32
	Offset    int64
	Type      string // ce_type, when the envelope was readable
	Err       error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("undecodable event %s/%d/%d (%s): %v", e.Topic, e.Partition, e.Offset, e.Type, e.Err)
}

// Unwrap returns ErrPoison and the cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrPoison, e.Err} }

// Meta is what every event carries besides its data: the CloudEvents
// attributes and where the record was read.
type Meta struct {
	Topic     string
	Partition int32
	Offset    int64

	ID          string    // ce_id: "<tenant>/<aggregate>@<version>", unique and stable
	Source      string    // ce_source, e.g. "/answerback/orders"
	Type        string    // ce_type, e.g. "orders.item-added.v1"
	AggregateID string    // ce_subject: the aggregate's ID within its tenant (the record key is "<tenant>/<ID>")
	Version     int64     // ce_sequence: the aggregate's version after this event, 1 for its first
	Time        time.Time // ce_time: when the aggregate decided it (UTC)
	CommandID   string    // ce_correlationid: the command that caused it
	Tenant      string    // ce_tenant, the record key's prefix; "" for a record from before tenants (bare key, no ce_tenant)
	TraceParent string    // ce_traceparent (W3C trace context)
}

// Event is an event with its data decoded into a T.
type Event[T any] struct {
	Meta
	Data T
}

// Validator is implemented by data types that check themselves: Decode and
// As call Validate after unmarshalling, and its error makes the record poison.
type Validator interface{ Validate() error }

// Decode reads rec as an event whose data is a T. T may be json.RawMessage,
// to read the envelope first and the data later with As (e.g. after a switch
// on Type). Unknown data members are ignored. Every error is a *DecodeError.
func Decode[T any](rec *kgo.Record) (Event[T], error) {
	raw, err := decodeRaw(rec)
	if err != nil {
		return Event[T]{Meta: raw.Meta}, err
	}
	return As[T](raw)
}

// As decodes the data of raw (from Decode[json.RawMessage]) into a T.
// Unknown members are ignored; a T that is a Validator is validated. Every
// error is a *DecodeError.
func As[T any](raw Event[json.RawMessage]) (Event[T], error) {
	ev := Event[T]{Meta: raw.Meta}
	fail := func(err error) (Event[T], error) {
		return ev, &DecodeError{Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset, Type: ev.Type, Err: err}
	}
	if err := json.Unmarshal(raw.Data, &ev.Data); err != nil {
		return fail(&envelope.PayloadError{Err: fmt.Errorf("data of %s: %w", ev.Type, err)})
	}
	if v, ok := any(ev.Data).(Validator); ok {
		if err := v.Validate(); err != nil {
			return fail(fmt.Errorf("data of %s: %w", ev.Type, err))
		}
	}
	return ev, nil
}

func decodeRaw(rec *kgo.Record) (Event[json.RawMessage], error) {
	ev := Event[json.RawMessage]{Meta: Meta{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}}
	e, err := envelope.DecodeEvent(rec)
	ev.Type = e.Type
	if err != nil {
		return ev, &DecodeError{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Type: e.Type, Err: err}
	}
	if ev.ID, _ = envelope.Header(rec, envelope.CEID); ev.ID == "" {
		ev.ID = e.ID()
	}
	ev.Source, _ = envelope.Header(rec, envelope.CESource)
	ev.AggregateID = e.AggregateID
	ev.Version = e.Version
	ev.Time = e.Time.UTC()
	ev.CommandID = e.CommandID
	ev.Tenant = e.Tenant
	ev.TraceParent = e.TraceParent
	ev.Data = e.Data
	return ev, nil
}

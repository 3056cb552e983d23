package consumer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/consumer"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

type itemAdded struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

func (d itemAdded) Validate() error {
	if d.SKU == "" || d.Quantity < 1 {
		return errors.New("want a sku and a quantity of 1 or more")
	}
	return nil
}

// event returns an event record as the aggregator writes it.
func event(topic, aggregateID string, version int64, typ string, data any) *kgo.Record {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return envelope.EncodeEvent(topic, "/answerback/orders", envelope.Event{
		Meta:    envelope.Meta{AggregateID: aggregateID, CommandID: fmt.Sprintf("cmd-%s-%d", aggregateID, version), Tenant: "default"},
		Type:    typ,
		Version: version,
		Time:    time.Date(2026, 3, 1, 23, 59, 59, 500, time.UTC),
		Index:   1, Count: 1,
		Data: b,
	})
}

func TestDecode(t *testing.T) {
	t.Parallel()
	rec := event("orders.events", "o-1", 3, "orders.item-added.v1", map[string]any{"sku": "apple", "quantity": 2, "added": "later"})
	rec.Partition, rec.Offset = 4, 17
	ev, err := consumer.Decode[itemAdded](rec)
	if err != nil {
		t.Fatal(err)
	}
	want := consumer.Meta{
		Topic: "orders.events", Partition: 4, Offset: 17, ID: "default/o-1@3", Source: "/answerback/orders",
		Type: "orders.item-added.v1", AggregateID: "o-1", Version: 3, Time: time.Date(2026, 3, 1, 23, 59, 59, 500, time.UTC),
		CommandID: "cmd-o-1-3", Tenant: "default",
	}
	if ev.Meta != want {
		t.Errorf("meta = %+v\nwant   %+v", ev.Meta, want)
	}
	if ev.Data != (itemAdded{SKU: "apple", Quantity: 2}) {
		t.Errorf("data = %+v", ev.Data)
	}

	raw, err := consumer.Decode[json.RawMessage](rec)
	if err != nil {
		t.Fatal(err)
	}
	typed, err := consumer.As[itemAdded](raw)
	if err != nil || typed != ev {
		t.Errorf("As = %+v, %v; want %+v", typed, err, ev)
	}
}

func TestDecodeBadRecords(t *testing.T) {
	t.Parallel()
	good := func() *kgo.Record {
		return event("orders.events", "o-1", 3, "orders.item-added.v1", itemAdded{SKU: "apple", Quantity: 2})
	}
	without := func(header string) *kgo.Record {
		rec := good()
		for i, h := range rec.Headers {
			if h.Key == header {
				rec.Headers = append(rec.Headers[:i], rec.Headers[i+1:]...)
			}
		}
		return rec
	}
	with := func(f func(*kgo.Record)) *kgo.Record { rec := good(); f(rec); return rec }
	var headerErr *envelope.HeaderError
	var payloadErr *envelope.PayloadError
	for name, tc := range map[string]struct {
		rec  *kgo.Record
		want func(error) bool
	}{
		"no key":             {with(func(r *kgo.Record) { r.Key = nil }), func(err error) bool { return errors.Is(err, envelope.ErrNoKey) }},
		"not CloudEvents":    {without(envelope.CESpecVersion), func(err error) bool { return errors.As(err, &headerErr) && headerErr.Header == envelope.CESpecVersion }},
		"no version":         {without(envelope.CESequence), func(err error) bool { return errors.As(err, &headerErr) && headerErr.Header == envelope.CESequence }},
		"value not JSON":     {with(func(r *kgo.Record) { r.Value = []byte("{") }), func(err error) bool { return errors.As(err, &payloadErr) }},
		"data of wrong type": {with(func(r *kgo.Record) { r.Value = []byte(`{"sku":"apple","quantity":"two"}`) }), func(err error) bool { return errors.As(err, &payloadErr) }},
		"data invalid":       {with(func(r *kgo.Record) { r.Value = []byte(`{"sku":"apple"}`) }), func(err error) bool { return err != nil }},
		"data null":          {with(func(r *kgo.Record) { r.Value = []byte(`null`) }), func(err error) bool { return err != nil }},
	} {
		t.Run(name, func(t *testing.T) {
			tc.rec.Partition, tc.rec.Offset = 2, 9
			_, err := consumer.Decode[itemAdded](tc.rec)
			if !tc.want(err) {
				t.Fatalf("error %v is not the one expected", err)
			}
			if !errors.Is(err, consumer.ErrPoison) {
				t.Errorf("error %v does not match ErrPoison", err)
			}
			var de *consumer.DecodeError
			if !errors.As(err, &de) || de.Topic != "orders.events" || de.Partition != 2 || de.Offset != 9 {
				t.Errorf("error %v is not a *DecodeError naming the record", err)
			}
		})
	}
}

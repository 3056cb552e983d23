package view

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
)

// Projection is the views projection: both domains' events into one
// database, since an order's reply needs the catalog.
func Projection(prefix string) projector.Projection {
	o, c := topics.For(prefix, orders.Name), topics.For(prefix, catalog.Name)
	permanent := func(err error) error {
		if errors.Is(err, ErrUnknownEvent) || errors.Is(err, ErrBadEvent) {
			return fmt.Errorf("%w: %w", projector.ErrPermanent, err)
		}
		return err
	}
	return projector.Projection{
		Name:     "views",
		Topics:   map[string]string{o.Events: o.DLQ, c.Events: c.DLQ},
		Outcomes: map[string]string{o.Outcomes: o.DLQ, c.Outcomes: c.DLQ},
		Apply: func(b *pgx.Batch, topic string, ev envelope.Event) error {
			if topic == c.Events {
				return permanent(QueueCatalogEvent(b, ev))
			}
			return permanent(QueueOrderEvent(b, ev))
		},
		Reply: func(b *pgx.Batch, topic string, ev envelope.Event, done func(json.RawMessage, error)) {
			if topic == c.Events {
				QueueCatalogReply(b, ev.Tenant, ev.CommandID, ev.AggregateID, done)
				return
			}
			QueueOrderReply(b, ev.Tenant, ev.CommandID, ev.AggregateID, done)
		},
	}
}

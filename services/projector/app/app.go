// Package app runs the reference domain's read model: the catalog and order
// views in PostgreSQL, and the replies derived from them.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
)

// Projection is the views projection: both domains' events into one
// database, since an order's reply needs the catalog.
func Projection(prefix string) projector.Projection {
	o, c := topics.For(prefix, orders.Name), topics.For(prefix, catalog.Name)
	permanent := func(err error) error {
		if errors.Is(err, view.ErrUnknownEvent) || errors.Is(err, view.ErrBadEvent) {
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
				return permanent(view.QueueCatalogEvent(b, ev))
			}
			return permanent(view.QueueOrderEvent(b, ev))
		},
		Reply: func(b *pgx.Batch, topic string, ev envelope.Event, done func(json.RawMessage, error)) {
			if topic == c.Events {
				view.QueueCatalogReply(b, ev.Tenant, ev.CommandID, ev.AggregateID, done)
				return
			}
			view.QueueOrderReply(b, ev.Tenant, ev.CommandID, ev.AggregateID, done)
		},
	}
}

// Config configures the projector.
type Config struct {
	Brokers     []string
	TopicPrefix string
	Pool        *pgxpool.Pool
	Logger      *slog.Logger
	ClientOpts  []kgo.Opt
	// Faults injects failures, for tests; nil in production.
	Faults *projector.Faults
}

// Run migrates the view's schema and projects until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := view.Migrate(ctx, cfg.Pool); err != nil {
		return fmt.Errorf("projector: migrations: %w", err)
	}
	rt, err := projector.New(Projection(cfg.TopicPrefix), projector.Config{
		Brokers: cfg.Brokers, Pool: cfg.Pool, Group: cfg.TopicPrefix + "views-projector", Logger: cfg.Logger, ClientOpts: cfg.ClientOpts, Faults: cfg.Faults,
	})
	if err != nil {
		return err
	}
	return rt.Run(ctx)
}

package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/consumer"
)

// The event types this service reads, and the members of their data it
// needs (a tolerant reader: other members are ignored). They are the
// published contract of orders.events and catalog.events; this service does
// not import the producer's domain code.
const (
	eventItemAdded    = "orders.item-added.v1"
	eventItemRemoved  = "orders.item-removed.v1"
	eventSubmitted    = "orders.submitted.v1"
	eventCancelled    = "orders.cancelled.v1"
	eventItemUpserted = "catalog.item-upserted.v1"
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

type itemRemoved struct {
	SKU string `json:"sku"`
}

func (d itemRemoved) Validate() error {
	if d.SKU == "" {
		return errors.New("want a sku")
	}
	return nil
}

// item is catalog.item-upserted.v1's data; the SKU is the aggregate ID (a
// catalog item of the event's tenant: tenants may use the same SKUs).
type item struct {
	UnitPrice *int64 `json:"unitPrice"`
	Currency  string `json:"currency"`
}

func (d item) Validate() error {
	if d.UnitPrice == nil || *d.UnitPrice < 0 || len(d.Currency) != 3 {
		return errors.New("want a unitPrice of 0 or more and a three-letter currency")
	}
	return nil
}

// Sales keeps daily sales per tenant and SKU from the order and catalog
// events.
//
// Everything is kept per tenant (the events' Meta.Tenant): an order's lines
// are priced only by its own tenant's catalog, whose SKUs and prices may be
// other tenants' too, and counted in its tenant's daily_sales rows.
//
// It keeps every catalog price with the time it was decided, and each open
// order's lines. When an order is submitted, each line's quantity and
// revenue (quantity × the SKU's unit price in force at the submit event's
// time) are added to daily_sales for the UTC day of that time. The two
// topics are not ordered with respect to each other, so a submit may be
// handled before the price it should use: the line is then counted at the
// price known (or unpriced: revenue 0, an empty currency), and the price's
// event, when it comes, corrects every line sold since its time. The result
// does not depend on how the topics interleave.
//
// Each event is handled in one PostgreSQL transaction with the consumer
// Guard: handled again after a crash or a rebalance, it changes nothing.
type Sales struct {
	pool            *pgxpool.Pool
	guard           consumer.Guard
	orders, catalog string // topics
	log             *slog.Logger
}

// NewSales returns the handler of the events topics named by the prefix.
func NewSales(pool *pgxpool.Pool, topicPrefix string, log *slog.Logger) *Sales {
	orders, catalog := Topics(topicPrefix)
	return &Sales{pool: pool, guard: consumer.Guard{Consumer: Name}, orders: orders, catalog: catalog, log: log}
}

// change is one event's effect on the read model, run inside its transaction.
type change func(ctx context.Context, tx pgx.Tx) error

// Handle is the consumer.Handler: it decodes rec and applies it once. A
// record that is not a valid event is poison (consumer.ErrPoison); database
// errors are returned for the Runner to retry.
func (s *Sales) Handle(ctx context.Context, rec *kgo.Record) error {
	ev, err := consumer.Decode[json.RawMessage](rec)
	if err != nil {
		return err
	}
	apply, err := s.changeFor(ev)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		v, err := s.guard.Apply(ctx, tx, ev.Meta)
		if err != nil {
			return err
		}
		if !v.New {
			s.log.Debug("event applied before; skipped", "id", ev.ID, "topic", ev.Topic, "recorded", v.Previous)
			return nil
		}
		if v.Missed > 0 {
			s.log.Warn("version gap: events of this aggregate were never applied", "topic", ev.Topic,
				"tenant", ev.Tenant, "aggregate", ev.AggregateID, "version", ev.Version, "previous", v.Previous, "missed", v.Missed)
		}
		if apply == nil {
			return nil
		}
		return apply(ctx, tx)
	})
}

// changeFor decodes ev's data; nil for events that change nothing here.
func (s *Sales) changeFor(ev consumer.Event[json.RawMessage]) (change, error) {
	switch {
	case ev.Topic == s.orders && ev.Type == eventItemAdded:
		d, err := consumer.As[itemAdded](ev)
		return func(ctx context.Context, tx pgx.Tx) error { return addLine(ctx, tx, ev.Meta, d.Data) }, err
	case ev.Topic == s.orders && ev.Type == eventItemRemoved:
		d, err := consumer.As[itemRemoved](ev)
		return func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM sales_open_lines WHERE tenant = $1 AND order_id = $2 AND sku = $3`,
				ev.Tenant, ev.AggregateID, d.Data.SKU)
			return err
		}, err
	case ev.Topic == s.orders && ev.Type == eventSubmitted:
		return func(ctx context.Context, tx pgx.Tx) error { return submit(ctx, tx, ev.Meta) }, nil
	case ev.Topic == s.orders && ev.Type == eventCancelled:
		return func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM sales_open_lines WHERE tenant = $1 AND order_id = $2`, ev.Tenant, ev.AggregateID)
			return err
		}, nil
	case ev.Topic == s.catalog && ev.Type == eventItemUpserted:
		d, err := consumer.As[item](ev)
		return func(ctx context.Context, tx pgx.Tx) error { return setPrice(ctx, tx, ev.Meta, d.Data) }, err
	}
	return nil, nil // orders.created.v1, and types this service does not know
}

// addLine adds an item-added event's quantity to its order's open line.
func addLine(ctx context.Context, tx pgx.Tx, m consumer.Meta, d itemAdded) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO sales_open_lines AS l (tenant, order_id, sku, quantity) VALUES ($1, $2, $3, $4)
		ON CONFLICT (tenant, order_id, sku) DO UPDATE SET quantity = l.quantity + EXCLUDED.quantity`,
		m.Tenant, m.AggregateID, d.SKU, d.Quantity)
	return err
}

// submit moves the order m names (its tenant's) from its open lines to
// sales_lines, each priced at its tenant's price in force at the submit
// time, and adds them to its tenant's daily_sales: one statement. Rows are
// written in SKU order, so that two transactions (overlapping owners) lock
// daily_sales rows in the same order.
func submit(ctx context.Context, tx pgx.Tx, m consumer.Meta) error {
	_, err := tx.Exec(ctx, `
		WITH moved AS (
			DELETE FROM sales_open_lines WHERE tenant = $1 AND order_id = $2 RETURNING sku, quantity
		), sold AS (
			INSERT INTO sales_lines (tenant, order_id, sku, day, submitted_at, quantity, unit_price, currency, price_from, price_version)
			SELECT $1, $2, m.sku, $3::date, $4, m.quantity, p.unit_price, coalesce(p.currency, ''), p.valid_from, p.version
			FROM moved m LEFT JOIN LATERAL (
				SELECT unit_price, currency, valid_from, version FROM sales_prices
				WHERE tenant = $1 AND sku = m.sku AND valid_from <= $4
				ORDER BY valid_from DESC, version DESC LIMIT 1
			) p ON true
			RETURNING day, sku, currency, quantity, quantity * coalesce(unit_price, 0) AS revenue
		)
		INSERT INTO daily_sales AS d (tenant, day, sku, currency, quantity, revenue)
		SELECT $1, day, sku, currency, quantity, revenue FROM sold ORDER BY sku
		ON CONFLICT (tenant, day, sku, currency) DO UPDATE
		SET quantity = d.quantity + EXCLUDED.quantity, revenue = d.revenue + EXCLUDED.revenue`,
		m.Tenant, m.AggregateID, m.Time.UTC().Format(time.DateOnly), m.Time)
	if err != nil {
		return fmt.Errorf("submitting %q's %s: %w", m.Tenant, m.AggregateID, err)
	}
	return nil
}

// setPrice records a tenant's catalog price from its event's time on. That
// tenant's lines sold at or after that time that were priced from an older
// price (or none) — the catalog event came late — take this price, and their
// days' totals for the SKU are summed again from sales_lines. Other tenants'
// lines of the same SKU are not touched.
func setPrice(ctx context.Context, tx pgx.Tx, m consumer.Meta, d item) error {
	tenant, sku := m.Tenant, m.AggregateID
	if _, err := tx.Exec(ctx, `
		INSERT INTO sales_prices (tenant, sku, version, valid_from, unit_price, currency) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant, sku, version) DO NOTHING`, tenant, sku, m.Version, m.Time, *d.UnitPrice, d.Currency); err != nil {
		return fmt.Errorf("price of %q's %s: %w", tenant, sku, err)
	}
	rows, err := tx.Query(ctx, `
		UPDATE sales_lines SET unit_price = $5, currency = $6, price_from = $3, price_version = $4
		WHERE tenant = $1 AND sku = $2 AND submitted_at >= $3 AND (price_from IS NULL OR (price_from, price_version) < ($3, $4))
		RETURNING day`, tenant, sku, m.Time, m.Version, *d.UnitPrice, d.Currency)
	if err != nil {
		return fmt.Errorf("repricing %q's %s: %w", tenant, sku, err)
	}
	days, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil || len(days) == 0 {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM daily_sales WHERE tenant = $1 AND sku = $2 AND day = ANY($3)`, tenant, sku, days); err != nil {
		return fmt.Errorf("repricing %q's %s: %w", tenant, sku, err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO daily_sales (tenant, day, sku, currency, quantity, revenue)
		SELECT tenant, day, sku, currency, sum(quantity), sum(quantity * coalesce(unit_price, 0)) FROM sales_lines
		WHERE tenant = $1 AND sku = $2 AND day = ANY($3) GROUP BY tenant, day, sku, currency ORDER BY day, currency`,
		tenant, sku, days); err != nil {
		return fmt.Errorf("repricing %q's %s: %w", tenant, sku, err)
	}
	return nil
}

package view

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// ApplyCatalogEvent projects one catalog event into its tenant's
// catalog_items (an event without a tenant is ErrBadEvent). It is
// idempotent by version: when the item's stored version is ev.Version or
// more, the event was applied already and nothing changes; otherwise the
// item is upserted with version = ev.Version. An unknown event type is an
// error wrapping ErrUnknownEvent; malformed data, one wrapping ErrBadEvent.
// It runs a single statement, so it is atomic even on a pool.
func ApplyCatalogEvent(ctx context.Context, q Querier, ev envelope.Event) error {
	return sendQueued(ctx, q, ev, QueueCatalogEvent)
}

// sendQueued runs what queue queues for ev in one round trip.
func sendQueued(ctx context.Context, q Querier, ev envelope.Event, queue func(*pgx.Batch, envelope.Event) error) error {
	b := &pgx.Batch{}
	if err := queue(b, ev); err != nil {
		return err
	}
	return q.SendBatch(ctx, b).Close()
}

// QueueCatalogEvent queues on b the statement ApplyCatalogEvent runs; an
// error about the event itself is returned at once, one from the database
// when b runs.
func QueueCatalogEvent(b *pgx.Batch, ev envelope.Event) error {
	if ev.Tenant == "" {
		return fmt.Errorf("%w: event %s has no tenant", ErrBadEvent, ev.ID())
	}
	if ev.Type != catalog.EventItemUpserted {
		return fmt.Errorf("%w: %q (event %s)", ErrUnknownEvent, ev.Type, ev.ID())
	}
	var it catalog.Item
	if err := unmarshal(ev, &it); err != nil {
		return err
	}
	if it.SKU == "" {
		it.SKU = ev.AggregateID
	}
	if it.SKU != ev.AggregateID {
		return fmt.Errorf("%w: event %s: sku %q is not the aggregate ID", ErrBadEvent, ev.ID(), it.SKU)
	}
	b.Queue(`
		INSERT INTO catalog_items AS c (tenant, sku, name, unit_price, currency, stock, max_per_order, active, version)
		VALUES ($9, $1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (tenant, sku) DO UPDATE SET
			name = excluded.name, unit_price = excluded.unit_price, currency = excluded.currency,
			stock = excluded.stock, max_per_order = excluded.max_per_order, active = excluded.active,
			version = excluded.version
		WHERE c.version < excluded.version`,
		it.SKU, it.Name, it.UnitPrice, it.Currency, it.Stock, it.MaxPerOrder, it.Active, ev.Version, ev.Tenant).Exec(func(pgconn.CommandTag) error { return nil })
	return nil
}

// ApplyOrderEvent projects one order event into its tenant's orders and
// order_lines (an event without a tenant is ErrBadEvent). It
// is idempotent by version: when the order's stored version is ev.Version or
// more, the event was applied already and nothing changes; otherwise the
// event is applied and the order's version set to ev.Version, updated_at to
// ev.Time (now when zero). Each event is one statement, so it is atomic even
// on a pool. An unknown event type is an error wrapping ErrUnknownEvent;
// malformed data, one wrapping ErrBadEvent; an event other than
// orders.EventCreated for an order the view does not have (its creation was
// never applied), one wrapping ErrNotFound.
func ApplyOrderEvent(ctx context.Context, q Querier, ev envelope.Event) error {
	return sendQueued(ctx, q, ev, QueueOrderEvent)
}

// QueueOrderEvent queues on b the statement ApplyOrderEvent runs, with a
// check of its result; an error about the event itself is returned at once,
// one from the database (ErrNotFound among them) when b runs.
func QueueOrderEvent(b *pgx.Batch, ev envelope.Event) error {
	if ev.Tenant == "" {
		return fmt.Errorf("%w: event %s has no tenant", ErrBadEvent, ev.ID())
	}
	var at *time.Time
	if !ev.Time.IsZero() {
		at = &ev.Time
	}
	var (
		sql  string
		args = []any{ev.AggregateID, ev.Version, at, ev.Tenant}
	)
	// Every statement but the creation's returns one row: the count of
	// orders it changed (0 or 1; the order's version check is in its CTE),
	// and whether the order exists.
	// Every row is the tenant's ($4): two tenants' orders never meet.
	switch ev.Type {
	case orders.EventCreated:
		var c orders.Created
		if err := unmarshal(ev, &c); err != nil {
			return err
		}
		if c.OrderID != "" && c.OrderID != ev.AggregateID {
			return fmt.Errorf("%w: event %s: orderId %q is not the aggregate ID", ErrBadEvent, ev.ID(), c.OrderID)
		}
		b.Queue(`
			INSERT INTO orders AS o (tenant, id, customer_id, currency, status, version, updated_at)
			VALUES ($4, $1, $5, $6, 'open', $2, coalesce($3, now()))
			ON CONFLICT (tenant, id) DO UPDATE SET
				customer_id = excluded.customer_id, currency = excluded.currency,
				status = excluded.status, version = excluded.version, updated_at = excluded.updated_at
			WHERE o.version < excluded.version`,
			ev.AggregateID, ev.Version, at, ev.Tenant, c.CustomerID, c.Currency).Exec(func(pgconn.CommandTag) error { return nil })
		return nil
	case orders.EventItemAdded:
		var a orders.ItemAdded
		if err := unmarshal(ev, &a); err != nil {
			return err
		}
		if a.SKU == "" || a.Quantity < 1 {
			return fmt.Errorf("%w: event %s: want a sku and a positive quantity", ErrBadEvent, ev.ID())
		}
		sql = `
			WITH o AS (` + bumpOrder + `),
			l AS (
				INSERT INTO order_lines AS l (tenant, order_id, sku, quantity)
				SELECT $4, id, $5, $6 FROM o
				ON CONFLICT (tenant, order_id, sku) DO UPDATE SET quantity = l.quantity + excluded.quantity
			)
			SELECT (SELECT count(*) FROM o), ` + orderExists
		args = append(args, a.SKU, a.Quantity)
	case orders.EventItemRemoved:
		var r orders.ItemRemoved
		if err := unmarshal(ev, &r); err != nil {
			return err
		}
		if r.SKU == "" {
			return fmt.Errorf("%w: event %s: want a sku", ErrBadEvent, ev.ID())
		}
		sql = `
			WITH o AS (` + bumpOrder + `),
			l AS (DELETE FROM order_lines l USING o WHERE l.tenant = $4 AND l.order_id = o.id AND l.sku = $5)
			SELECT (SELECT count(*) FROM o), ` + orderExists
		args = append(args, r.SKU)
	case orders.EventSubmitted, orders.EventCancelled:
		if !json.Valid(ev.Data) {
			return fmt.Errorf("%w: event %s: data is not JSON", ErrBadEvent, ev.ID())
		}
		status := orders.StatusSubmitted
		if ev.Type == orders.EventCancelled {
			status = orders.StatusCancelled
		}
		// A submitted order's lines hold stock: they are added to the SKUs'
		// reservations in the same statement (in SKU order, so that two
		// projectors submitting orders at once lock the rows in one order).
		sql = `
			WITH o AS (
				UPDATE orders SET status = $5, version = $2, updated_at = coalesce($3, now())
				WHERE tenant = $4 AND id = $1 AND version < $2
				RETURNING id
			),
			r AS (
				INSERT INTO sku_reservations AS r (tenant, sku, quantity)
				SELECT $4, l.sku, l.quantity FROM order_lines l JOIN o ON l.tenant = $4 AND l.order_id = o.id
				WHERE $5 = '` + orders.StatusSubmitted + `'
				ORDER BY l.sku
				ON CONFLICT (tenant, sku) DO UPDATE SET quantity = r.quantity + excluded.quantity
			)
			SELECT (SELECT count(*) FROM o), ` + orderExists
		args = append(args, status)
	default:
		return fmt.Errorf("%w: %q (event %s)", ErrUnknownEvent, ev.Type, ev.ID())
	}
	b.Queue(sql, args...).QueryRow(func(row pgx.Row) error {
		var changed int
		var exists bool
		if err := row.Scan(&changed, &exists); err != nil {
			return fmt.Errorf("view: apply %s: %w", ev.ID(), err)
		}
		// Nothing changed: a duplicate delivery, or an order the view lacks.
		if changed == 0 && !exists {
			return fmt.Errorf("%w: order %q, the subject of event %s (%s)", ErrNotFound, ev.AggregateID, ev.ID(), ev.Type)
		}
		return nil
	})
	return nil
}

// orderExists is the select-list item that says whether the tenant's ($4)
// order ($1) exists (in the statement's snapshot: an order changed by the
// same statement exists as well).
const orderExists = `EXISTS (SELECT 1 FROM orders WHERE tenant = $4 AND id = $1)`

// bumpOrder sets the tenant's ($4) order's version ($2) and updated_at ($3) unless the
// event ($2) was applied already; it returns the order's id when it did.
const bumpOrder = `
	UPDATE orders SET version = $2, updated_at = coalesce($3, now())
	WHERE tenant = $4 AND id = $1 AND version < $2
	RETURNING id`

func unmarshal(ev envelope.Event, v any) error {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return fmt.Errorf("%w: event %s (%s): %w", ErrBadEvent, ev.ID(), ev.Type, err)
	}
	return nil
}

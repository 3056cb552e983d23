package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/domain/view"
)

// dataPoint is the cost of deriving one add-item reply (view.OrderReply: the
// order, its lines and its validItems) at one size of the view.
type dataPoint struct {
	Orders       int     `json:"orders"`       // in the view, half of them submitted
	CatalogItems int     `json:"catalogItems"` // all active
	Samples      int     `json:"samples"`
	P50          float64 `json:"p50Ms"`
	Max          float64 `json:"maxMs"`
	ValidItems   int     `json:"validItems"` // in one reply
	// MoreValidItems: the reply said more items are valid than it lists
	// (view.MaxValidItems); GET /v1/orders/{id}/valid-items pages on.
	MoreValidItems bool `json:"moreValidItems"`
}

// measureDataSize fills a view with orders (three lines each, half of the
// orders submitted, so their lines hold stock) and catalogs of each size,
// then times the reply query of open orders.
func measureDataSize(ctx context.Context, e *env, orderCounts, catalogSizes []int, log *slog.Logger) ([]dataPoint, error) {
	var out []dataPoint
	for _, n := range orderCounts {
		dsn, err := e.database(ctx, fmt.Sprintf("data_%d", n))
		if err != nil {
			return nil, err
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return nil, err
		}
		points, err := measureOrders(ctx, pool, n, catalogSizes, log)
		pool.Close()
		if err != nil {
			return nil, fmt.Errorf("data size, %d orders: %w", n, err)
		}
		out = append(out, points...)
	}
	return out, nil
}

func measureOrders(ctx context.Context, pool *pgxpool.Pool, orders int, catalogSizes []int, log *slog.Logger) ([]dataPoint, error) {
	if err := view.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	started := time.Now()
	// Lines name sku-0000000..sku-0000009, on sale in every catalog size.
	// Every row is the bench's tenant's, the one the reply query reads.
	tenant := benchTenant
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO catalog_items (tenant, sku, name, unit_price, currency, stock, max_per_order, active, version)
			SELECT $1, 'sku-' || lpad(i::text, 7, '0'), 'Item ' || i, 100 + i, 'EUR', 1000000000, 1000, true, 1 FROM generate_series(0, 9) i`, []any{tenant}},
		{`INSERT INTO orders (tenant, id, customer_id, currency, status, version, updated_at)
			SELECT $1, 'o' || i, 'c', 'EUR', CASE WHEN i % 2 = 0 THEN 'submitted' ELSE 'open' END, 4, now() FROM generate_series(1, $2::int) i`, []any{tenant, orders}},
		{`INSERT INTO order_lines (tenant, order_id, sku, quantity)
			SELECT $1, 'o' || i, 'sku-' || lpad(((i + k) % 10)::text, 7, '0'), 1 + k FROM generate_series(1, $2::int) i, generate_series(0, 2) k`, []any{tenant, orders}},
		// What the projector keeps as orders are submitted (view.ApplyOrderEvent).
		{`INSERT INTO sku_reservations (tenant, sku, quantity)
			SELECT $1, l.sku, sum(l.quantity) FROM order_lines l JOIN orders o ON o.tenant = l.tenant AND o.id = l.order_id
			WHERE o.tenant = $1 AND o.status = 'submitted' GROUP BY l.sku`, []any{tenant}},
		{`ANALYZE`, nil},
	} {
		if _, err := pool.Exec(ctx, q.sql, q.args...); err != nil {
			return nil, fmt.Errorf("filling the view: %w", err)
		}
	}
	log.Info("view filled", "orders", orders, "took", time.Since(started).Round(time.Millisecond))
	samples := 50
	if orders >= 1_000_000 {
		samples = 10
	}
	var out []dataPoint
	for _, size := range catalogSizes {
		if _, err := pool.Exec(ctx, `DELETE FROM catalog_items WHERE tenant = $1 AND sku >= 'sku-0000010'`, tenant); err != nil {
			return nil, err
		}
		if _, err := pool.Exec(ctx, `INSERT INTO catalog_items (tenant, sku, name, unit_price, currency, stock, max_per_order, active, version)
			SELECT $1, 'sku-' || lpad(i::text, 7, '0'), 'Item ' || i, 100 + i, 'EUR', 1000000000, 1000, true, 1 FROM generate_series(10, $2::int - 1) i`, tenant, size); err != nil {
			return nil, err
		}
		if _, err := pool.Exec(ctx, `ANALYZE catalog_items`); err != nil {
			return nil, err
		}
		p := dataPoint{Orders: orders, CatalogItems: size, Samples: samples}
		var took []float64
		for s := range samples {
			id := fmt.Sprintf("o%d", 1+2*((s*7919)%(orders/2))) // odd: open orders, spread over the view
			t := time.Now()
			body, err := view.OrderReply(ctx, pool, tenant, "bench", id)
			if err != nil {
				return nil, err
			}
			took = append(took, float64(time.Since(t))/float64(time.Millisecond))
			var reply struct {
				ValidItems     []json.RawMessage
				MoreValidItems bool
			}
			if err := json.Unmarshal(body, &reply); err != nil {
				return nil, fmt.Errorf("reply of %s: %w", id, err)
			}
			p.ValidItems, p.MoreValidItems = len(reply.ValidItems), reply.MoreValidItems
		}
		slices.Sort(took)
		p.P50, p.Max = took[len(took)/2], took[len(took)-1]
		log.Info("data size", "orders", orders, "catalog", size, "p50Ms", p.P50, "validItems", p.ValidItems)
		out = append(out, p)
	}
	return out, nil
}

// writeDataSize renders the data-size table.
func writeDataSize(b *strings.Builder, points []dataPoint) {
	if len(points) == 0 {
		return
	}
	b.WriteString("## Data size: the reply query against the size of the view\n\n")
	fmt.Fprintf(b, "`view.OrderReply` (the order, its priced lines and its validItems — what the projector derives for every add-item reply) on PostgreSQL alone, for open orders of a view whose orders have three lines each and half of them are submitted (their lines hold stock, which validItems subtracts: the projector keeps the held quantity per SKU in sku_reservations as orders are submitted). A reply lists at most %d valid items (moreValidItems says when more exist; GET /v1/orders/{id}/valid-items pages on).\n\n", view.MaxValidItems)
	b.WriteString("| orders in the view | catalog items | samples | p50 ms | max ms | validItems in one reply | more valid items |\n|---|---|---|---|---|---|---|\n")
	for _, p := range points {
		fmt.Fprintf(b, "| %d | %d | %d | %.1f | %.1f | %d | %v |\n", p.Orders, p.CatalogItems, p.Samples, p.P50, p.Max, p.ValidItems, p.MoreValidItems)
	}
	b.WriteString("\n")
}

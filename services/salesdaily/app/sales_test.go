package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/consumer"
	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
	"github.com/answerback/answerback/services/salesdaily/app"
)

// event is an event record of the tenant "default" as the aggregator
// writes it, with the producer's own data types (the contract this service
// reads).
func event(topic, aggregateID string, version int64, typ string, at time.Time, data any) *kgo.Record {
	return eventOf("default", topic, aggregateID, version, typ, at, data)
}

// eventOf is event for tenant's aggregate: keyed "tenant/aggregateID", with
// ce_tenant. Tenant "" makes a record from before tenants: a bare key and no
// ce_tenant.
func eventOf(tenant, topic, aggregateID string, version int64, typ string, at time.Time, data any) *kgo.Record {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	source := "/answerback/" + strings.SplitN(typ, ".", 2)[0]
	return envelope.EncodeEvent(topic, source, envelope.Event{
		Meta: envelope.Meta{AggregateID: aggregateID, CommandID: fmt.Sprintf("cmd-%s-%s-%d", tenant, aggregateID, version), Tenant: tenant},
		Type: typ, Version: version, Time: at, Index: 1, Count: 1, Data: b,
	})
}

func price(sku string, cents int64, currency string) catalog.Item {
	return catalog.Item{SKU: sku, Name: sku, UnitPrice: cents, Currency: currency, Stock: 1000, MaxPerOrder: 100, Active: true}
}

// dailySales reads daily_sales as "[tenant] day sku currency: quantity
// revenue" lines, sorted.
func dailySales(ctx context.Context, t *testing.T, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []string {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT tenant, day, sku, currency, quantity, revenue FROM daily_sales`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var day time.Time
	var tenant, sku, currency string
	var quantity, revenue int64
	if _, err := pgx.ForEachRow(rows, []any{&tenant, &day, &sku, &currency, &quantity, &revenue}, func() error {
		out = append(out, fmt.Sprintf("[%s] %s %s %s: %d %d", tenant, day.Format(time.DateOnly), sku, currency, quantity, revenue))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out) // in Go: the database's collation may order otherwise
	return out
}

// TestSalesHandlesEventsOnce drives the handler directly, in an order Kafka
// may deliver: a submit before the prices it needs (catalog.events lagging),
// every event delivered twice, removals, a cancel, a poison record.
func TestSalesHandlesEventsOnce(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := app.Migrate(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	if err := app.Migrate(ctx, pg.Pool); err != nil {
		t.Fatalf("second migration: %v", err)
	}
	ordersTopic, catalogTopic := app.Topics("p.")
	s := app.NewSales(pg.Pool, "p.", slog.New(slog.DiscardHandler))
	handle := func(recs ...*kgo.Record) {
		t.Helper()
		for _, rec := range recs {
			if err := s.Handle(ctx, rec); err != nil {
				t.Fatalf("%s: %v", rec.Key, err)
			}
		}
	}
	check := func(step string, want ...string) {
		t.Helper()
		if got := dailySales(ctx, t, pg.Pool); !slices.Equal(got, want) {
			t.Errorf("%s: daily_sales\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	at := time.Date(2026, 3, 1, 23, 50, 0, 0, time.UTC)
	o := func(id string, v int64, typ string, minutes int, data any) *kgo.Record {
		return event(ordersTopic, id, v, typ, at.Add(time.Duration(minutes)*time.Minute), data)
	}
	c := func(sku string, v int64, minutes int, cents int64) *kgo.Record {
		return event(catalogTopic, sku, v, catalog.EventItemUpserted, at.Add(time.Duration(minutes)*time.Minute), price(sku, cents, "EUR"))
	}
	o1 := []*kgo.Record{
		o("o-1", 1, orders.EventCreated, 0, orders.Created{OrderID: "o-1", CustomerID: "c", Currency: "EUR"}),
		o("o-1", 2, orders.EventItemAdded, 1, orders.ItemAdded{SKU: "apple", Quantity: 3}),
		o("o-1", 3, orders.EventItemAdded, 2, orders.ItemAdded{SKU: "pear", Quantity: 2}),
		o("o-1", 4, orders.EventItemAdded, 3, orders.ItemAdded{SKU: "apple", Quantity: 1}),
		o("o-1", 5, orders.EventSubmitted, 5, orders.Submitted{}),
	}
	handle(o1...)
	check("submitted before any price", "[default] 2026-03-01 apple : 4 0", "[default] 2026-03-01 pear : 2 0")

	prices := []*kgo.Record{
		c("apple", 1, -60, 100), // in force at the submit
		c("apple", 2, 20, 150),  // after it
		c("pear", 1, -60, 70),
		c("pear", 2, 4, 80), // in force at the submit
	}
	handle(prices...)
	check("prices came late", "[default] 2026-03-01 apple EUR: 4 400", "[default] 2026-03-01 pear EUR: 2 160")

	handle(append(o1, prices...)...)
	check("everything delivered again", "[default] 2026-03-01 apple EUR: 4 400", "[default] 2026-03-01 pear EUR: 2 160")

	handle(
		o("o-2", 1, orders.EventCreated, 30, orders.Created{OrderID: "o-2", CustomerID: "c", Currency: "EUR"}),
		o("o-2", 2, orders.EventItemAdded, 31, orders.ItemAdded{SKU: "apple", Quantity: 1}),
		o("o-2", 3, orders.EventItemAdded, 31, orders.ItemAdded{SKU: "pear", Quantity: 5}),
		o("o-2", 4, orders.EventItemRemoved, 32, orders.ItemRemoved{SKU: "pear"}),
		o("o-2", 5, orders.EventSubmitted, 33, orders.Submitted{}), // 00:23 on 2 March
		o("o-3", 1, orders.EventCreated, 30, orders.Created{OrderID: "o-3", CustomerID: "c", Currency: "EUR"}),
		o("o-3", 2, orders.EventItemAdded, 31, orders.ItemAdded{SKU: "apple", Quantity: 7}),
		o("o-3", 3, orders.EventCancelled, 32, orders.Cancelled{}),
	)
	check("next day", "[default] 2026-03-01 apple EUR: 4 400", "[default] 2026-03-01 pear EUR: 2 160", "[default] 2026-03-02 apple EUR: 1 150")

	poison := o("o-4", 2, orders.EventItemAdded, 40, orders.ItemAdded{SKU: "apple", Quantity: 0})
	if err := s.Handle(ctx, poison); !errors.Is(err, consumer.ErrPoison) {
		t.Errorf("item-added with quantity 0: %v, want poison", err)
	}
	// A version gap (v2 was poison) is logged; the event is applied.
	handle(o("o-4", 1, orders.EventCreated, 40, orders.Created{OrderID: "o-4", CustomerID: "c", Currency: "EUR"}),
		o("o-4", 3, orders.EventItemAdded, 41, orders.ItemAdded{SKU: "pear", Quantity: 1}),
		o("o-4", 4, orders.EventSubmitted, 42, orders.Submitted{}))
	check("after a gap", "[default] 2026-03-01 apple EUR: 4 400", "[default] 2026-03-01 pear EUR: 2 160", "[default] 2026-03-02 apple EUR: 1 150", "[default] 2026-03-02 pear EUR: 1 80")
}

// TestSalesKeepsTenantsApart: two tenants sell the same SKU, "apple", at
// different prices, in orders of the same IDs. Each tenant's daily_sales
// counts its own orders at its own prices: a price of one tenant never
// prices (nor, arriving late, reprices) the other's lines, and one tenant's
// cancel or item removal never touches the other's order of the same ID.
func TestSalesKeepsTenantsApart(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := app.Migrate(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	ordersTopic, catalogTopic := app.Topics("p.")
	s := app.NewSales(pg.Pool, "p.", slog.New(slog.DiscardHandler))
	var handled []*kgo.Record
	handle := func(recs ...*kgo.Record) {
		t.Helper()
		for _, rec := range recs {
			if err := s.Handle(ctx, rec); err != nil {
				t.Fatalf("%s: %v", rec.Key, err)
			}
		}
		handled = append(handled, recs...)
	}
	check := func(step string, want ...string) {
		t.Helper()
		if got := dailySales(ctx, t, pg.Pool); !slices.Equal(got, want) {
			t.Errorf("%s: daily_sales\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	o := func(tenant, id string, v int64, typ string, minutes int, data any) *kgo.Record {
		return eventOf(tenant, ordersTopic, id, v, typ, at.Add(time.Duration(minutes)*time.Minute), data)
	}
	c := func(tenant, sku string, v int64, minutes int, cents int64) *kgo.Record {
		return eventOf(tenant, catalogTopic, sku, v, catalog.EventItemUpserted, at.Add(time.Duration(minutes)*time.Minute), price(sku, cents, "EUR"))
	}
	created := orders.Created{OrderID: "o-1", CustomerID: "c", Currency: "EUR"}

	// acme's catalog is known; globex's comes late. The same versions, SKUs
	// and order IDs in both.
	handle(c("acme", "apple", 1, -60, 100), c("acme", "pear", 1, -60, 70))
	for _, tenant := range []string{"acme", "globex"} {
		handle(o(tenant, "o-1", 1, orders.EventCreated, 0, created),
			o(tenant, "o-2", 1, orders.EventCreated, 0, created))
	}
	handle(
		o("acme", "o-1", 2, orders.EventItemAdded, 1, orders.ItemAdded{SKU: "apple", Quantity: 3}),
		o("globex", "o-1", 2, orders.EventItemAdded, 1, orders.ItemAdded{SKU: "apple", Quantity: 2}),
		o("globex", "o-1", 3, orders.EventItemAdded, 2, orders.ItemAdded{SKU: "pear", Quantity: 1}),
		o("acme", "o-1", 3, orders.EventItemAdded, 2, orders.ItemAdded{SKU: "pear", Quantity: 4}),
		o("acme", "o-1", 4, orders.EventItemRemoved, 3, orders.ItemRemoved{SKU: "pear"}), // acme's pear only
		o("acme", "o-2", 2, orders.EventItemAdded, 1, orders.ItemAdded{SKU: "apple", Quantity: 7}),
		o("globex", "o-2", 2, orders.EventItemAdded, 1, orders.ItemAdded{SKU: "apple", Quantity: 5}),
		o("acme", "o-2", 3, orders.EventCancelled, 4, orders.Cancelled{}), // acme's o-2 only
		o("acme", "o-1", 5, orders.EventSubmitted, 5, orders.Submitted{}),
		o("globex", "o-1", 4, orders.EventSubmitted, 5, orders.Submitted{}),
		o("globex", "o-2", 3, orders.EventSubmitted, 6, orders.Submitted{}),
	)
	check("globex's prices not known yet",
		"[acme] 2026-03-01 apple EUR: 3 300",
		"[globex] 2026-03-01 apple : 7 0", // not priced by acme's apple
		"[globex] 2026-03-01 pear : 1 0")

	handle(c("globex", "apple", 1, -60, 250), c("globex", "pear", 1, -60, 90))
	check("globex's prices came late",
		"[acme] 2026-03-01 apple EUR: 3 300",
		"[globex] 2026-03-01 apple EUR: 7 1750",
		"[globex] 2026-03-01 pear EUR: 1 90")

	handle(c("acme", "apple", 2, -30, 120)) // in force at the submits, and late: only acme's line is repriced
	check("acme repriced",
		"[acme] 2026-03-01 apple EUR: 3 360",
		"[globex] 2026-03-01 apple EUR: 7 1750",
		"[globex] 2026-03-01 pear EUR: 1 90")

	// The next day: a second order o-3 in each, each at its own price.
	handle(o("acme", "o-3", 1, orders.EventCreated, 24*60, created),
		o("globex", "o-3", 1, orders.EventCreated, 24*60, created),
		o("globex", "o-3", 2, orders.EventItemAdded, 24*60+1, orders.ItemAdded{SKU: "apple", Quantity: 1}),
		o("acme", "o-3", 2, orders.EventItemAdded, 24*60+1, orders.ItemAdded{SKU: "apple", Quantity: 10}),
		o("acme", "o-3", 3, orders.EventSubmitted, 24*60+2, orders.Submitted{}),
		o("globex", "o-3", 3, orders.EventSubmitted, 24*60+2, orders.Submitted{}))
	want := []string{
		"[acme] 2026-03-01 apple EUR: 3 360",
		"[acme] 2026-03-02 apple EUR: 10 1200",
		"[globex] 2026-03-01 apple EUR: 7 1750",
		"[globex] 2026-03-01 pear EUR: 1 90",
		"[globex] 2026-03-02 apple EUR: 1 250",
	}
	check("next day", want...)

	handle(handled...)
	check("everything delivered again", want...)
	var n int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM sales_open_lines`).Scan(&n); err != nil || n != 0 {
		t.Errorf("open lines left: %d, %v", n, err)
	}
}

// TestMigrateUpgradesTablesFromBeforeTenants: the tables of the schema
// before tenants, with rows, are upgraded in place: the rows get the empty
// tenant, which is that of events from before tenants (a bare key, no
// ce_tenant), so such events go on where they stopped; the primary keys and
// indexes start with the tenant; migrating again changes nothing. A tenant's
// events then never meet those rows.
func TestMigrateUpgradesTablesFromBeforeTenants(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	ordersTopic, catalogTopic := app.Topics("p.")
	// The schema and rows as the service before tenants left them: apple
	// priced 100 from midnight, o-1 (3 apples) submitted at 10:00, o-2 open
	// with 2 apples.
	if _, err := pg.Pool.Exec(ctx, `
		CREATE TABLE consumer_versions (
			consumer text NOT NULL, topic text NOT NULL, aggregate_id text NOT NULL, version bigint NOT NULL,
			PRIMARY KEY (consumer, topic, aggregate_id)
		);
		CREATE TABLE sales_prices (
			sku text NOT NULL, version bigint NOT NULL, valid_from timestamptz NOT NULL,
			unit_price bigint NOT NULL, currency text NOT NULL,
			PRIMARY KEY (sku, version)
		);
		CREATE INDEX sales_prices_by_time ON sales_prices (sku, valid_from);
		CREATE TABLE sales_open_lines (
			order_id text NOT NULL, sku text NOT NULL, quantity bigint NOT NULL,
			PRIMARY KEY (order_id, sku)
		);
		CREATE TABLE sales_lines (
			order_id text NOT NULL, sku text NOT NULL, day date NOT NULL, submitted_at timestamptz NOT NULL,
			quantity bigint NOT NULL, unit_price bigint, currency text NOT NULL,
			price_from timestamptz, price_version bigint,
			PRIMARY KEY (order_id, sku)
		);
		CREATE INDEX sales_lines_by_sku ON sales_lines (sku, submitted_at);
		CREATE TABLE daily_sales (
			day date NOT NULL, sku text NOT NULL, currency text NOT NULL, quantity bigint NOT NULL, revenue bigint NOT NULL,
			PRIMARY KEY (day, sku, currency)
		);
		INSERT INTO sales_prices VALUES ('apple', 1, '2026-03-01T00:00:00Z', 100, 'EUR');
		INSERT INTO sales_open_lines VALUES ('o-2', 'apple', 2);
		INSERT INTO sales_lines VALUES ('o-1', 'apple', '2026-03-01', '2026-03-01T10:00:00Z', 3, 100, 'EUR', '2026-03-01T00:00:00Z', 1);
		INSERT INTO daily_sales VALUES ('2026-03-01', 'apple', 'EUR', 3, 300);
		INSERT INTO consumer_versions VALUES ('sales-daily', '`+ordersTopic+`', 'o-1', 4), ('sales-daily', '`+ordersTopic+`', 'o-2', 2),
			('sales-daily', '`+catalogTopic+`', 'apple', 1);`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := app.Migrate(ctx, pg.Pool); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pg.Pool.Query(ctx, `
		SELECT c.conrelid::regclass::text || ' (' || string_agg(a.attname::text, ', ' ORDER BY k.ord) || ')'
		FROM pg_constraint c
		CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
		WHERE c.contype = 'p' AND c.connamespace = current_schema()::regnamespace GROUP BY c.conrelid
		UNION ALL
		SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%pkey'`)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	if want := []string{
		"consumer_versions (consumer, topic, tenant, aggregate_id)",
		"daily_sales (tenant, day, sku, currency)",
		"sales_lines (tenant, order_id, sku)",
		"sales_lines_by_tenant_sku",
		"sales_open_lines (tenant, order_id, sku)",
		"sales_prices (tenant, sku, version)",
		"sales_prices_by_tenant_time",
	}; !slices.Equal(keys, want) {
		t.Errorf("primary keys and indexes after the upgrade\n%s\nwant\n%s", strings.Join(keys, "\n"), strings.Join(want, "\n"))
	}
	var untenanted int
	if err := pg.Pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM sales_prices WHERE tenant = '') + (SELECT count(*) FROM sales_open_lines WHERE tenant = '')
			+ (SELECT count(*) FROM sales_lines WHERE tenant = '') + (SELECT count(*) FROM consumer_versions WHERE tenant = '')`).Scan(&untenanted); err != nil || untenanted != 6 {
		t.Errorf("rows with the empty tenant: %d, %v; want all 6", untenanted, err)
	}

	s := app.NewSales(pg.Pool, "p.", slog.New(slog.DiscardHandler))
	handle := func(recs ...*kgo.Record) {
		t.Helper()
		for _, rec := range recs {
			if err := s.Handle(ctx, rec); err != nil {
				t.Fatalf("%s: %v", rec.Key, err)
			}
		}
	}
	check := func(step string, want ...string) {
		t.Helper()
		if got := dailySales(ctx, t, pg.Pool); !slices.Equal(got, want) {
			t.Errorf("%s: daily_sales\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	check("upgraded", "[] 2026-03-01 apple EUR: 3 300")

	at := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	// Events from before tenants go on where they stopped: a re-delivered
	// one is skipped, the next one applied to the rows it left.
	handle(eventOf("", ordersTopic, "o-2", 2, orders.EventItemAdded, at, orders.ItemAdded{SKU: "apple", Quantity: 2}),
		eventOf("", ordersTopic, "o-2", 3, orders.EventSubmitted, at, orders.Submitted{}))
	check("an order from before tenants submitted", "[] 2026-03-01 apple EUR: 5 500")

	// A tenant's order o-2 is another order, unpriced by the old apple,
	// until its tenant's own price comes.
	handle(eventOf("acme", ordersTopic, "o-2", 1, orders.EventCreated, at, orders.Created{OrderID: "o-2", CustomerID: "c", Currency: "EUR"}),
		eventOf("acme", ordersTopic, "o-2", 2, orders.EventItemAdded, at, orders.ItemAdded{SKU: "apple", Quantity: 1}),
		eventOf("acme", ordersTopic, "o-2", 3, orders.EventSubmitted, at, orders.Submitted{}))
	check("a tenant's o-2", "[] 2026-03-01 apple EUR: 5 500", "[acme] 2026-03-01 apple : 1 0")
	handle(eventOf("acme", catalogTopic, "apple", 1, catalog.EventItemUpserted, at.Add(-time.Hour), price("apple", 130, "EUR")))
	check("the tenant's price", "[] 2026-03-01 apple EUR: 5 500", "[acme] 2026-03-01 apple EUR: 1 130")
}

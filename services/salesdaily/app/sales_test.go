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

// event is an event record as the aggregator writes it, with the
// producer's own data types (the contract this service reads).
func event(topic, aggregateID string, version int64, typ string, at time.Time, data any) *kgo.Record {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	source := "/answerback/" + strings.SplitN(typ, ".", 2)[0]
	return envelope.EncodeEvent(topic, source, envelope.Event{
		Meta: envelope.Meta{AggregateID: aggregateID, CommandID: fmt.Sprintf("cmd-%s-%d", aggregateID, version), Tenant: "default"},
		Type: typ, Version: version, Time: at, Index: 1, Count: 1, Data: b,
	})
}

func price(sku string, cents int64, currency string) catalog.Item {
	return catalog.Item{SKU: sku, Name: sku, UnitPrice: cents, Currency: currency, Stock: 1000, MaxPerOrder: 100, Active: true}
}

// dailySales reads daily_sales as "day sku currency: quantity revenue" lines, sorted.
func dailySales(ctx context.Context, t *testing.T, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []string {
	t.Helper()
	rows, err := db.Query(ctx, `SELECT day, sku, currency, quantity, revenue FROM daily_sales ORDER BY day, sku, currency`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var day time.Time
	var sku, currency string
	var quantity, revenue int64
	if _, err := pgx.ForEachRow(rows, []any{&day, &sku, &currency, &quantity, &revenue}, func() error {
		out = append(out, fmt.Sprintf("%s %s %s: %d %d", day.Format(time.DateOnly), sku, currency, quantity, revenue))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
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
	check("submitted before any price", "2026-03-01 apple : 4 0", "2026-03-01 pear : 2 0")

	prices := []*kgo.Record{
		c("apple", 1, -60, 100), // in force at the submit
		c("apple", 2, 20, 150),  // after it
		c("pear", 1, -60, 70),
		c("pear", 2, 4, 80), // in force at the submit
	}
	handle(prices...)
	check("prices came late", "2026-03-01 apple EUR: 4 400", "2026-03-01 pear EUR: 2 160")

	handle(append(o1, prices...)...)
	check("everything delivered again", "2026-03-01 apple EUR: 4 400", "2026-03-01 pear EUR: 2 160")

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
	check("next day", "2026-03-01 apple EUR: 4 400", "2026-03-01 pear EUR: 2 160", "2026-03-02 apple EUR: 1 150")

	poison := o("o-4", 2, orders.EventItemAdded, 40, orders.ItemAdded{SKU: "apple", Quantity: 0})
	if err := s.Handle(ctx, poison); !errors.Is(err, consumer.ErrPoison) {
		t.Errorf("item-added with quantity 0: %v, want poison", err)
	}
	// A version gap (v2 was poison) is logged; the event is applied.
	handle(o("o-4", 1, orders.EventCreated, 40, orders.Created{OrderID: "o-4", CustomerID: "c", Currency: "EUR"}),
		o("o-4", 3, orders.EventItemAdded, 41, orders.ItemAdded{SKU: "pear", Quantity: 1}),
		o("o-4", 4, orders.EventSubmitted, 42, orders.Submitted{}))
	check("after a gap", "2026-03-01 apple EUR: 4 400", "2026-03-01 pear EUR: 2 160", "2026-03-02 apple EUR: 1 150", "2026-03-02 pear EUR: 1 80")
}

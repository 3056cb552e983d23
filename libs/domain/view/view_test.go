package view_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	_ view.Querier = (*pgxpool.Pool)(nil)
	_ view.Querier = (pgx.Tx)(nil)
	_ view.Querier = (*pgx.Conn)(nil)
)

// tenant owns the rows of these tests.
const tenant = "t1"

// setup returns a migrated fresh database.
func setup(t *testing.T) (context.Context, *pgxpool.Pool) {
	t.Helper()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := view.Migrate(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	return ctx, pg.Pool
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func itemEvent(version int64, it catalog.Item) envelope.Event {
	return envelope.Event{
		Meta: envelope.Meta{AggregateID: it.SKU, CommandID: "c", Tenant: tenant},
		Type: catalog.EventItemUpserted, Version: version, Time: time.Now(), Index: 1, Count: 1,
		Data: mustJSON(it),
	}
}

func orderEvent(id string, version int64, typ string, data any) envelope.Event {
	return envelope.Event{
		Meta: envelope.Meta{AggregateID: id, CommandID: "c", Tenant: tenant},
		Type: typ, Version: version, Time: time.Now(), Index: 1, Count: 1,
		Data: mustJSON(data),
	}
}

func applyCatalog(t *testing.T, ctx context.Context, q view.Querier, evs ...envelope.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := view.ApplyCatalogEvent(ctx, q, ev); err != nil {
			t.Fatalf("apply %s: %v", ev.ID(), err)
		}
	}
}

func applyOrder(t *testing.T, ctx context.Context, q view.Querier, evs ...envelope.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := view.ApplyOrderEvent(ctx, q, ev); err != nil {
			t.Fatalf("apply %s (%s): %v", ev.ID(), ev.Type, err)
		}
	}
}

// jsonEqual fails the test unless got and want are the same JSON value.
func jsonEqual(t *testing.T, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestMigrate(t *testing.T) {
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)

	// Concurrent first runs, as when several processes start at once.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = view.Migrate(ctx, pg.Pool) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// And again, sequentially.
	for range 2 {
		if err := view.Migrate(ctx, pg.Pool); err != nil {
			t.Fatal(err)
		}
	}
	var n, max int
	if err := pg.Pool.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != 4 || max != 4 {
		t.Fatalf("schema_migrations has %d rows up to version %d, want 4 rows up to version 4", n, max)
	}
	for _, table := range []string{"catalog_items", "orders", "order_lines", "sku_reservations"} {
		if _, err := pg.Pool.Exec(ctx, "SELECT 1 FROM "+table); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	ctx, pool := setup(t)
	widget := catalog.Item{SKU: "w", Name: "Widget", UnitPrice: 100, Currency: "EUR", Stock: 10, MaxPerOrder: 5, Active: true}
	v1 := itemEvent(1, widget)
	changed := widget
	changed.Name, changed.UnitPrice = "Widget 2", 120
	v2 := itemEvent(2, changed)

	applyCatalog(t, ctx, pool, v1, v1)
	got, err := view.CatalogReply(ctx, pool, tenant, "c-1", "w")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{"commandId":"c-1","sku":"w","version":1,"item":
		{"sku":"w","name":"Widget","unitPrice":100,"currency":"EUR","stock":10,"maxPerOrder":5,"active":true}}`)
	applyCatalog(t, ctx, pool, v2, v1, v2) // a late duplicate of v1 must not roll back v2
	got, err = view.CatalogReply(ctx, pool, tenant, "c-2", "w")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{"commandId":"c-2","sku":"w","version":2,"item":
		{"sku":"w","name":"Widget 2","unitPrice":120,"currency":"EUR","stock":10,"maxPerOrder":5,"active":true}}`)

	events := []envelope.Event{
		orderEvent("o", 1, orders.EventCreated, orders.Created{OrderID: "o", CustomerID: "cust", Currency: "EUR"}),
		orderEvent("o", 2, orders.EventItemAdded, orders.ItemAdded{SKU: "w", Quantity: 2}),
		orderEvent("o", 3, orders.EventItemAdded, orders.ItemAdded{SKU: "x", Quantity: 1}),
		orderEvent("o", 4, orders.EventItemRemoved, orders.ItemRemoved{SKU: "x"}),
		orderEvent("o", 5, orders.EventItemAdded, orders.ItemAdded{SKU: "w", Quantity: 1}),
		orderEvent("o", 6, orders.EventSubmitted, orders.Submitted{}),
	}
	var previous json.RawMessage
	for _, ev := range events {
		applyOrder(t, ctx, pool, ev)
		once, version, err := view.GetOrder(ctx, pool, tenant, "o")
		if err != nil {
			t.Fatal(err)
		}
		if version != ev.Version {
			t.Fatalf("after %s: version %d, want %d", ev.Type, version, ev.Version)
		}
		// Redeliver this event and all before it: nothing may change.
		for _, old := range events[:ev.Version] {
			applyOrder(t, ctx, pool, old)
		}
		twice, _, err := view.GetOrder(ctx, pool, tenant, "o")
		if err != nil {
			t.Fatal(err)
		}
		if string(once) != string(twice) {
			t.Fatalf("redelivery up to %s changed the order:\n%s\n%s", ev.Type, once, twice)
		}
		if string(once) == string(previous) {
			t.Fatalf("%s changed nothing: %s", ev.Type, once)
		}
		previous = once
	}
	jsonEqual(t, previous, `{"orderId":"o","version":6,"order":{"id":"o","customerId":"cust","currency":"EUR",
		"status":"submitted","lines":[{"sku":"w","name":"Widget 2","unitPrice":120,"quantity":3,"lineTotal":360}],
		"total":360},"validItems":[]}`)
}

func TestApplyErrors(t *testing.T) {
	ctx, pool := setup(t)
	for _, tt := range []struct {
		name  string
		apply func(context.Context, view.Querier, envelope.Event) error
		ev    envelope.Event
		want  error
	}{
		{"catalog unknown type", view.ApplyCatalogEvent, envelope.Event{Meta: envelope.Meta{AggregateID: "w", Tenant: tenant}, Type: "catalog.gone.v1", Version: 1, Data: json.RawMessage(`{}`)}, view.ErrUnknownEvent},
		{"catalog malformed", view.ApplyCatalogEvent, envelope.Event{Meta: envelope.Meta{AggregateID: "w", Tenant: tenant}, Type: catalog.EventItemUpserted, Version: 1, Data: json.RawMessage(`{"stock":"x"}`)}, view.ErrBadEvent},
		{"catalog sku mismatch", view.ApplyCatalogEvent, envelope.Event{Meta: envelope.Meta{AggregateID: "w", Tenant: tenant}, Type: catalog.EventItemUpserted, Version: 1, Data: mustJSON(catalog.Item{SKU: "other"})}, view.ErrBadEvent},
		{"order unknown type", view.ApplyOrderEvent, orderEvent("o", 1, "orders.archived.v1", struct{}{}), view.ErrUnknownEvent},
		{"order malformed", view.ApplyOrderEvent, envelope.Event{Meta: envelope.Meta{AggregateID: "o", Tenant: tenant}, Type: orders.EventItemAdded, Version: 2, Data: json.RawMessage(`{"sku":1}`)}, view.ErrBadEvent},
		{"order zero quantity", view.ApplyOrderEvent, orderEvent("o", 2, orders.EventItemAdded, orders.ItemAdded{SKU: "w"}), view.ErrBadEvent},
		{"order missing", view.ApplyOrderEvent, orderEvent("nope", 2, orders.EventSubmitted, orders.Submitted{}), view.ErrNotFound},
		{"order without tenant", view.ApplyOrderEvent, envelope.Event{Meta: envelope.Meta{AggregateID: "o"}, Type: orders.EventCreated, Version: 1, Data: json.RawMessage(`{}`)}, view.ErrBadEvent},
		{"catalog without tenant", view.ApplyCatalogEvent, envelope.Event{Meta: envelope.Meta{AggregateID: "w"}, Type: catalog.EventItemUpserted, Version: 1, Data: json.RawMessage(`{}`)}, view.ErrBadEvent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.apply(ctx, pool, tt.ev); !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOrderReply(t *testing.T) {
	ctx, pool := setup(t)
	items := []catalog.Item{
		{SKU: "a", Name: "Apple", UnitPrice: 250, Currency: "EUR", Stock: 10, MaxPerOrder: 5, Active: true},
		{SKU: "b", Name: "Banana", UnitPrice: 100, Currency: "EUR", Stock: 3, MaxPerOrder: 10, Active: true},   // all held by a submitted order
		{SKU: "c", Name: "Cherry", UnitPrice: 10, Currency: "EUR", Stock: 100, MaxPerOrder: 10, Active: false}, // inactive
		{SKU: "d", Name: "Date", UnitPrice: 50, Currency: "EUR", Stock: 100, MaxPerOrder: 2, Active: true},     // at its maximum in o-1
		{SKU: "e", Name: "Elderberry", UnitPrice: 7, Currency: "EUR", Stock: 4, MaxPerOrder: 10, Active: true}, // 1 held
		{SKU: "f", Name: "Fig", UnitPrice: 7, Currency: "EUR", Stock: 0, MaxPerOrder: 10, Active: true},        // no stock
	}
	tx, err := pool.Begin(ctx) // the projector's way: apply and reply in one transaction
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, it := range items {
		applyCatalog(t, ctx, tx, itemEvent(1, it))
	}
	created := func(id string) envelope.Event {
		return orderEvent(id, 1, orders.EventCreated, orders.Created{OrderID: id, CustomerID: "cust-" + id, Currency: "EUR"})
	}
	added := func(id string, v int64, sku string, n int64) envelope.Event {
		return orderEvent(id, v, orders.EventItemAdded, orders.ItemAdded{SKU: sku, Quantity: n})
	}
	applyOrder(t, ctx, tx,
		// A submitted order holds all of b and one e.
		created("s"), added("s", 2, "b", 3), added("s", 3, "e", 1), orderEvent("s", 4, orders.EventSubmitted, orders.Submitted{}),
		// A cancelled order and an open one hold nothing.
		created("x"), added("x", 2, "a", 5), orderEvent("x", 3, orders.EventCancelled, orders.Cancelled{}),
		created("y"), added("y", 2, "a", 5),
		// The order under test; z is not in the catalog.
		created("o-1"), added("o-1", 2, "a", 2), added("o-1", 3, "d", 2), added("o-1", 4, "z", 1),
	)
	got, err := view.OrderReply(ctx, tx, tenant, "cmd-7", "o-1")
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{
		"commandId": "cmd-7", "orderId": "o-1", "version": 4,
		"order": {"id": "o-1", "customerId": "cust-o-1", "currency": "EUR", "status": "open",
			"lines": [
				{"sku": "a", "name": "Apple", "unitPrice": 250, "quantity": 2, "lineTotal": 500},
				{"sku": "d", "name": "Date", "unitPrice": 50, "quantity": 2, "lineTotal": 100},
				{"sku": "z", "name": "", "unitPrice": 0, "quantity": 1, "lineTotal": 0}
			],
			"total": 600},
		"validItems": [
			{"sku": "a", "name": "Apple", "unitPrice": 250, "currency": "EUR", "available": 10, "maxQuantity": 3},
			{"sku": "e", "name": "Elderberry", "unitPrice": 7, "currency": "EUR", "available": 3, "maxQuantity": 3}
		]}`)

	// GetOrder has the same body without the command ID.
	body, version, err := view.GetOrder(ctx, tx, tenant, "o-1")
	if err != nil {
		t.Fatal(err)
	}
	var withCommand map[string]any
	_ = json.Unmarshal(got, &withCommand)
	delete(withCommand, "commandId")
	jsonEqual(t, body, string(mustJSON(withCommand)))
	if version != 4 {
		t.Fatalf("GetOrder version = %d, want 4", version)
	}

	// Submitting o-1: no valid items any more, and its lines now hold stock.
	applyOrder(t, ctx, tx, orderEvent("o-1", 5, orders.EventSubmitted, orders.Submitted{}))
	var reply view.OrderReplyBody
	if got, err = view.OrderReply(ctx, tx, tenant, "cmd-8", "o-1"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Order.Status != orders.StatusSubmitted || len(reply.ValidItems) != 0 || reply.Order.Total != 600 {
		t.Fatalf("submitted order reply: %s", got)
	}
	body, _, err = view.GetOrder(ctx, tx, tenant, "y")
	if err != nil {
		t.Fatal(err)
	}
	var y view.OrderBody
	if err := json.Unmarshal(body, &y); err != nil {
		t.Fatal(err)
	}
	// a is excluded: y holds 5, its maximum (8 are available, o-1 holding 2).
	want := []view.ValidItem{
		{SKU: "d", Name: "Date", UnitPrice: 50, Currency: "EUR", Available: 98, MaxQuantity: 2},
		{SKU: "e", Name: "Elderberry", UnitPrice: 7, Currency: "EUR", Available: 3, MaxQuantity: 3},
	}
	if !reflect.DeepEqual(y.ValidItems, want) {
		t.Fatalf("valid items of y = %+v, want %+v", y.ValidItems, want)
	}
	// Submitting o-1 again (a redelivery) holds nothing more.
	applyOrder(t, ctx, tx, orderEvent("o-1", 5, orders.EventSubmitted, orders.Submitted{}))
	if body, _, err = view.GetOrder(ctx, tx, tenant, "y"); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &y); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(y.ValidItems, want) {
		t.Fatalf("after a redelivered submit, valid items of y = %+v, want %+v", y.ValidItems, want)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestValidItemsPages: a reply lists at most MaxValidItems valid items and
// says more exist; ValidItemsPage pages through all of them, in SKU order,
// each once.
func TestValidItemsPages(t *testing.T) {
	ctx, pool := setup(t)
	const n = 2*view.MaxValidItems + 37
	for i := range n {
		applyCatalog(t, ctx, pool, itemEvent(1, catalog.Item{SKU: fmt.Sprintf("sku-%04d", i), Name: "Item", UnitPrice: 1, Currency: "EUR", Stock: 5, MaxPerOrder: 5, Active: true}))
	}
	applyOrder(t, ctx, pool, orderEvent("o", 1, orders.EventCreated, orders.Created{OrderID: "o", CustomerID: "c", Currency: "EUR"}),
		orderEvent("o", 2, orders.EventItemAdded, orders.ItemAdded{SKU: "sku-0003", Quantity: 5})) // at its maximum: not valid
	raw, err := view.OrderReply(ctx, pool, tenant, "cmd", "o")
	if err != nil {
		t.Fatal(err)
	}
	var reply view.OrderReplyBody
	if err := json.Unmarshal(raw, &reply); err != nil {
		t.Fatal(err)
	}
	if len(reply.ValidItems) != view.MaxValidItems || !reply.MoreValidItems {
		t.Fatalf("reply lists %d valid items (more: %v), want %d and more", len(reply.ValidItems), reply.MoreValidItems, view.MaxValidItems)
	}
	var all []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		raw, err := view.ValidItemsPage(ctx, pool, tenant, "o", after, 60)
		if err != nil {
			t.Fatal(err)
		}
		var page view.ValidItemsPageBody
		if err := json.Unmarshal(raw, &page); err != nil {
			t.Fatal(err)
		}
		if page.Version != 2 || len(page.ValidItems) > 60 {
			t.Fatalf("page after %q: version %d, %d items", after, page.Version, len(page.ValidItems))
		}
		for _, v := range page.ValidItems {
			all = append(all, v.SKU)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(all) != n-1 || !slices.IsSorted(all) || slices.Contains(all, "sku-0003") || len(slices.Compact(slices.Clone(all))) != n-1 {
		t.Fatalf("pages listed %d SKUs (sorted: %v), want the %d valid ones once each", len(all), slices.IsSorted(all), n-1)
	}
	if _, err := view.ValidItemsPage(ctx, pool, tenant, "missing", "", 10); !errors.Is(err, view.ErrNotFound) {
		t.Fatalf("page of a missing order: %v, want ErrNotFound", err)
	}
}

// TestReservationsBackfilled: migrating a view of schema version 1 that
// has submitted orders fills sku_reservations from their lines, and gives
// every row the tenant "default".
func TestReservationsBackfilled(t *testing.T) {
	pg := testenv.NewPostgres(t)
	ctx, pool := testenv.Context(t, time.Minute), pg.Pool
	if err := view.MigrateUpTo(ctx, pool, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO catalog_items VALUES ('a', 'Apple', 1, 'EUR', 10, 10, true, 1);
		INSERT INTO orders VALUES ('s1', 'c', 'EUR', 'submitted', 3, now()), ('s2', 'c', 'EUR', 'submitted', 3, now()), ('open', 'c', 'EUR', 'open', 2, now());
		INSERT INTO order_lines VALUES ('s1', 'a', 3), ('s2', 'a', 3), ('open', 'a', 3)`); err != nil {
		t.Fatal(err)
	}
	if err := view.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	raw, _, err := view.GetOrder(ctx, pool, "default", "open")
	if err != nil {
		t.Fatal(err)
	}
	var open view.OrderBody
	if err := json.Unmarshal(raw, &open); err != nil {
		t.Fatal(err)
	}
	if len(open.ValidItems) != 1 || open.ValidItems[0].Available != 4 {
		t.Fatalf("valid items after the backfill: %+v, want a with 4 available (6 of 10 held)", open.ValidItems)
	}
}

func TestNotFound(t *testing.T) {
	ctx, pool := setup(t)
	if _, _, err := view.GetOrder(ctx, pool, tenant, "missing"); !errors.Is(err, view.ErrNotFound) {
		t.Errorf("GetOrder: %v, want ErrNotFound", err)
	}
	if _, err := view.OrderReply(ctx, pool, tenant, "c", "missing"); !errors.Is(err, view.ErrNotFound) {
		t.Errorf("OrderReply: %v, want ErrNotFound", err)
	}
	if _, err := view.CatalogReply(ctx, pool, tenant, "c", "missing"); !errors.Is(err, view.ErrNotFound) {
		t.Errorf("CatalogReply: %v, want ErrNotFound", err)
	}
}

func TestCatalogReads(t *testing.T) {
	ctx, pool := setup(t)
	got, err := view.ListCatalog(ctx, pool, tenant)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{"items":[]}`)
	applyCatalog(t, ctx, pool,
		itemEvent(1, catalog.Item{SKU: "b", Name: "B", UnitPrice: 2, Currency: "USD", Stock: 0, MaxPerOrder: 1}),
		itemEvent(1, catalog.Item{SKU: "a", Name: "A", UnitPrice: 1, Currency: "EUR", Stock: 5, MaxPerOrder: 2, Active: true}),
	)
	if got, err = view.ListCatalog(ctx, pool, tenant); err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, `{"items":[
		{"sku":"a","name":"A","unitPrice":1,"currency":"EUR","stock":5,"maxPerOrder":2,"active":true},
		{"sku":"b","name":"B","unitPrice":2,"currency":"USD","stock":0,"maxPerOrder":1,"active":false}]}`)
	for sku, want := range map[string]bool{"a": true, "b": true, "c": false} {
		if ok, err := view.CatalogItemExists(ctx, pool, tenant, sku); err != nil || ok != want {
			t.Errorf("CatalogItemExists(%q) = %v, %v; want %v", sku, ok, err, want)
		}
	}
}

// TestTenantsNeverMeet: two tenants with the same order ID and SKU each see
// only their own order, catalog and reservations.
func TestTenantsNeverMeet(t *testing.T) {
	ctx, pool := setup(t)
	for _, c := range []struct {
		tenant string
		stock  int64
		qty    int64
	}{{"acme", 10, 3}, {"globex", 100, 7}} {
		it := itemEvent(1, catalog.Item{SKU: "a", Name: "A of " + c.tenant, UnitPrice: 1, Currency: "EUR", Stock: c.stock, MaxPerOrder: 50, Active: true})
		it.Tenant = c.tenant
		applyCatalog(t, ctx, pool, it)
		for _, ev := range []envelope.Event{
			orderEvent("o", 1, orders.EventCreated, orders.Created{OrderID: "o", CustomerID: c.tenant, Currency: "EUR"}),
			orderEvent("o", 2, orders.EventItemAdded, orders.ItemAdded{SKU: "a", Quantity: c.qty}),
			orderEvent("o", 3, orders.EventSubmitted, orders.Submitted{}),
			orderEvent("p", 1, orders.EventCreated, orders.Created{OrderID: "p", CustomerID: c.tenant, Currency: "EUR"}),
		} {
			ev.Tenant = c.tenant
			applyOrder(t, ctx, pool, ev)
		}
	}
	for tenant, want := range map[string]struct {
		customer  string
		available int64
	}{"acme": {"acme", 7}, "globex": {"globex", 93}} {
		raw, _, err := view.GetOrder(ctx, pool, tenant, "o")
		if err != nil {
			t.Fatal(err)
		}
		var o view.OrderBody
		_ = json.Unmarshal(raw, &o)
		if o.Order.CustomerID != want.customer || o.Order.Lines[0].Name != "A of "+tenant {
			t.Errorf("%s's order: %+v", tenant, o.Order)
		}
		raw, _, err = view.GetOrder(ctx, pool, tenant, "p")
		if err != nil {
			t.Fatal(err)
		}
		_ = json.Unmarshal(raw, &o)
		if len(o.ValidItems) != 1 || o.ValidItems[0].Available != want.available {
			t.Errorf("%s's valid items: %+v, want a with %d available", tenant, o.ValidItems, want.available)
		}
		list, _ := view.ListCatalog(ctx, pool, tenant)
		var cat view.CatalogList
		_ = json.Unmarshal(list, &cat)
		if len(cat.Items) != 1 || cat.Items[0].Name != "A of "+tenant {
			t.Errorf("%s's catalog: %+v", tenant, cat.Items)
		}
	}
	if _, _, err := view.GetOrder(ctx, pool, "initech", "o"); !errors.Is(err, view.ErrNotFound) {
		t.Errorf("a third tenant reads another's order: %v", err)
	}
	if ok, _ := view.CatalogItemExists(ctx, pool, "initech", "a"); ok {
		t.Error("a third tenant sees another's catalog item")
	}
}

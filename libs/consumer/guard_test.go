package consumer_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/answerback/answerback/libs/consumer"
	"github.com/answerback/answerback/libs/testenv"
)

func TestGuardSkipsSeenVersionsAndReportsGaps(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	for range 2 {
		if err := consumer.EnsureSchema(ctx, pg.Pool); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(g consumer.Guard, topic, id string, version int64) consumer.Verdict {
		t.Helper()
		var v consumer.Verdict
		err := pgx.BeginFunc(ctx, pg.Pool, func(tx pgx.Tx) (err error) {
			v, err = g.Apply(ctx, tx, consumer.Meta{Topic: topic, Tenant: "acme", AggregateID: id, Version: version})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	g := consumer.Guard{Consumer: "sales"}
	for i, step := range []struct {
		version int64
		want    consumer.Verdict
	}{
		{1, consumer.Verdict{New: true}},
		{1, consumer.Verdict{Previous: 1}},                       // delivered again
		{2, consumer.Verdict{New: true, Previous: 1}},            // next
		{5, consumer.Verdict{New: true, Previous: 2, Missed: 2}}, // a gap: 3 and 4 never came
		{3, consumer.Verdict{Previous: 5}},                       // late: below the recorded version
		{5, consumer.Verdict{Previous: 5}},
		{6, consumer.Verdict{New: true, Previous: 5}},
	} {
		if got := apply(g, "orders.events", "o-1", step.version); got != step.want {
			t.Errorf("step %d, version %d: %+v, want %+v", i, step.version, got, step.want)
		}
	}
	// Versions are kept apart per consumer, topic and aggregate.
	for _, other := range []struct {
		g         consumer.Guard
		topic, id string
	}{{consumer.Guard{Consumer: "audit"}, "orders.events", "o-1"}, {g, "catalog.events", "o-1"}, {g, "orders.events", "o-2"}} {
		if got := apply(other.g, other.topic, other.id, 1); got != (consumer.Verdict{New: true}) {
			t.Errorf("%s %s %s version 1: %+v, want new", other.g.Consumer, other.topic, other.id, got)
		}
	}
	// A rolled-back transaction records nothing.
	tx, err := pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := g.Apply(ctx, tx, consumer.Meta{Topic: "orders.events", Tenant: "acme", AggregateID: "o-1", Version: 7}); err != nil || !v.New {
		t.Fatalf("version 7: %+v, %v", v, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := apply(g, "orders.events", "o-1", 7); got != (consumer.Verdict{New: true, Previous: 6}) {
		t.Errorf("version 7 after a rollback: %+v, want new", got)
	}
	// Bad input is refused.
	if err := pgx.BeginFunc(ctx, pg.Pool, func(tx pgx.Tx) error {
		_, err := consumer.Guard{}.Apply(ctx, tx, consumer.Meta{AggregateID: "o-1", Version: 1})
		return err
	}); err == nil {
		t.Error("a Guard without a consumer name accepted an event")
	}
}

// TestGuardOverlappingOwners: two transactions apply the same event at once,
// as two instances do while a partition changes hands; it is applied once.
func TestGuardOverlappingOwners(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := consumer.EnsureSchema(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	g := consumer.Guard{Consumer: "sales"}
	m := consumer.Meta{Topic: "orders.events", Tenant: "acme", AggregateID: "o-1", Version: 1}
	first, err := pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if v, err := g.Apply(ctx, first, m); err != nil || !v.New {
		t.Fatalf("first owner: %+v, %v", v, err)
	}
	second := make(chan consumer.Verdict, 1)
	go func() { // ends when the first transaction does (the test waits for it)
		var v consumer.Verdict
		err := pgx.BeginFunc(ctx, pg.Pool, func(tx pgx.Tx) (err error) {
			v, err = g.Apply(ctx, tx, m)
			return err
		})
		if err != nil {
			t.Error(err)
		}
		second <- v
	}()
	select {
	case v := <-second:
		t.Fatalf("second owner did not wait for the first: %+v", v)
	case <-time.After(300 * time.Millisecond):
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if v := <-second; v.New {
		t.Errorf("second owner applied the event again: %+v", v)
	}
}

// TestGuardKeepsTenantsApart: two tenants' aggregates of the same ID (the
// same order ID, the same SKU) are two aggregates, each with its own
// versions; so is the aggregate of a record from before tenants (tenant "").
func TestGuardKeepsTenantsApart(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	if err := consumer.EnsureSchema(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	g := consumer.Guard{Consumer: "sales"}
	apply := func(tenant string, version int64) consumer.Verdict {
		t.Helper()
		var v consumer.Verdict
		err := pgx.BeginFunc(ctx, pg.Pool, func(tx pgx.Tx) (err error) {
			v, err = g.Apply(ctx, tx, consumer.Meta{Topic: "orders.events", Tenant: tenant, AggregateID: "o-1", Version: version})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i, step := range []struct {
		tenant  string
		version int64
		want    consumer.Verdict
	}{
		{"acme", 1, consumer.Verdict{New: true}},
		{"acme", 2, consumer.Verdict{New: true, Previous: 1}},
		{"globex", 1, consumer.Verdict{New: true}}, // not acme's version 1 again
		{"globex", 2, consumer.Verdict{New: true, Previous: 1}},
		{"globex", 3, consumer.Verdict{New: true, Previous: 2}},
		{"acme", 2, consumer.Verdict{Previous: 2}}, // acme's own versions, untouched by globex's
		{"acme", 3, consumer.Verdict{New: true, Previous: 2}},
		{"globex", 3, consumer.Verdict{Previous: 3}},
		{"", 1, consumer.Verdict{New: true}},                             // a record from before tenants
		{"acme", 5, consumer.Verdict{New: true, Previous: 3, Missed: 1}}, // gaps are per tenant too
	} {
		if got := apply(step.tenant, step.version); got != step.want {
			t.Errorf("step %d, tenant %q version %d: %+v, want %+v", i, step.tenant, step.version, got, step.want)
		}
	}
	if got := versions(ctx, t, pg.Pool); !slices.Equal(got, []string{"sales orders.events  o-1 1", "sales orders.events acme o-1 5", "sales orders.events globex o-1 3"}) {
		t.Errorf("consumer_versions %q", got)
	}
}

// TestEnsureSchemaUpgradesTableFromBeforeTenants: a consumer_versions table
// of the schema before tenants, with rows, is upgraded in place: its rows get
// the empty tenant (that of records with a bare key and no ce_tenant, which
// they go on guarding), the primary key takes the tenant, and upgrading again
// changes nothing.
func TestEnsureSchemaUpgradesTableFromBeforeTenants(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	if _, err := pg.Pool.Exec(ctx, `
		CREATE TABLE consumer_versions (
			consumer     text   NOT NULL,
			topic        text   NOT NULL,
			aggregate_id text   NOT NULL,
			version      bigint NOT NULL,
			PRIMARY KEY (consumer, topic, aggregate_id)
		);
		INSERT INTO consumer_versions VALUES ('sales', 'orders.events', 'o-1', 4), ('sales', 'orders.events', 'o-2', 1)`); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := consumer.EnsureSchema(ctx, pg.Pool); err != nil {
			t.Fatal(err)
		}
	}
	if got := versions(ctx, t, pg.Pool); !slices.Equal(got, []string{"sales orders.events  o-1 4", "sales orders.events  o-2 1"}) {
		t.Errorf("consumer_versions after the upgrade %q", got)
	}
	var pk []string
	if err := pg.Pool.QueryRow(ctx, `
		SELECT array_agg(a.attname::text ORDER BY k.ord)
		FROM pg_constraint c
		CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
		WHERE c.conrelid = 'consumer_versions'::regclass AND c.contype = 'p'`).Scan(&pk); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pk, []string{"consumer", "topic", "tenant", "aggregate_id"}) {
		t.Errorf("primary key %v, want (consumer, topic, tenant, aggregate_id)", pk)
	}

	g := consumer.Guard{Consumer: "sales"}
	apply := func(tenant string, version int64) consumer.Verdict {
		t.Helper()
		var v consumer.Verdict
		err := pgx.BeginFunc(ctx, pg.Pool, func(tx pgx.Tx) (err error) {
			v, err = g.Apply(ctx, tx, consumer.Meta{Topic: "orders.events", Tenant: tenant, AggregateID: "o-1", Version: version})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := apply("", 4); got != (consumer.Verdict{Previous: 4}) {
		t.Errorf("a record from before tenants, applied before the upgrade: %+v, want skipped", got)
	}
	if got := apply("", 5); got != (consumer.Verdict{New: true, Previous: 4}) {
		t.Errorf("the next record without a tenant: %+v, want new", got)
	}
	if got := apply("acme", 1); got != (consumer.Verdict{New: true}) {
		t.Errorf("a tenant's o-1: %+v, want new", got)
	}
}

// versions reads consumer_versions as "consumer topic tenant aggregate version" lines, sorted.
func versions(ctx context.Context, t *testing.T, pool interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []string {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT consumer || ' ' || topic || ' ' || tenant || ' ' || aggregate_id || ' ' || version FROM consumer_versions`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

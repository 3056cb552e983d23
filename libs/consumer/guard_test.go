package consumer_test

import (
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
			v, err = g.Apply(ctx, tx, consumer.Meta{Topic: topic, AggregateID: id, Version: version})
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
	if v, err := g.Apply(ctx, tx, consumer.Meta{Topic: "orders.events", AggregateID: "o-1", Version: 7}); err != nil || !v.New {
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
	m := consumer.Meta{Topic: "orders.events", AggregateID: "o-1", Version: 1}
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

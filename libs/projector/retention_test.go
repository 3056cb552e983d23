package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// TestOutcomesPrunedAfterRetention: outcomes recorded longer ago than the
// retention are deleted, in batches, a bounded number per prune, until none
// is left; newer ones stay.
func TestOutcomesPrunedAfterRetention(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureSchema(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	record := func(id string, age time.Duration) {
		t.Helper()
		_, err := pg.Pool.Exec(ctx, `INSERT INTO command_outcomes (command_id, topic, aggregate_id, version, outcome, reply, tenant, applied_at)
			VALUES ($1, 't', 'a', 1, 'applied', '{}', 't', now() - $2::interval)`, id, age.String())
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		record(fmt.Sprint("old-", i), 8*24*time.Hour)
	}
	for i := range 3 {
		record(fmt.Sprint("new-", i), 6*24*time.Hour)
	}
	// At most two statements of five rows per prune: a backlog is worked
	// off over several prunes.
	first, err := pruneOutcomes(ctx, pg.Pool, DefaultOutcomeRetention, 5, 2)
	if err != nil {
		t.Fatal(err)
	}
	if first != 10 {
		t.Errorf("the first prune deleted %d, want 10: two statements of 5", first)
	}
	rest, err := pruneOutcomes(ctx, pg.Pool, DefaultOutcomeRetention, 5, 2)
	if err != nil {
		t.Fatal(err)
	}
	deleted := first + rest
	var left, oldLeft int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE command_id LIKE 'old-%') FROM command_outcomes`).Scan(&left, &oldLeft); err != nil {
		t.Fatal(err)
	}
	if deleted != 12 || left != 3 || oldLeft != 0 {
		t.Errorf("pruned %d, left %d (%d of them past the retention): want the 12 past it pruned in batches of 5, the 3 within it kept", deleted, left, oldLeft)
	}
}

// TestBatchEndsWhenTheDatabaseStalls: a batch on a database that accepts
// connections and never answers ends with an error once BatchTimeout
// passes — to be retried on a new connection — instead of holding the
// projector for good.
func TestBatchEndsWhenTheDatabaseStalls(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@"+testenv.BlackHole(t)+"/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rt, err := New(Projection{Name: "p", Topics: map[string]string{"t": "t.dlq"},
		Apply: func(*pgx.Batch, string, envelope.Event) error { return nil },
		Reply: func(*pgx.Batch, string, envelope.Event, func(json.RawMessage, error)) {}},
		Config{Brokers: []string{"127.0.0.1:1"}, Pool: pool, BatchTimeout: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { // ends with the batch, or is abandoned with the failed test
		_, err := rt.process(context.Background(), []*kgo.Record{{Topic: "t", Value: []byte("{}")}})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a batch on a stalled database succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Error("a batch on a stalled database still runs after 20 s: it has no deadline")
	}
}

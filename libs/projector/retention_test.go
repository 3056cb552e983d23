package projector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/testenv"
)

// TestOutcomesPrunedAfterRetention: outcomes recorded longer ago than the
// retention are deleted, in batches until none is left; newer ones stay.
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
	deleted, err := pruneOutcomes(ctx, pg.Pool, DefaultOutcomeRetention, 5)
	if err != nil {
		t.Fatal(err)
	}
	var left, oldLeft int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE command_id LIKE 'old-%') FROM command_outcomes`).Scan(&left, &oldLeft); err != nil {
		t.Fatal(err)
	}
	if deleted != 12 || left != 3 || oldLeft != 0 {
		t.Errorf("pruned %d, left %d (%d of them past the retention): want the 12 past it pruned in batches of 5, the 3 within it kept", deleted, left, oldLeft)
	}
}

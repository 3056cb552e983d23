package integration

import (
	"testing"
	"time"

	"github.com/answerback/answerback/libs/testenv"
)

// TestPostgresTransaction shows a pgx transaction on the real server: a
// committed write is read back, a rolled-back one leaves nothing.
func TestPostgresTransaction(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	var version string
	if err := pg.Pool.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("server: %s", version)
	if _, err := pg.Pool.Exec(ctx, "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)"); err != nil {
		t.Fatal(err)
	}

	tx, err := pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO notes VALUES (1, 'kept')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	tx, err = pg.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO notes VALUES (2, 'rolled back')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	rows, err := pg.Pool.Query(ctx, "SELECT id, body FROM notes ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id int
		var body string
		if err := rows.Scan(&id, &body); err != nil {
			t.Fatal(err)
		}
		got = append(got, body)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != 1 || got[0] != "kept" {
		t.Fatalf("rows after commit and rollback: %q, want [kept]", got)
	}
}

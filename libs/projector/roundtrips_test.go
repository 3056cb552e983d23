package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// roundTrips records what a pool sends PostgreSQL: each pipelined batch and
// each lone query is one round trip.
type roundTrips struct {
	mu    sync.Mutex
	trips [][]string // per round trip, the SQL it sent
}

func (rt *roundTrips) add(sqls []string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.trips = append(rt.trips, sqls)
}

func (rt *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if ctx.Value(inBatch{}) == nil {
		rt.add([]string{d.SQL})
	}
	return ctx
}
func (rt *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (rt *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	sqls := make([]string, 0, d.Batch.Len())
	for _, q := range d.Batch.QueuedQueries {
		sqls = append(sqls, strings.TrimSpace(q.SQL))
	}
	rt.add(sqls)
	return context.WithValue(ctx, inBatch{}, true)
}
func (rt *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (rt *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

type inBatch struct{}

// transactions splits the recorded round trips into the projector's
// transactions: from a round trip that begins with BEGIN to one that ends
// with COMMIT.
func (rt *roundTrips) transactions() (txs [][][]string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var cur [][]string
	for _, trip := range rt.trips {
		if trip[0] == "BEGIN" {
			cur = nil
		}
		cur = append(cur, trip)
		if trip[len(trip)-1] == "COMMIT" {
			txs = append(txs, cur)
		}
	}
	return txs
}

// TestBatchCostsThreeRoundTrips: however many events a batch holds, the
// projector's transaction is three round trips to PostgreSQL — begin and
// lock the offsets; every event applied and every reply derived; outcomes,
// offsets and commit — and every event is applied, every outcome recorded.
func TestBatchCostsThreeRoundTrips(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	trips := &roundTrips{}
	cfg := pg.Pool.Config()
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, `CREATE TABLE applied (id text PRIMARY KEY, version bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "things.events", "things.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const events = 60
	var recs []*kgo.Record
	for i := range events {
		recs = append(recs, envelope.EncodeEvent("things.events", "/test", envelope.Event{
			Meta: envelope.Meta{CommandID: fmt.Sprint("cmd-", i), AggregateID: fmt.Sprint("thing-", i%7), Tenant: "t"},
			Type: "thing.touched.v1", Version: int64(i/7 + 1), Time: time.Now(), Index: 1, Count: 1, Data: json.RawMessage(`{}`),
		}))
	}
	if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	rt, err := New(Projection{
		Name:   "things",
		Topics: map[string]string{"things.events": "things.dlq"},
		Apply: func(b *pgx.Batch, _ string, ev envelope.Event) error {
			b.Queue(`INSERT INTO applied (id, version) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET version = excluded.version
				WHERE applied.version < excluded.version`, ev.AggregateID, ev.Version)
			return nil
		},
		Reply: func(b *pgx.Batch, _ string, ev envelope.Event, done func(json.RawMessage, error)) {
			b.Queue(`SELECT version FROM applied WHERE id = $1`, ev.AggregateID).QueryRow(func(row pgx.Row) error {
				var v int64
				if err := row.Scan(&v); err != nil {
					return err
				}
				done(json.RawMessage(fmt.Sprintf(`{"version":%d}`, v)), nil)
				return nil
			})
		},
	}, Config{Brokers: cluster.ListenAddrs(), Pool: pool, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(runCtx) }() // ended by stop below
	for {
		var n int
		if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM command_outcomes`).Scan(&n); err != nil && !strings.Contains(err.Error(), "does not exist") {
			t.Fatal(err)
		}
		if n == events {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d outcomes recorded", n, events)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Each reply saw the view as of its own event: its version.
	var wrong int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM command_outcomes WHERE (reply->>'version')::bigint <> version`).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong > 0 {
		t.Errorf("%d replies do not show the view as of their command's version", wrong)
	}
	txs := trips.transactions()
	if len(txs) == 0 {
		t.Fatal("no transaction recorded")
	}
	largest := 0
	for _, tx := range txs {
		if len(tx) > 3 {
			t.Errorf("a transaction of %d round trips, want at most 3: %q", len(tx), tx)
		}
		largest = max(largest, len(tx[len(tx)-1])) // the outcomes' inserts, one per event
	}
	if largest < 10 {
		t.Errorf("no transaction took more than %d statements in its last round trip: batches were not formed", largest)
	}
	t.Logf("%d events in %d transactions of at most 3 round trips", events, len(txs))
}

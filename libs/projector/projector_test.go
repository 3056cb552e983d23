package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// TestProjectsOnceAndReplies: the projector applies each event once — also
// across a restart, which resumes from the offsets it committed with the
// view — records every command's outcome, sends the reply to the gateway
// waiting for it (a graceful stop right after a commit still delivers the
// batch's replies), and dead-letters an event its projection refuses for good.
func TestProjectsOnceAndReplies(t *testing.T) {
	t.Parallel()
	pg := testenv.NewPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := pg.Pool.Exec(ctx, `CREATE TABLE touches (id text PRIMARY KEY, n bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "things.events", "things.dlq"), kfake.SeedTopics(1, "replies.gw"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	seeds := cluster.ListenAddrs()
	producer, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce := func(from, to int, typ string) {
		t.Helper()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, envelope.EncodeEvent("things.events", "/test", envelope.Event{
				Meta: envelope.Meta{CommandID: fmt.Sprint("cmd-", i), AggregateID: fmt.Sprint("thing-", i), Tenant: "t",
					ReplyTo: "replies.gw", Deadline: time.Now().Add(time.Minute)},
				Type: typ, Version: 1, Time: time.Now(), Index: 1, Count: 1, Data: json.RawMessage(`{}`),
			}))
		}
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	projection := Projection{
		Name:   "things",
		Topics: map[string]string{"things.events": "things.dlq"},
		Apply: func(b *pgx.Batch, _ string, ev envelope.Event) error {
			if ev.Type == "thing.unknown.v1" {
				return fmt.Errorf("%w: no such event type", ErrPermanent)
			}
			b.Queue(`INSERT INTO touches (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = touches.n + 1`, ev.AggregateID)
			return nil
		},
		Reply: func(b *pgx.Batch, _ string, ev envelope.Event, done func(json.RawMessage, error)) {
			b.Queue(`SELECT n FROM touches WHERE id = $1`, ev.AggregateID).QueryRow(func(row pgx.Row) error {
				var n int64
				if err := row.Scan(&n); err != nil {
					return err
				}
				done(json.RawMessage(fmt.Sprintf(`{"touches":%d}`, n)), nil)
				return nil
			})
		},
	}
	run := func() (stop func()) {
		rt, err := New(projection, Config{Brokers: seeds, Pool: pg.Pool, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rt.Run(runCtx) }() // ended by stop
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("projector: %v", err)
			}
		}
	}
	outcomes := func(want int) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
			var n int
			err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM command_outcomes`).Scan(&n)
			if err != nil || n != want {
				return fmt.Errorf("%d outcomes recorded, want %d (%w)", n, want, err)
			}
			return nil
		})
	}

	produce(0, 10, "thing.touched.v1")
	stop := run()
	outcomes(10)
	stop()
	produce(10, 20, "thing.touched.v1")
	produce(20, 21, "thing.unknown.v1")
	stop = run() // resumes at the committed offsets
	outcomes(20)
	stop()

	var total, over int
	if err := pg.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE n <> 1) FROM touches`).Scan(&total, &over); err != nil {
		t.Fatal(err)
	}
	if total != 20 || over != 0 {
		t.Errorf("%d things touched, %d more than once: want 20, each once", total, over)
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics("replies.gw", "things.dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	replies, deadLetters := map[string]envelope.Reply{}, 0
	testenv.Eventually(t, 10*time.Second, time.Millisecond, func() error {
		fetchCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		consumer.PollFetches(fetchCtx).EachRecord(func(rec *kgo.Record) {
			if rec.Topic == "things.dlq" {
				deadLetters++
				return
			}
			reply, err := envelope.DecodeReply(rec)
			if err != nil {
				t.Errorf("reply record: %v", err)
				return
			}
			replies[reply.CommandID] = reply
		})
		if len(replies) < 20 || deadLetters < 1 {
			return fmt.Errorf("%d replies and %d dead letters, want 20 and 1", len(replies), deadLetters)
		}
		return nil
	})
	if r := replies["cmd-7"]; r.Outcome != envelope.Applied || string(r.Body) != `{"touches":1}` {
		t.Errorf("cmd-7's reply %+v %s: want applied, the view as of its event", r, r.Body)
	}
	if deadLetters != 1 {
		t.Errorf("%d dead letters, want the one refused event", deadLetters)
	}
}

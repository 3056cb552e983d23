package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/consumer"
	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// produceTxn produces recs in one Kafka transaction, committed or aborted.
func produceTxn(ctx context.Context, t *testing.T, cl *kgo.Client, commit bool, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction: %v", err)
	}
}

// start runs r until the test ends or the returned stop is called; stop
// waits for Run to return.
func start(t *testing.T, r *consumer.Runner) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }() // owned: stop waits for it
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return within 30s of its context ending")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor waits up to d for cond; on a timeout the failure names what was
// awaited and, when given, the state that state describes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, state ...func() string) {
	t.Helper()
	testenv.Eventually(t, d, 20*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		var got []string
		for _, s := range state {
			got = append(got, s())
		}
		return fmt.Errorf("waiting for %s (state: %v)", what, got)
	})
}

// TestRunnerOrderPoisonAndDLQ: events of 20 aggregates, interleaved across
// three partitions and written in transactions (one of them aborted), plus
// poison records, reach the handler in version order per aggregate, each
// once; the aborted ones never; the poison ones are skipped, counted and
// dead-lettered without stalling their partition; a transient handler error
// retries the record in place.
func TestRunnerOrderPoisonAndDLQ(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		ctx := testenv.Context(t, 2*time.Minute)
		topic, dead := k.Name("orders.events"), k.Name("sales.dlq")
		k.CreateTopic(t, topic, 3, nil)
		k.CreateTopic(t, dead, 1, nil)

		const aggregates, versions = 20, 10
		producer := k.Client(t, kgo.TransactionalID(k.Name("producer")), kgo.ProducerLinger(0))
		var batch []*kgo.Record
		for v := int64(1); v <= versions; v++ {
			for a := range aggregates {
				batch = append(batch, event(topic, fmt.Sprintf("o-%d", a), v, "orders.item-added.v1", itemAdded{SKU: "apple", Quantity: v}))
				if len(batch) == 25 {
					produceTxn(ctx, t, producer, true, batch...)
					batch = nil
				}
			}
			if v == 5 {
				// Aborted: never seen by a read_committed consumer.
				produceTxn(ctx, t, producer, false, event(topic, "o-1", 99, "orders.item-added.v1", itemAdded{SKU: "x", Quantity: 1}))
				poison := event(topic, "o-2", 100, "orders.item-added.v1", nil)
				poison.Value = []byte("not json")
				produceTxn(ctx, t, producer, true, poison,
					event(topic, "o-3", 100, "orders.item-added.v1", map[string]any{"sku": "apple", "quantity": "many"}))
			}
		}
		produceTxn(ctx, t, producer, true, batch...)

		seen := map[string][]int64{} // aggregate → versions handled, written by the Runner's goroutine only
		failed := false
		r, err := consumer.New(consumer.Config{
			Brokers: k.Seeds, Group: k.Name("sales"), Topics: []string{topic}, DLQTopic: dead,
			Logger: slog.New(slog.DiscardHandler),
			Handler: func(ctx context.Context, rec *kgo.Record) error {
				ev, err := consumer.Decode[itemAdded](rec)
				if err != nil {
					return err
				}
				if ev.AggregateID == "o-7" && ev.Version == 4 && !failed {
					failed = true
					return errors.New("database away for a moment")
				}
				seen[ev.AggregateID] = append(seen[ev.AggregateID], ev.Version)
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, r)
		waitFor(t, time.Minute, "every record", func() bool {
			s := r.Stats()
			return s.Handled >= aggregates*versions && s.Poison >= 2
		})
		stop()
		if s := r.Stats(); s.Retries != 1 || s.Handled != aggregates*versions || s.Poison != 2 {
			t.Errorf("stats %+v, want 200 handled, 2 poison, 1 retry", s)
		}
		for a := range aggregates {
			id := fmt.Sprintf("o-%d", a)
			got := seen[id]
			if len(got) != versions {
				t.Errorf("%s: versions %v, want 1..%d", id, got, versions)
				continue
			}
			for i, v := range got {
				if v != int64(i+1) {
					t.Errorf("%s: versions %v, want 1..%d in order", id, got, versions)
					break
				}
			}
		}

		reader := k.Client(t, kgo.ConsumeTopics(dead), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		var letters []*kgo.Record
		for len(letters) < 2 && ctx.Err() == nil {
			letters = append(letters, reader.PollFetches(ctx).Records()...)
		}
		for _, d := range letters {
			o, err := dlq.OriginOf(d)
			if err != nil || o.Topic != topic || o.Stage != k.Name("sales") || o.Error == "" {
				t.Errorf("dead letter %s: origin %+v, %v", d.Key, o, err)
			}
		}
		if len(letters) != 2 || string(letters[0].Key) == string(letters[1].Key) {
			t.Errorf("dead letters %d, want the two poison records", len(letters))
		}
	})
}

// TestRunnerCommitsOnlyHandled: a record the handler never accepts is not
// committed; when the Runner stops, what it handled before is, so the next
// Runner of the group starts at exactly that record.
func TestRunnerCommitsOnlyHandled(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		ctx := testenv.Context(t, 2*time.Minute)
		topic := k.Name("orders.events")
		k.CreateTopic(t, topic, 1, nil)
		producer := k.Client(t, kgo.TransactionalID(k.Name("producer")), kgo.ProducerLinger(0))
		for v := int64(1); v <= 10; v++ {
			produceTxn(ctx, t, producer, true, event(topic, "o-1", v, "orders.submitted.v1", struct{}{}))
		}
		version := func(rec *kgo.Record) int64 {
			v, _ := envelope.Header(rec, envelope.CESequence)
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
		run := func(handle consumer.Handler) *consumer.Runner {
			r, err := consumer.New(consumer.Config{Brokers: k.Seeds, Group: k.Name("sales"), Topics: []string{topic}, Handler: handle, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}

		first := run(func(_ context.Context, rec *kgo.Record) error {
			if version(rec) == 6 {
				return errors.New("not now")
			}
			return nil
		})
		stop := start(t, first)
		waitFor(t, time.Minute, "versions 1-5 and a retry of 6", func() bool { s := first.Stats(); return s.Handled == 5 && s.Retries > 0 },
			func() string { return fmt.Sprintf("%+v", first.Stats()) })
		stop()
		if err := first.Run(ctx); err == nil {
			t.Error("a Runner ran twice")
		}

		var got []int64 // written by the second Runner's goroutine, read after it stopped
		second := run(func(_ context.Context, rec *kgo.Record) error {
			got = append(got, version(rec))
			return nil
		})
		stop = start(t, second)
		waitFor(t, time.Minute, "versions 6-10", func() bool { return second.Stats().Handled == 5 },
			func() string { return fmt.Sprintf("%+v", second.Stats()) })
		stop()
		if fmt.Sprint(got) != "[6 7 8 9 10]" {
			t.Errorf("second runner got versions %v, want [6 7 8 9 10]", got)
		}
	})
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := consumer.New(consumer.Config{}); err == nil {
		t.Fatal("an empty configuration was accepted")
	}
	_, err := consumer.New(consumer.Config{Brokers: []string{"b:9092"}, Group: "g", Topics: []string{"t"}, Handler: func(context.Context, *kgo.Record) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
}

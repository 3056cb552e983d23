package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/testenv"
)

// TestTransactionalConsumeTransformProduce shows the exactly-once building
// block the aggregator relies on: a GroupTransactSession consumes, transforms
// and produces, committing output and input offsets in one transaction. Every
// third transaction is aborted on purpose (its input is then consumed again),
// and an unrelated transactional producer writes records and aborts them. A
// read_committed reader must see every input transformed exactly once and no
// aborted record; a read_uncommitted reader proves the aborted records exist.
func TestTransactionalConsumeTransformProduce(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		ctx := testenv.Context(t, 2*time.Minute)
		in, out := k.Name("in"), k.Name("out")
		k.CreateTopic(t, in, 3, nil)
		k.CreateTopic(t, out, 3, nil)

		const n = 300
		producer := k.Client(t, kgo.DefaultProduceTopic(in), kgo.ProducerLinger(0))
		inputs := make([]*kgo.Record, n)
		for i := range inputs {
			inputs[i] = &kgo.Record{Key: fmt.Appendf(nil, "key-%d", i%17), Value: fmt.Appendf(nil, "value-%d", i)}
		}
		if err := producer.ProduceSync(ctx, inputs...).FirstErr(); err != nil {
			t.Fatalf("produce inputs: %v", err)
		}

		const poison = 10
		aborter := k.Client(t, kgo.TransactionalID(k.Name("aborter")), kgo.DefaultProduceTopic(out), kgo.ProducerLinger(0))
		if err := aborter.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range poison {
			if err := aborter.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "POISON-%d", i)}).FirstErr(); err != nil {
				t.Fatalf("produce poison: %v", err)
			}
		}
		if err := aborter.EndTransaction(ctx, kgo.TryAbort); err != nil {
			t.Fatalf("abort: %v", err)
		}

		sess, err := kgo.NewGroupTransactSession(
			kgo.SeedBrokers(k.Seeds...),
			kgo.TransactionalID(k.Name("transformer")),
			kgo.ConsumerGroup(k.Name("transformer")),
			kgo.ConsumeTopics(in),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// franz-go always fetches group offsets with RequireStable (KIP-447):
			// a pending transactional commit blocks the fetch, never skips it.
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DefaultProduceTopic(out),
			kgo.ProducerLinger(0),
		)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()

		committed := map[string]bool{}
		var transactions, aborted, abortedRecords int
		for len(committed) < n {
			fetches := sess.PollRecords(ctx, 40)
			if ctx.Err() != nil {
				t.Fatalf("transformed %d of %d before the deadline", len(committed), n)
			}
			fetches.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
			records := fetches.Records()
			if len(records) == 0 {
				continue
			}
			if err := sess.Begin(); err != nil {
				t.Fatalf("begin: %v", err)
			}
			for _, r := range records {
				sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: []byte(strings.ToUpper(string(r.Value)))}, nil)
			}
			// Await every produce before End, so an aborted transaction's
			// records really reach the log (and are then hidden by the marker).
			if err := sess.Client().Flush(ctx); err != nil {
				t.Fatalf("flush: %v", err)
			}
			transactions++
			try := kgo.TryCommit
			if transactions%3 == 0 {
				try = kgo.TryAbort
			}
			ok, err := sess.End(ctx, try)
			if err != nil {
				t.Fatalf("end transaction: %v", err)
			}
			if !ok {
				aborted++
				abortedRecords += len(records)
				continue
			}
			for _, r := range records {
				if committed[string(r.Value)] {
					t.Fatalf("input %s consumed again after its transaction committed", r.Value)
				}
				committed[string(r.Value)] = true
			}
		}
		if aborted == 0 {
			t.Fatalf("no transaction was aborted; the test proves nothing")
		}

		seen := readAll(ctx, t, k, out, kgo.ReadCommitted(), n)
		for v, count := range seen {
			if strings.HasPrefix(v, "POISON") {
				t.Errorf("read_committed reader saw aborted record %s", v)
			} else if count != 1 {
				t.Errorf("read_committed reader saw %s %d times", v, count)
			}
		}
		for i := range n {
			if v := fmt.Sprintf("VALUE-%d", i); seen[v] != 1 {
				t.Errorf("output %s seen %d times, want once", v, seen[v])
			}
		}

		all := readAll(ctx, t, k, out, kgo.ReadUncommitted(), n+poison+abortedRecords)
		total := 0
		for _, c := range all {
			total += c
		}
		if total != n+poison+abortedRecords {
			t.Errorf("read_uncommitted reader saw %d records, want %d committed + %d aborted + %d poison", total, n, abortedRecords, poison)
		}
		t.Logf("%s: %d transactions, %d aborted (%d records), %d poison records; read_committed saw each of %d outputs once",
			k.Kind, transactions, aborted, abortedRecords, poison, n)
	})
}

// readAll reads topic from the start at the given isolation level until want
// records have arrived and one more second brings nothing new, and counts
// each value.
func readAll(ctx context.Context, t *testing.T, k *testenv.Kafka, topic string, iso kgo.IsolationLevel, want int) map[string]int {
	t.Helper()
	cl := k.Client(t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(iso), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]int{}
	total := 0
	for {
		wait := 30 * time.Second
		if total >= want {
			wait = time.Second
		}
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if pollCtx.Err() != nil && fetches.NumRecords() == 0 {
			if total < want {
				t.Fatalf("read %d of %d records from %s", total, want, topic)
			}
			return seen
		}
		fetches.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
}

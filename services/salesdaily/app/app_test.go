package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/consumer"
	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/testenv"
	"github.com/answerback/answerback/services/salesdaily/app"
)

const partitions = 3

// stream is a realistic history of both topics and the daily sales it must give.
type stream struct {
	committed []*kgo.Record // in the order produced; each aggregate's in version order
	aborted   []*kgo.Record // produced in aborted transactions
	want      []string      // daily_sales, as dailySales prints it
}

// newStream makes, for each of two tenants, 40 orders from 22:00 UTC on
// 1 March to past midnight, on five SKUs, two of them repriced in between
// and one priced in USD: items added and removed, three in five orders
// submitted, one cancelled, one left open; one order holds a poison record.
// The tenants use the same order IDs and SKUs, at different prices, and
// their events are interleaved. Aborted transactions hold a submit of each
// open order and a price that would change every revenue.
func newStream(ordersTopic, catalogTopic string) stream {
	var s stream
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
	skus := []string{"apple", "pear", "plum", "fig", "kiwi"}
	tenants := []string{"acme", "globex"}
	type priced struct {
		from  time.Time
		cents int64
		cur   string
	}
	type item struct{ tenant, sku string }
	prices := map[item][]priced{}
	catalogVersion := map[item]int64{}
	upsert := func(tenant, sku string, at time.Time, cents int64, cur string) {
		it := item{tenant, sku}
		catalogVersion[it]++
		prices[it] = append(prices[it], priced{at, cents, cur})
		s.committed = append(s.committed, eventOf(tenant, catalogTopic, sku, catalogVersion[it], catalog.EventItemUpserted, at, price(sku, cents, cur)))
	}
	for t, tenant := range tenants {
		for i, sku := range skus {
			cur := "EUR"
			if sku == "kiwi" {
				cur = "USD"
			}
			upsert(tenant, sku, base.Add(-time.Hour), int64(100*(i+1)+7*t), cur)
		}
	}
	priceAt := func(tenant, sku string, at time.Time) priced {
		var p priced
		for _, q := range prices[item{tenant, sku}] {
			if !q.from.After(at) {
				p = q
			}
		}
		return p
	}
	want := map[string][2]int64{}
	for i := range 40 {
		id := fmt.Sprintf("o-%02d", i)
		for t, tenant := range tenants {
			at := base.Add(time.Duration(i) * 4 * time.Minute)
			if i == 20 { // repriced at 23:20, between orders
				upsert(tenant, "apple", at.Add(-time.Second), int64(120+50*t), "EUR")
				if t == 0 {
					upsert(tenant, "pear", at.Add(-time.Second), 90, "EUR")
				}
			}
			v := int64(0)
			add := func(typ string, data any) {
				v++
				at = at.Add(time.Second)
				s.committed = append(s.committed, eventOf(tenant, ordersTopic, id, v, typ, at, data))
			}
			add(orders.EventCreated, orders.Created{OrderID: id, CustomerID: "c-" + id, Currency: "EUR"})
			lines := map[string]int64{}
			for range 1 + rng.IntN(4) {
				sku, q := skus[rng.IntN(len(skus))], int64(1+rng.IntN(5))
				lines[sku] += q
				add(orders.EventItemAdded, orders.ItemAdded{SKU: sku, Quantity: q})
			}
			if i%7 == 0 {
				for sku := range lines {
					delete(lines, sku)
					add(orders.EventItemRemoved, orders.ItemRemoved{SKU: sku})
					break
				}
				add(orders.EventItemAdded, orders.ItemAdded{SKU: "fig", Quantity: 2})
				lines["fig"] += 2
			}
			if i == 12 && t == 0 { // poison: data the contract does not allow; skipped, a gap follows
				poison := eventOf(tenant, ordersTopic, id, v+1, orders.EventItemAdded, at, orders.ItemAdded{SKU: "apple", Quantity: 3})
				poison.Value = []byte(`{"sku":"apple","quantity":"three"}`)
				s.committed = append(s.committed, poison)
				v++
			}
			switch (i + t) % 5 { // the same order ID fares differently in each tenant
			case 0, 1, 2:
				add(orders.EventSubmitted, orders.Submitted{})
				for sku, q := range lines {
					p := priceAt(tenant, sku, at)
					key := "[" + tenant + "] " + at.Format(time.DateOnly) + " " + sku + " " + p.cur
					want[key] = [2]int64{want[key][0] + q, want[key][1] + q*p.cents}
				}
			case 3:
				add(orders.EventCancelled, orders.Cancelled{})
			default: // left open; a submit that was aborted
				s.aborted = append(s.aborted, eventOf(tenant, ordersTopic, id, v+1, orders.EventSubmitted, at, orders.Submitted{}))
			}
		}
	}
	it := item{tenants[0], "apple"}
	s.aborted = append(s.aborted, eventOf(it.tenant, catalogTopic, it.sku, catalogVersion[it]+1, catalog.EventItemUpserted, base.Add(-2*time.Hour), price("apple", 1, "EUR")))
	for k, qr := range want {
		s.want = append(s.want, fmt.Sprintf("%s: %d %d", k, qr[0], qr[1]))
	}
	slices.Sort(s.want)
	return s
}

// produce writes recs in transactions of up to 15 records, committed or aborted.
func produce(ctx context.Context, t *testing.T, cl *kgo.Client, commit bool, recs []*kgo.Record) {
	t.Helper()
	for chunk := range slices.Chunk(recs, 15) {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		// ProduceSync awaits every record before the transaction ends.
		if err := cl.ProduceSync(ctx, chunk...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction: %v", err)
		}
	}
}

// TestRestartWithoutDoubleCounting runs the service on a realistic stream
// written in Kafka transactions. It stops it mid-stream right after an event
// was applied and before its offset was committed, produces the rest, runs
// it again, and checks daily_sales exactly; then deletes the group's offsets
// so that a new instance gets every event again, and checks nothing changed.
func TestRestartWithoutDoubleCounting(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		ctx, pg, prefix, s, producer := newRun(t, k)
		half := len(s.committed) / 2
		produce(ctx, t, producer, true, s.committed[:half])
		produce(ctx, t, producer, false, s.aborted)

		log := slog.New(slog.DiscardHandler)
		cfg := app.Config{Brokers: k.Seeds, TopicPrefix: prefix, Pool: pg.Pool, Logger: log}
		if err := app.Migrate(ctx, pg.Pool); err != nil {
			t.Fatal(err)
		}
		sales := app.NewSales(pg.Pool, prefix, log)

		// First run: "crashes" right after the 30th event was applied: its
		// transaction committed, its offset not.
		var crashed *kgo.Record
		runCtx, crash := context.WithCancel(ctx)
		applied := 0
		first, err := consumer.New(app.RunnerConfig(cfg, func(ctx context.Context, rec *kgo.Record) error {
			if err := sales.Handle(ctx, rec); err != nil {
				return err
			}
			if applied++; applied == 30 {
				crashed = rec
				crash()
				return errors.New("crashed before the offset was committed")
			}
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Run(runCtx); err != nil {
			t.Fatal(err)
		}
		if crashed == nil {
			t.Fatal("the first run stopped before applying 30 events")
		}

		// Second run: the rest of the stream comes while it runs; the
		// crashed event is delivered again.
		var mu sync.Mutex
		redelivered := false
		second, err := consumer.New(app.RunnerConfig(cfg, func(ctx context.Context, rec *kgo.Record) error {
			mu.Lock()
			redelivered = redelivered || (rec.Topic == crashed.Topic && rec.Partition == crashed.Partition && rec.Offset == crashed.Offset)
			mu.Unlock()
			return sales.Handle(ctx, rec)
		}))
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, func(ctx context.Context) error { return second.Run(ctx) })
		produce(ctx, t, producer, true, s.committed[half:])
		waitForSentinels(ctx, t, k, pg, "second")
		stop()
		mu.Lock()
		if !redelivered {
			t.Error("the event applied before the crash was not delivered again")
		}
		mu.Unlock()
		if n := first.Stats().Poison + second.Stats().Poison; n != 1 {
			t.Errorf("poison records %d, want 1", n)
		}
		check(ctx, t, pg, "after the crash", s.want)

		// Third run, the service itself: every event delivered again.
		adm := k.Admin(t)
		if _, err := adm.DeleteGroup(ctx, app.Group(prefix)); err != nil {
			t.Fatalf("delete group: %v", err)
		}
		stop = run(t, func(ctx context.Context) error { return app.Run(ctx, cfg) })
		waitForSentinels(ctx, t, k, pg, "third")
		stop()
		check(ctx, t, pg, "after every event was delivered again", s.want)
		offsets, err := adm.FetchOffsets(ctx, app.Group(prefix))
		committed := 0
		offsets.Each(func(kadm.OffsetResponse) { committed++ })
		if err != nil || committed != 2*partitions {
			t.Errorf("group offsets after the replay: %d partitions, %v; want %d", committed, err, 2*partitions)
		}
	})
}

func check(ctx context.Context, t *testing.T, pg *testenv.Postgres, step string, want []string) {
	t.Helper()
	if got := dailySales(ctx, t, pg.Pool); !slices.Equal(got, want) {
		t.Errorf("%s: daily_sales\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// run runs f until the returned stop is called (or the test ends).
func run(t *testing.T, f func(ctx context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }() // owned: stop waits for it
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitForSentinels writes an event of a type the service ignores at the end
// of every partition of both topics and waits until the service recorded
// them all: then it has handled everything produced before.
func waitForSentinels(ctx context.Context, t *testing.T, k *testenv.Kafka, pg *testenv.Postgres, name string) {
	t.Helper()
	cl := k.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	ordersTopic, catalogTopic := app.Topics(k.Prefix + ".")
	var recs []*kgo.Record
	for _, topic := range []string{ordersTopic, catalogTopic} {
		for p := range int32(partitions) {
			rec := event(topic, fmt.Sprintf("sentinel-%s-%d", name, p), 1, "test.sentinel.v1", time.Now(), struct{}{})
			rec.Partition = p
			recs = append(recs, rec)
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("sentinels: %v", err)
	}
	for {
		var n int
		if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM consumer_versions WHERE aggregate_id LIKE $1`, "sentinel-"+name+"-%").Scan(&n); err != nil {
			t.Fatalf("sentinels: %v", err)
		}
		if n == len(recs) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("sentinels %s: %d of %d handled before the deadline", name, n, len(recs))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// newRun is what a test of the running service starts from: a database,
// the two event topics, the stream of events to produce, and a
// transactional producer (as the aggregator is).
func newRun(t *testing.T, k *testenv.Kafka) (context.Context, *testenv.Postgres, string, stream, *kgo.Client) {
	t.Helper()
	prefix := k.Prefix + "."
	ordersTopic, catalogTopic := app.Topics(prefix)
	k.CreateTopic(t, ordersTopic, partitions, nil)
	k.CreateTopic(t, catalogTopic, partitions, nil)
	producer := k.Client(t, kgo.TransactionalID(k.Name("aggregator")), kgo.ProducerLinger(0))
	return testenv.Context(t, 3*time.Minute), testenv.NewPostgres(t), prefix, newStream(ordersTopic, catalogTopic), producer
}

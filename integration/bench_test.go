package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/libs/testenv"
	aggapp "github.com/answerback/answerback/services/aggregator/app"
)

// BenchmarkRoundTrip measures the synchronous round trip one client sees —
// HTTP → gateway → commands topic → aggregator (transaction) → events topic →
// projector (PostgreSQL transaction) → reply topic → gateway → HTTP — on the
// real broker (KAFKA_BROKERS) and PostgreSQL, with everything on this machine.
// It reports p50, p90 and p99 latency of add-item commands.
//
//	make bench-roundtrip
func BenchmarkRoundTrip(b *testing.B) {
	k := testenv.RealKafka(b)
	s := startStack(b, k, stackOptions{gateways: 1})
	s.seedCatalog(defaultCatalog)
	const orders = 16
	for o := range orders {
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": fmt.Sprintf("b%d", o), "customerId": "c"})
	}
	// Warm up connections, JIT of the broker, PostgreSQL plans.
	for i := range 50 {
		s.mustCall(0, http.StatusOK, http.MethodPost, fmt.Sprintf("/v1/orders/b%d/items", i%orders), map[string]any{"sku": "apple", "quantity": 1})
		if i%orders == orders-1 {
			for o := range orders {
				s.mustCall(0, http.StatusOK, http.MethodDelete, fmt.Sprintf("/v1/orders/b%d/items/apple", o), nil)
			}
		}
	}
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := fmt.Sprintf("/v1/orders/b%d/items", i%orders)
		start := time.Now()
		// Alternate add and remove so orders never reach their limits.
		if (i/orders)%2 == 0 {
			s.mustCall(0, http.StatusOK, http.MethodPost, order, map[string]any{"sku": "apple", "quantity": 1})
		} else {
			s.mustCall(0, http.StatusOK, http.MethodDelete, order+"/apple", nil)
		}
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.90).Microseconds())/1000, "p90-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	if len(latencies) >= 100 {
		fmt.Fprintf(os.Stderr, "round trip over %d commands: p50 %s, p90 %s, p99 %s, max %s\n",
			len(latencies), pct(0.50), pct(0.90), pct(0.99), latencies[len(latencies)-1])
	}
}

// BenchmarkReplay measures how fast a view is built from its event topics —
// the engine of `abctl replay` and `abctl rebuild` — on the real broker and
// PostgreSQL: 20,000 order events (2,000 orders, each created with nine
// items added) projected into an empty view, 500 events per transaction.
// It reports events per second.
//
//	cd integration && go test -run '^$' -bench BenchmarkReplay -benchtime 1x .
func BenchmarkReplay(b *testing.B) {
	k := testenv.RealKafka(b)
	ctx := testenv.Context(b, 10*time.Minute)
	const orderCount, perOrder = 2000, 10
	prefix, ranges := produceOrderEvents(ctx, b, k, orderCount, perOrder)
	p := view.Projection(prefix)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		pg := emptyView(ctx, b)
		b.StartTimer()
		started := time.Now()
		st, err := projector.Replay(ctx, p, projector.ReplayConfig{Brokers: k.Seeds, Pool: pg.Pool, Tracked: true}, ranges)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(started)
		if st.Records != orderCount*perOrder {
			b.Fatalf("replayed %d events, want %d", st.Records, orderCount*perOrder)
		}
		b.ReportMetric(float64(st.Records)/took.Seconds(), "events/s")
		fmt.Fprintf(os.Stderr, "replay: %d events into an empty view in %s: %.0f events/s\n", st.Records, took.Round(time.Millisecond), float64(st.Records)/took.Seconds())
	}
}

// produceOrderEvents writes perOrder events for each of orderCount orders
// (created, then items added) to the orders' events topic under a prefix of
// its own, and returns the prefix and the topic's ranges, whole.
func produceOrderEvents(ctx context.Context, t testing.TB, k *testenv.Kafka, orderCount, perOrder int) (string, []projector.Range) {
	t.Helper()
	prefix := k.Prefix + "."
	if err := aggapp.EnsureTopics(ctx, k.Seeds, prefix, 6); err != nil {
		t.Fatal(err)
	}
	names := topics.For(prefix, "orders")
	var recs []*kgo.Record
	for o := range orderCount {
		id := fmt.Sprintf("r%d", o)
		for v := 1; v <= perOrder; v++ {
			ev := envelope.Event{Meta: envelope.Meta{AggregateID: id, CommandID: fmt.Sprintf("%s-%d", id, v), Tenant: testTenant},
				Type: orders.EventItemAdded, Version: int64(v), Time: time.Now(), Index: 1, Count: 1,
				Data: fmt.Appendf(nil, `{"sku":"s%d","quantity":1}`, v)}
			if v == 1 {
				ev.Type, ev.Data = orders.EventCreated, []byte(`{"customerId":"c"}`)
			}
			recs = append(recs, envelope.EncodeEvent(names.Events, "/answerback/orders", ev))
		}
	}
	producer := k.Client(t, kgo.ProducerLinger(5*time.Millisecond))
	if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends, err := k.Admin(t).ListEndOffsets(ctx, names.Events)
	if err != nil {
		t.Fatal(err)
	}
	var ranges []projector.Range
	ends.Each(func(o kadm.ListedOffset) {
		ranges = append(ranges, projector.Range{Topic: o.Topic, Partition: o.Partition, To: o.Offset})
	})
	return prefix, ranges
}

// emptyView is a fresh database with the view's and the projector's tables.
func emptyView(ctx context.Context, t testing.TB) *testenv.Postgres {
	t.Helper()
	pg := testenv.NewPostgres(t)
	if err := view.Migrate(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	if err := projector.EnsureSchema(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	return pg
}

package integration

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/answerback/answerback/libs/testenv"
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

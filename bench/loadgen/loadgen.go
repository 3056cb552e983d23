// Package loadgen drives a system open-loop: requests start at fixed
// intended times, whatever the system does, and each one's latency counts
// from its intended start — a slow answer delays no later request and hides
// no queueing (no coordinated omission). Latencies go into an HDR histogram.
package loadgen

import (
	"context"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is one run at one offered rate.
type Result struct {
	Rate       float64 `json:"rate"`       // offered, requests per second
	Seconds    float64 `json:"seconds"`    // how long requests were started
	Sent       int     `json:"sent"`       // requests started
	OK         int     `json:"ok"`         // answered as expected
	Errors     int     `json:"errors"`     // answered otherwise, or failed
	Dropped    int     `json:"dropped"`    // not started: MaxOutstanding were in flight
	Throughput float64 `json:"throughput"` // OK per second of the run
	P50        float64 `json:"p50Ms"`
	P90        float64 `json:"p90Ms"`
	P99        float64 `json:"p99Ms"`
	P999       float64 `json:"p999Ms"`
	Max        float64 `json:"maxMs"`
	// CDF holds (latency ms, fraction of OK requests at or below it) points.
	CDF [][2]float64 `json:"cdf,omitempty"`
	// Cost per component, filled in by the caller that knows the processes.
	Cost map[string]Cost `json:"cost,omitempty"`
	// BrokerRequests are the requests the system's Kafka broker served per
	// answered request, by API ("Produce", "Fetch"…), as the broker counted
	// them; filled in by the caller that can read the broker's counts.
	BrokerRequests map[string]float64 `json:"brokerRequests,omitempty"`
}

// Cost is what serving a run cost one component.
type Cost struct {
	CPUSecondsPer1000 float64 `json:"cpuSecondsPer1000"` // CPU time per 1,000 answered requests
	PeakRSSMiB        float64 `json:"peakRssMiB"`        // the process's peak resident memory so far
}

// Sustained reports whether r met a latency bound with no error or drop.
func (r Result) Sustained(p99Bound time.Duration) bool {
	return r.Errors == 0 && r.Dropped == 0 && r.OK > 0 && r.P99 <= float64(p99Bound)/float64(time.Millisecond)
}

// Options of one run.
type Options struct {
	Rate     float64       // requests per second, > 0
	Duration time.Duration // how long to start requests
	// MaxOutstanding bounds requests in flight; a request due while that many
	// are outstanding is dropped and counted. Default 4096.
	MaxOutstanding int
}

// Run starts do(ctx, i) at start + i/Rate for i = 0, 1, … until Duration
// has passed, waits for every request, and returns the result. do returns
// nil when the answer was the expected one.
func Run(ctx context.Context, o Options, do func(ctx context.Context, i int) error) Result {
	if o.MaxOutstanding == 0 {
		o.MaxOutstanding = 4096
	}
	hist := hdrhistogram.New(1, int64(5*time.Minute/time.Microsecond), 3)
	var (
		mu          sync.Mutex
		res         = Result{Rate: o.Rate}
		wg          sync.WaitGroup
		outstanding = make(chan struct{}, o.MaxOutstanding)
	)
	interval := time.Duration(float64(time.Second) / o.Rate)
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= o.Duration || ctx.Err() != nil {
			break
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		res.Sent++
		select {
		case outstanding <- struct{}{}:
		default:
			res.Dropped++
			continue
		}
		wg.Add(1)
		go func() { // owned by Run: waited for below
			defer wg.Done()
			err := do(ctx, i)
			latency := time.Since(due) // from the intended start
			<-outstanding
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errors++
				return
			}
			res.OK++
			_ = hist.RecordValue(latency.Microseconds())
		}()
	}
	res.Seconds = o.Duration.Seconds()
	wg.Wait()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	res.Throughput = float64(res.OK) / time.Since(start).Seconds()
	res.P50, res.P90, res.P99 = ms(hist.ValueAtQuantile(50)), ms(hist.ValueAtQuantile(90)), ms(hist.ValueAtQuantile(99))
	res.P999, res.Max = ms(hist.ValueAtQuantile(99.9)), ms(hist.Max())
	for _, b := range hist.CumulativeDistribution() {
		if b.Count > 0 {
			res.CDF = append(res.CDF, [2]float64{ms(b.ValueAt), b.Quantile / 100})
		}
	}
	return res
}

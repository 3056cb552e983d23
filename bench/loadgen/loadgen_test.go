package loadgen

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestOpenLoopCountsFromIntendedStart: a system that stalls once for 300ms
// delays the requests due during the stall; their latency counts from when
// they were due, so the p99 shows the stall although each waited request
// was quick once it ran. Errors are counted apart.
func TestOpenLoopCountsFromIntendedStart(t *testing.T) {
	t.Parallel()
	var stalled atomic.Bool
	gate := make(chan struct{})
	go func() { time.Sleep(300 * time.Millisecond); close(gate) }()
	res := Run(context.Background(), Options{Rate: 200, Duration: time.Second}, func(_ context.Context, i int) error {
		if i%50 == 49 {
			return errors.New("refused")
		}
		if !stalled.Load() || i < 60 { // the first 60 (300ms at 200/s) wait for the gate
			stalled.Store(true)
			<-gate
		}
		return nil
	})
	if res.Sent != 200 || res.Errors != 4 || res.OK != 196 || res.Dropped != 0 {
		t.Fatalf("sent %d ok %d errors %d dropped %d, want 200/196/4/0", res.Sent, res.OK, res.Errors, res.Dropped)
	}
	if res.Max < 250 || res.P50 > 100 {
		t.Fatalf("max %.1fms, p50 %.1fms: want the stall in the tail (≥250ms) and not in the median", res.Max, res.P50)
	}
	if len(res.CDF) == 0 || res.CDF[len(res.CDF)-1][1] != 1 {
		t.Fatalf("CDF %v does not end at 1", res.CDF)
	}
}

// TestDropsBeyondMaxOutstanding: requests due while the bound is reached are
// dropped and counted, not queued.
func TestDropsBeyondMaxOutstanding(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	go func() { time.Sleep(500 * time.Millisecond); close(block) }()
	res := Run(context.Background(), Options{Rate: 100, Duration: 200 * time.Millisecond, MaxOutstanding: 5}, func(context.Context, int) error {
		<-block
		return nil
	})
	if res.OK != 5 || res.Dropped != res.Sent-5 || res.Sustained(time.Second) {
		t.Fatalf("ok %d dropped %d of %d (sustained %v), want 5 answered and the rest dropped", res.OK, res.Dropped, res.Sent, res.Sustained(time.Second))
	}
}

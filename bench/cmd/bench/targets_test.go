package main

import (
	"strings"
	"testing"

	"github.com/answerback/answerback/bench/loadgen"
)

// TestCheckTargets: each target is judged from the run's own figures, and
// one the run did not measure says so instead of passing.
func TestCheckTargets(t *testing.T) {
	const m = "spread"
	steps := func(rates ...float64) []loadgen.Result {
		var out []loadgen.Result
		for i, r := range rates {
			out = append(out, loadgen.Result{Rate: r, P50: 4 + float64(i), P99: 20 + float64(i)})
		}
		return out
	}
	r := results{Series: []series{
		{System: nameAnswerback, Mix: m, Steps: steps(100, 250, 500, 1000, 1500, 2000), MaxSustained: 2000},
		{System: nameTransport, Mix: m, Steps: []loadgen.Result{{Rate: 100, P50: 2}}, MaxSustained: 3000},
		{System: nameWatermill, Mix: m, Steps: steps(100, 250), MaxSustained: 250},
		{System: nameEmbedded, Mix: m, Steps: []loadgen.Result{{Rate: 100, P50: 6.6}}, MaxSustained: 250},
	}}
	got := map[string]target{}
	for _, tg := range checkTargets(r) {
		got[strings.TrimPrefix(tg.Goal, m+": ")] = tg
	}
	want := map[string]bool{ // goal → met
		"p50 ≤ 10 ms and p99 ≤ 30 ms at 500 commands/s":                       true,  // 6 / 22
		"≥ 1,500 commands/s sustained with p99 ≤ 100 ms":                      true,  // 2000
		"p50 within 3× the transport floor's (first rate, same run)":          true,  // 4 vs 2
		"at equal p99 bound (100 ms), throughput ≥ 1.5× the Watermill peer's": true,  // 8×
		"embedded default (kfake) p50 ≤ 3 ms":                                 false, // 6.6
	}
	for goal, met := range want {
		tg, ok := got[goal]
		if !ok || !tg.Known || tg.Met != met {
			t.Errorf("%q: %+v (found %v), want known and met=%v", goal, tg, ok, met)
		}
	}

	// Without the peer and with Answerback stopping before 500/s.
	r.Series = []series{{System: nameAnswerback, Mix: m, Steps: steps(100, 250), MaxSustained: 100}}
	for _, tg := range checkTargets(r) {
		switch {
		case strings.Contains(tg.Goal, "at 500 commands/s"):
			if !tg.Known || tg.Met || !strings.Contains(tg.Measured, "not reached") {
				t.Errorf("500/s never offered: %+v, want known, missed, not reached", tg)
			}
		case strings.Contains(tg.Goal, "Watermill"):
			if tg.Known {
				t.Errorf("no peer in the run: %+v, want not measured", tg)
			}
		}
	}
}

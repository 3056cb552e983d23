package main

import (
	"strings"
	"testing"

	"github.com/answerback/answerback/bench/loadgen"
)

// synthSeries is a series of the full plan's rates up to maxSustained, all
// sustained, and the next, not: p50 ms at every step, and cpu ms per
// command over the system's process, the broker and PostgreSQL — the load
// generator's, apart, far more. noCost leaves the CPU figures out, as a run
// recorded before them.
func synthSeries(system, mix string, maxSustained, p50, cpu float64, noCost bool) series {
	s := series{System: system, Mix: mix, MaxSustained: maxSustained}
	for _, rate := range planFor(false).Rates {
		st := loadgen.Result{Rate: rate, OK: 100, P50: p50, P99: 50}
		if rate > maxSustained {
			st.P99 = 500
		}
		if !noCost {
			st.Cost = map[string]loadgen.Cost{"svc": {CPUSecondsPer1000: cpu / 2}, "kafka": {CPUSecondsPer1000: cpu * 0.3},
				"postgres": {CPUSecondsPer1000: cpu * 0.2}, loadgenComponent: {CPUSecondsPer1000: 100}}
		}
		s.Steps = append(s.Steps, st)
		if rate > maxSustained {
			break
		}
	}
	return s
}

// The targets by a part of their goal, each found once per mix.
const (
	goalFloorRate   = "≥ 0.8 × the exactly-once floor's"
	goalRate        = "Answerback's highest sustained rate ≥ 1,000 commands/s"
	goalPeerRate    = "≥ 1.5 × the Watermill peer's"
	goalPeerP50     = "≤ the Watermill peer's"
	goalFloorP50    = "p50 at 100/s ≤ 1.5 × the exactly-once floor's"
	goalEmbeddedP50 = "≤ 2 × the exactly-once floor's on kfake"
	goalEmbedded    = "embedded default (kfake): highest sustained rate ≥ 2,000 commands/s"
	goalCPU         = "CPU per command"
)

var allGoals = []string{goalFloorRate, goalRate, goalPeerRate, goalPeerP50, goalFloorP50, goalEmbeddedP50, goalEmbedded, goalCPU}

func targetOf(t *testing.T, ts []target, mix, goal string) target {
	t.Helper()
	var found []target
	for _, tg := range ts {
		if strings.HasPrefix(tg.Goal, mix+": ") && strings.Contains(tg.Goal, goal) {
			found = append(found, tg)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s, %q: %d targets, want 1: %+v", mix, goal, len(found), ts)
	}
	return found[0]
}

// TestCheckTargets: each of issue 20's targets is judged, mix by mix, from
// the run's own figures: met in one mix, missed in the other.
func TestCheckTargets(t *testing.T) {
	const met, missed = "spread", "hot"
	r := results{Series: []series{
		synthSeries(nameAnswerback, met, 2000, 10, 2, false),
		synthSeries(nameEOSFloor, met, 1500, 8, 1.5, false),
		synthSeries(nameWatermill, met, 750, 12, 5, false),
		synthSeries(nameEmbedded, met, 2000, 3, 1, false),
		synthSeries(nameEOSFloorEmbedded, met, 3000, 2, 0.5, false),

		synthSeries(nameAnswerback, missed, 750, 20, 4, false),
		synthSeries(nameEOSFloor, missed, 1250, 8, 1.5, false),
		synthSeries(nameWatermill, missed, 750, 12, 5, false),
		synthSeries(nameEmbedded, missed, 1000, 5, 1, false),
		synthSeries(nameEOSFloorEmbedded, missed, 3000, 2, 0.5, false),
	}}
	ts := checkTargets(r)
	if len(ts) != 2*len(allGoals) {
		t.Errorf("%d targets, want %d", len(ts), 2*len(allGoals))
	}
	for _, goal := range allGoals {
		if tg := targetOf(t, ts, met, goal); !tg.Known || !tg.Met || tg.OutOfReach {
			t.Errorf("%q: %+v, want met", tg.Goal, tg)
		}
		if tg := targetOf(t, ts, missed, goal); !tg.Known || tg.Met || tg.OutOfReach {
			t.Errorf("%q: %+v, want missed, in reach", tg.Goal, tg)
		}
	}
	for _, c := range []struct{ mix, goal, measured, floor string }{
		{met, goalFloorRate, "2,000/s vs 1,500/s: 1.33×", ""},
		{missed, goalFloorRate, "750/s vs 1,250/s: 0.60×", ""},
		{missed, goalRate, "750/s", "1,250/s: reaches 1,000/s"},
		{missed, goalPeerRate, "750/s vs 750/s: 1.00×", ""},
		{missed, goalFloorP50, "20.0 ms vs 8.0 ms: 2.50×", ""},
		{missed, goalEmbedded, "1,000/s", "3,000/s: reaches 2,000/s"},
		// The load generator's CPU is left out of both.
		{met, goalCPU, "2.00 ms at 2,000/s vs 1.50 ms at 1,500/s: 1.33×; Answerback's at 1,500/s, the highest both sustained: 2.00 ms (1.33×)", ""},
		{missed, goalCPU, "4.00 ms at 750/s vs 1.50 ms at 1,250/s: 2.67×; the exactly-once floor's at 750/s, the highest both sustained: 1.50 ms (2.67×)", ""},
	} {
		if tg := targetOf(t, ts, c.mix, c.goal); tg.Measured != c.measured || tg.Floor != c.floor {
			t.Errorf("%q: measured %q, floor %q; want %q, %q", tg.Goal, tg.Measured, tg.Floor, c.measured, c.floor)
		}
	}
}

// TestTargetsNotMeasured: a target whose systems the run lacks says so
// instead of passing or failing, and so does one a run recorded before its
// figures (CPU per command) cannot judge.
func TestTargetsNotMeasured(t *testing.T) {
	const m = "spread"
	r := results{Series: []series{synthSeries(nameAnswerback, m, 1000, 10, 0, true)}}
	ts := checkTargets(r)
	for _, goal := range allGoals {
		tg := targetOf(t, ts, m, goal)
		if goal == goalRate { // Answerback's own figure
			if !tg.Known || !tg.Met || tg.Floor != "not measured" {
				t.Errorf("%q: %+v, want met with the floor not measured", tg.Goal, tg)
			}
			continue
		}
		if tg.Known || tg.Met || !strings.HasPrefix(tg.Measured, "not in this run: ") {
			t.Errorf("%q: %+v, want not measured, naming the system missing", tg.Goal, tg)
		}
	}
	if tg := targetOf(t, ts, m, goalFloorRate); tg.Measured != "not in this run: "+nameEOSFloor {
		t.Errorf("%q: measured %q, want the exactly-once floor named", tg.Goal, tg.Measured)
	}
	if tg, want := targetOf(t, ts, m, goalEmbeddedP50), "not in this run: "+nameEmbedded+"; "+nameEOSFloorEmbedded; tg.Measured != want {
		t.Errorf("%q: measured %q, want %q", tg.Goal, tg.Measured, want)
	}

	r.Series = append(r.Series, synthSeries(nameEOSFloor, m, 1000, 8, 0, true))
	if tg := targetOf(t, checkTargets(r), m, goalCPU); tg.Known || tg.Measured != "no CPU figures in this run" {
		t.Errorf("%q: %+v, want not measured: no CPU figures", tg.Goal, tg)
	}
	var b strings.Builder
	writeTargets(&b, checkTargets(r))
	if !strings.Contains(b.String(), "| no CPU figures in this run | — | not measured |") {
		t.Errorf("the report does not say the CPU target was not measured:\n%s", b.String())
	}
}

// TestTargetsOutOfReach: a target of a figure of its own is out of reach
// only when the exactly-once floor under the same broker misses it in the
// same run, and the report says so.
func TestTargetsOutOfReach(t *testing.T) {
	const m = "spread"
	r := results{Series: []series{
		synthSeries(nameAnswerback, m, 750, 10, 2, false),
		synthSeries(nameEOSFloor, m, 750, 8, 1.5, false),
		synthSeries(nameEmbedded, m, 1500, 3, 1, false),
		synthSeries(nameEOSFloorEmbedded, m, 1500, 2, 0.5, false),
	}}
	ts := checkTargets(r)
	for _, goal := range []string{goalRate, goalEmbedded} {
		if tg := targetOf(t, ts, m, goal); !tg.Known || tg.Met || !tg.OutOfReach {
			t.Errorf("%q: %+v, want missed and out of reach", tg.Goal, tg)
		}
	}
	if tg := targetOf(t, ts, m, goalFloorRate); !tg.Met || tg.OutOfReach {
		t.Errorf("%q: %+v, want met", tg.Goal, tg)
	}
	var b strings.Builder
	writeTargets(&b, ts)
	containsAll(t, "the targets", b.String(),
		"the **exactly-once floor**",
		"| target | measured | floor | |",
		"| spread: Answerback's highest sustained rate ≥ 1,000 commands/s | 750/s | 750/s: short of 1,000/s too | **missed**, out of reach: the floor misses it too |",
		"| spread: embedded default (kfake): highest sustained rate ≥ 2,000 commands/s | 1,500/s | 1,500/s: short of 2,000/s too | **missed**, out of reach: the floor misses it too |",
		"| spread: Answerback's highest sustained rate ≥ 0.8 × the exactly-once floor's | 750/s vs 750/s: 1.00× | — | met |",
		"| not in this run: Watermill peer | — | not measured |",
	)

	// The floor reaching the figure leaves the target plainly missed.
	r.Series[1] = synthSeries(nameEOSFloor, m, 1000, 8, 1.5, false)
	if tg := targetOf(t, checkTargets(r), m, goalRate); tg.Met || tg.OutOfReach {
		t.Errorf("%q: %+v, want missed, in reach", tg.Goal, tg)
	}
}

// containsAll fails t for each of wants that text, named what, lacks.
func containsAll(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lack %q:\n%s", what, want, text)
		}
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 750: "750", 1000: "1,000", 12500: "12,500", 1234567.4: "1,234,567"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestRegressionSection: with Answerback built from a baseline commit in the
// run, the report compares the two mix by mix; without, it says nothing.
func TestRegressionSection(t *testing.T) {
	t.Parallel()
	step := func(rate, p50 float64) loadgen.Result {
		return loadgen.Result{Rate: rate, P50: p50, Cost: map[string]loadgen.Cost{"gateway-1": {CPUSecondsPer1000: 2}}}
	}
	r := results{Baseline: "HEAD~3", Series: []series{
		{System: nameAnswerback, Mix: "spread", Steps: []loadgen.Result{step(100, 9.5)}, MaxSustained: 250},
		{System: baselineName("abc123"), Mix: "spread", Steps: []loadgen.Result{step(100, 12.25)}, MaxSustained: 100},
	}}
	var b strings.Builder
	writeRegression(&b, r)
	for _, want := range []string{"## Against the baseline", "`HEAD~3` (abc123)", "| spread | 250/s | 100/s | 9.5 | 12.2 | 2.00 | 2.00 |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("section lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	r.Series = r.Series[:1]
	writeRegression(&b, r)
	if b.Len() != 0 {
		t.Errorf("a section without a baseline series:\n%s", b.String())
	}
}

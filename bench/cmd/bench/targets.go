package main

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/answerback/answerback/bench/loadgen"
)

// The systems the targets compare, by the names their series carry.
const (
	nameAnswerback = "Answerback"
	nameEmbedded   = "Answerback, embedded (kfake)"
	nameTransport  = "transport floor"
	nameWatermill  = "Watermill peer"
)

// The absolute figures of the targets.
const (
	// targetRate is the highest sustained rate Answerback reaches on Apache
	// Kafka, at least, and targetEmbeddedRate the embedded default's.
	targetRate         = 1000
	targetEmbeddedRate = 2000
	// p50Rate is the offered rate whose p50 the latency targets compare.
	p50Rate = 100
)

// target is one of the performance issue's targets, checked against a run.
type target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Known    bool   `json:"known"` // false: the run did not measure it
	// Floor is what the exactly-once floor measured against a target of
	// an absolute figure in the same run; empty for the others.
	Floor string `json:"floor,omitempty"`
	// OutOfReach: missed, and the exactly-once floor misses it too.
	OutOfReach bool `json:"outOfReach,omitempty"`
}

// checkTargets judges a run, mix by mix, against issue 20's targets for a
// 2-core machine running broker, database, services and load generator
// together: Answerback on Apache Kafka against the exactly-once floor and
// the Watermill peer, and the embedded default against the exactly-once
// floor on kfake.
func checkTargets(r results) []target {
	var out []target
	for _, mixName := range mixNames(r.Series) {
		get := func(system string) inRun { return lookup(r.Series, system, mixName) }
		ab, eos, wm := get(nameAnswerback), get(nameEOSFloor), get(nameWatermill)
		em, eosEm := get(nameEmbedded), get(nameEOSFloorEmbedded)
		ts := []target{
			rateShare("Answerback's highest sustained rate ≥ 0.8 × the exactly-once floor's", ab, eos, 0.8),
			rateAtLeast(fmt.Sprintf("Answerback's highest sustained rate ≥ %s commands/s", thousands(targetRate)), ab, eos, targetRate),
			rateShare("Answerback's highest sustained rate ≥ 1.5 × the Watermill peer's", ab, wm, 1.5),
			p50Share(fmt.Sprintf("Answerback's p50 at %d/s ≤ the Watermill peer's", p50Rate), ab, wm, 1),
			p50Share(fmt.Sprintf("Answerback's p50 at %d/s ≤ 1.5 × the exactly-once floor's", p50Rate), ab, eos, 1.5),
			p50Share(fmt.Sprintf("embedded default (kfake): p50 at %d/s ≤ 2 × the exactly-once floor's on kfake", p50Rate), em, eosEm, 2),
			rateAtLeast(fmt.Sprintf("embedded default (kfake): highest sustained rate ≥ %s commands/s", thousands(targetEmbeddedRate)), em, eosEm, targetEmbeddedRate),
			cpuShare("Answerback's CPU per command at its highest sustained rate ≤ 1.5 × the exactly-once floor's at the floor's own", ab, eos, 1.5),
		}
		for _, t := range ts {
			t.Goal = mixName + ": " + t.Goal
			out = append(out, t)
		}
	}
	return out
}

// inRun is one system's series under one mix; ok is false when the run did
// not measure it (its System is still named).
type inRun struct {
	series
	ok bool
}

func lookup(ss []series, system, mixName string) inRun {
	s, ok := findSeries(ss, system, mixName)
	s.System = system
	return inRun{s, ok}
}

// judged starts a target comparing systems: not measured, saying which
// system the run lacks, unless it measured them all.
func judged(goal string, systems ...inRun) target {
	var absent []string
	for _, s := range systems {
		if !s.ok {
			absent = append(absent, s.System)
		}
	}
	if len(absent) > 0 {
		// Names hold commas: "; " keeps them apart.
		return target{Goal: goal, Measured: "not in this run: " + strings.Join(absent, "; ")}
	}
	return target{Goal: goal, Known: true}
}

// rateShare: s's highest sustained rate is at least share × ref's.
func rateShare(goal string, s, ref inRun, share float64) target {
	t := judged(goal, s, ref)
	if !t.Known {
		return t
	}
	t.Met = s.MaxSustained > 0 && s.MaxSustained >= share*ref.MaxSustained
	t.Measured = fmt.Sprintf("%s vs %s", sustained(s.MaxSustained), sustained(ref.MaxSustained))
	if ref.MaxSustained > 0 {
		t.Measured += fmt.Sprintf(": %.2f×", s.MaxSustained/ref.MaxSustained)
	}
	return t
}

// rateAtLeast: s's highest sustained rate is at least rate; floor, the
// exactly-once floor under s's broker, shows whether the target is in reach
// at all.
func rateAtLeast(goal string, s, floor inRun, rate float64) target {
	t := judged(goal, s)
	if t.Known {
		t.Met = s.MaxSustained >= rate
		t.Measured = sustained(s.MaxSustained)
	}
	switch {
	case !floor.ok:
		t.Floor = "not measured"
	case floor.MaxSustained >= rate:
		t.Floor = fmt.Sprintf("%s: reaches %s", sustained(floor.MaxSustained), perSecond(rate))
	default:
		t.Floor = fmt.Sprintf("%s: short of %s too", sustained(floor.MaxSustained), perSecond(rate))
		t.OutOfReach = t.Known && !t.Met
	}
	return t
}

// p50Share: s's p50 at p50Rate is at most share × ref's, with no error.
func p50Share(goal string, s, ref inRun, share float64) target {
	t := judged(goal, s, ref)
	if !t.Known {
		return t
	}
	st, okS := stepAt(s.series, p50Rate)
	rt, okRef := stepAt(ref.series, p50Rate)
	if !okS || !okRef {
		t.Known, t.Measured = false, fmt.Sprintf("no step at %d/s", p50Rate)
		return t
	}
	t.Met = st.Errors == 0 && st.P50 <= share*rt.P50
	t.Measured = fmt.Sprintf("%.1f ms vs %.1f ms", st.P50, rt.P50)
	if rt.P50 > 0 {
		t.Measured += fmt.Sprintf(": %.2f×", st.P50/rt.P50)
	}
	if st.Errors > 0 {
		t.Measured += fmt.Sprintf(" (%s: %d errors)", s.System, st.Errors)
	}
	return t
}

// cpuShare: s's CPU per command at its highest sustained rate is at most
// share × ref's at ref's own; besides, both at the highest rate both
// sustained, when that is another.
func cpuShare(goal string, s, ref inRun, share float64) target {
	t := judged(goal, s, ref)
	if !t.Known {
		return t
	}
	if s.MaxSustained == 0 {
		t.Measured = s.System + " sustained no rate"
		return t
	}
	if ref.MaxSustained == 0 {
		t.Known, t.Measured = false, ref.System+" sustained no rate: nothing to compare with"
		return t
	}
	cpu, okS := cpuAt(s.series, s.MaxSustained)
	refCPU, okRef := cpuAt(ref.series, ref.MaxSustained)
	if !okS || !okRef || refCPU == 0 {
		t.Known, t.Measured = false, "no CPU figures in this run"
		return t
	}
	t.Met = cpu <= share*refCPU
	t.Measured = fmt.Sprintf("%.2f ms at %s vs %.2f ms at %s: %.2f×", cpu, perSecond(s.MaxSustained), refCPU, perSecond(ref.MaxSustained), cpu/refCPU)
	// At the highest rate both sustained, the one that sustained more is
	// measured again.
	both := min(s.MaxSustained, ref.MaxSustained)
	a, okA := cpuAt(s.series, both)
	b, okB := cpuAt(ref.series, both)
	switch {
	case !okA || !okB || b == 0:
	case both < ref.MaxSustained:
		t.Measured += fmt.Sprintf("; the %s's at %s, the highest both sustained: %.2f ms (%.2f×)", ref.System, perSecond(both), b, a/b)
	case both < s.MaxSustained:
		t.Measured += fmt.Sprintf("; %s's at %s, the highest both sustained: %.2f ms (%.2f×)", s.System, perSecond(both), a, a/b)
	}
	return t
}

// cpuAt is the CPU ms per command of s's step at rate, summed over every
// process but the load generator: the system's own, the broker and
// PostgreSQL's backends; false when the run has no such step or no CPU
// figures for it.
func cpuAt(s series, rate float64) (float64, bool) {
	st, ok := stepAt(s, rate)
	if !ok {
		return 0, false
	}
	var sum float64
	n := 0
	for c, cost := range st.Cost {
		if c != loadgenComponent {
			sum += cost.CPUSecondsPer1000
			n++
		}
	}
	return sum, n > 0
}

func findSeries(ss []series, system, mixName string) (series, bool) {
	for _, s := range ss {
		if s.System == system && s.Mix == mixName {
			return s, true
		}
	}
	return series{}, false
}

func stepAt(s series, rate float64) (loadgen.Result, bool) {
	for _, st := range s.Steps {
		if st.Rate == rate {
			return st, true
		}
	}
	return loadgen.Result{}, false
}

// sustained renders a highest sustained rate.
func sustained(rate float64) string {
	if rate == 0 {
		return "none sustained"
	}
	return perSecond(rate)
}

// perSecond renders a rate: "1,250/s".
func perSecond(rate float64) string { return thousands(rate) + "/s" }

// thousands renders v, not negative, rounded to a whole number with its
// thousands apart: "12,500".
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// writeTargets renders the targets as a table.
func writeTargets(b *strings.Builder, ts []target) {
	if len(ts) == 0 {
		return
	}
	fmt.Fprintf(b, "## Targets\n\nIssue 20's targets for a 2-core machine running broker, PostgreSQL, services and load generator together, judged against this run for each traffic mix: "+
		"Answerback (on Apache Kafka, exactly-once on) against the **exactly-once floor** — the same guarantees built directly on franz-go and pgx, measured in the same run — and against the Watermill peer; "+
		"the embedded default (kfake) against the exactly-once floor on kfake. "+
		"The highest sustained rate is the highest offered rate with p99 within the bound and no error; p50 is taken at %d/s. "+
		"CPU per command sums every process serving the system — its own, the broker and PostgreSQL's backends — at each system's highest sustained rate, the load generator excluded. "+
		"A target with a figure of its own (commands/s) counts as out of reach only when the exactly-once floor misses it in the same run too (column floor).\n\n", p50Rate)
	b.WriteString("| target | measured | floor | |\n|---|---|---|---|\n")
	for _, t := range ts {
		verdict := "not measured"
		switch {
		case t.Known && t.Met:
			verdict = "met"
		case t.OutOfReach:
			verdict = "**missed**, out of reach: the floor misses it too"
		case t.Known:
			verdict = "**missed**"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.Goal, t.Measured, cmp.Or(t.Floor, "—"), verdict)
	}
	b.WriteString("\n")
}

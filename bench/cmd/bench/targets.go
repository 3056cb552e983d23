package main

import (
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

// target is one of the performance issue's targets, checked against a run.
type target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Known    bool   `json:"known"` // false: the run did not measure it
}

// checkTargets compares a run with the targets set for a 2-core machine
// running broker, database, services and load generator together.
func checkTargets(r results) []target {
	var out []target
	for _, mixName := range mixNames(r.Series) {
		ab, okAB := findSeries(r.Series, nameAnswerback, mixName)
		at500 := target{Goal: fmt.Sprintf("%s: p50 ≤ 10 ms and p99 ≤ 30 ms at 500 commands/s", mixName)}
		if step, ok := stepAt(ab, 500); okAB && ok {
			at500.Known, at500.Met = true, step.P50 <= 10 && step.P99 <= 30 && step.Errors == 0
			at500.Measured = fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, %d errors", step.P50, step.P99, step.Errors)
		} else if okAB {
			at500.Known, at500.Measured = true, fmt.Sprintf("500/s not reached: the steps stopped after %.0f/s", lastRate(ab))
		}
		out = append(out, at500)

		sustained := target{Goal: fmt.Sprintf("%s: ≥ 1,500 commands/s sustained with p99 ≤ 100 ms", mixName)}
		if okAB {
			sustained.Known, sustained.Met = true, ab.MaxSustained >= 1500
			sustained.Measured = fmt.Sprintf("%.0f /s", ab.MaxSustained)
		}
		out = append(out, sustained)

		floor := target{Goal: fmt.Sprintf("%s: p50 within 3× the transport floor's (first rate, same run)", mixName)}
		if tf, ok := findSeries(r.Series, nameTransport, mixName); ok && okAB && len(ab.Steps) > 0 && len(tf.Steps) > 0 && tf.Steps[0].P50 > 0 {
			ratio := ab.Steps[0].P50 / tf.Steps[0].P50
			floor.Known, floor.Met = true, ratio <= 3
			floor.Measured = fmt.Sprintf("%.1f× (%.1f ms vs %.1f ms at %.0f/s)", ratio, ab.Steps[0].P50, tf.Steps[0].P50, ab.Steps[0].Rate)
		}
		out = append(out, floor)

		peer := target{Goal: fmt.Sprintf("%s: at equal p99 bound (100 ms), throughput ≥ 1.5× the Watermill peer's", mixName)}
		if wm, ok := findSeries(r.Series, nameWatermill, mixName); ok && okAB {
			peer.Known = true
			if wm.MaxSustained > 0 {
				ratio := ab.MaxSustained / wm.MaxSustained
				peer.Met = ratio >= 1.5
				peer.Measured = fmt.Sprintf("%.2f× (%.0f /s vs %.0f /s)", ratio, ab.MaxSustained, wm.MaxSustained)
			} else {
				peer.Met = ab.MaxSustained > 0
				peer.Measured = fmt.Sprintf("%.0f /s vs none sustained", ab.MaxSustained)
			}
		}
		out = append(out, peer)

		embedded := target{Goal: fmt.Sprintf("%s: embedded default (kfake) p50 ≤ 3 ms", mixName)}
		if em, ok := findSeries(r.Series, nameEmbedded, mixName); ok && len(em.Steps) > 0 {
			embedded.Known, embedded.Met = true, em.Steps[0].P50 <= 3
			embedded.Measured = fmt.Sprintf("%.1f ms at %.0f/s", em.Steps[0].P50, em.Steps[0].Rate)
		}
		out = append(out, embedded)
	}
	return out
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

func lastRate(s series) float64 {
	if len(s.Steps) == 0 {
		return 0
	}
	return s.Steps[len(s.Steps)-1].Rate
}

// writeTargets renders the targets as a table.
func writeTargets(b *strings.Builder, ts []target) {
	if len(ts) == 0 {
		return
	}
	b.WriteString("## Targets\n\nThe performance issue's targets for a 2-core machine running broker, PostgreSQL, services and load generator together (real Kafka, exactly-once on), against this run.\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range ts {
		verdict := "not measured"
		if t.Known {
			verdict = map[bool]string{true: "met", false: "**missed**"}[t.Met]
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", t.Goal, t.Measured, verdict)
	}
	b.WriteString("\n")
}

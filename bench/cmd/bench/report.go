package main

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// results is everything one run measured (docs/bench/results.json).
type results struct {
	Machine string `json:"machine"`
	// Code is the commit the run measured (sourceState).
	Code string `json:"code,omitempty"`
	// CommitMs is PostgreSQL's median one-row commit at the start (fsync).
	CommitMs float64 `json:"commitMs,omitempty"`
	Kafka    string  `json:"kafka"`
	Quick    bool    `json:"quick"`
	Plan     plan    `json:"plan"`
	Took     string  `json:"took"`
	// Finished is when the run ended: the report's date, also when it is
	// rendered again later.
	Finished time.Time `json:"finished"`
	Series   []series  `json:"series"`
	// Broker is how the Apache Kafka broker ran and was warmed up.
	Broker brokerInfo `json:"broker"`
	// Stages splits the round trips of Answerback and the embedded default
	// at no load.
	Stages      []stageProbe   `json:"stages"`
	ScalingPlan scalingPlan    `json:"scalingPlan"`
	Scaling     []scalingPoint `json:"scaling"`
	// Baseline is the commit -baseline named, whose Answerback the run
	// measured beside its own; "" when none.
	Baseline string `json:"baseline,omitempty"`
	// Targets compares the run with the performance issue's targets.
	Targets []target `json:"targets"`
	// Profiles show where Answerback's processes spend their CPU under load.
	Profiles   []profileRun `json:"profiles"`
	ProfileDir string       `json:"-"` // the raw profiles, relative to the report
	// Plots are the PNG files drawn from the run, relative to the report.
	Plots []string `json:"-"`
}

// brokerInfo is how the run's Apache Kafka broker ran.
type brokerInfo struct {
	JVM string `json:"jvm"` // java -version's first line
	// JITFlags are the JVM flags that chose the broker's JIT; none: the
	// JVM's default tiered compilation (C1, then C2 for hot code).
	JITFlags []string `json:"jitFlags"`
	Plan     warmPlan `json:"warmUpPlan"`
	// WarmedWith is the system that drove the warm-up, WarmUp its rounds;
	// empty when no system measured ran on the broker.
	WarmedWith string      `json:"warmedWith,omitempty"`
	WarmUp     []warmRound `json:"warmUp,omitempty"`
}

// markdown renders the run as docs/BENCHMARKS.md.
func (r results) markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	code := "an unrecorded commit"
	if r.Code != "" {
		code = "commit " + r.Code
	}
	fmt.Fprintf(&b, "Written by `make bench` (`bench/cmd/bench`) on %s in %s, measuring %s%s.\n\n", r.Finished.Format("2006-01-02 15:04 UTC"), r.Took, code,
		map[bool]string{true: " — a BENCH_QUICK smoke run, not figures to quote", false: ""}[r.Quick])
	fmt.Fprintf(&b, "Machine: %s, shared by everything below: Apache Kafka %s (one broker, real, exactly-once transactions on), PostgreSQL (fsync on), the services and the load generator.", r.Machine, r.Kafka)
	if r.CommitMs > 0 {
		fmt.Fprintf(&b, " A one-row PostgreSQL commit took %.2f ms (median of 200 at the start): the disk's fsync, which moves every figure below and varies on this shared host.", r.CommitMs)
	}
	b.WriteString("\n\n")
	b.WriteString("Every system serves `POST /v1/orders/{id}/items` (add one unit of a SKU; answer 200 with the order and the catalog items still valid for it — 50 SKUs) and is driven **open-loop**: requests start at fixed intended times and latency counts from the intended start, so queueing shows (no coordinated omission). ")
	warmed := "the broker is warmed up first (Answerback at 100/s, unrecorded)"
	if r.Broker.WarmedWith != "" {
		warmed = "the broker is warmed up first (see Broker)"
	}
	fmt.Fprintf(&b, "Each series warms up for %s at 50/s; then rates step up (%s each) until one is not sustained: p99 over %s, or any error. Each system runs alone: started before its series and stopped after them; %s. The machine is shared and noisy: runs differ by tens of percent, more at the tail.\n\n", r.Plan.WarmUp, r.Plan.Step, r.Plan.P99Bound, warmed)
	b.WriteString("Each step also says what a command cost: the CPU time of every process per answered command — each service, the broker, the PostgreSQL backends serving the system's database, and the load generator apart — read from /proc around the step, and the requests the broker served per answered command, by API, as the broker itself counted them (Apache Kafka: its `kafka.network:type=RequestMetrics,name=RequestsPerSec` meters, read over JMX between steps; the embedded kfake broker: devstack's `answerback_embedded_broker_requests_total`). The systems built into the bench binary each run in a process of their own, apart from the load generator.\n\n")
	b.WriteString("- **Answerback**: gateway ×2 behind a round-robin load balancer → commands topic → aggregator (one transaction per batch) → events topic → projector (one PostgreSQL transaction per batch) → reply topic → gateway; each service a separate process.\n")
	b.WriteString("- **Answerback, embedded (kfake)**: the embedded default behind `make run` — the same services and two gateways behind a load balancer in one process, on franz-go's in-process kfake broker instead of Apache Kafka, and the same PostgreSQL.\n")
	b.WriteString("- **exactly-once floor**: Answerback's round trip with its guarantees and nothing more, built directly on franz-go and pgx in one process: the command produced, decided from state in memory with events, snapshots and offsets in one Kafka transaction, projected with its offsets in one PostgreSQL transaction that derives the reply, the reply produced after the commit; on Apache Kafka, and on an in-process kfake broker (**exactly-once floor, embedded (kfake)**).\n")
	b.WriteString("- **transport floor**: the same three Kafka hops and one PostgreSQL commit per batch, no processing (no transaction, state, view or derived reply), in one process.\n")
	b.WriteString("- **monolith floor**: one HTTP handler deciding the same command with the same domain code and building the same reply in one PostgreSQL transaction, no Kafka.\n")
	b.WriteString("- **Watermill peer**: the same flow built with Watermill (`cqrs` and `requestreply` over `watermill-kafka`, i.e. Sarama), in one process: command bus → command handler (state in a PostgreSQL table, one transaction per command) → event bus → event handler (one PostgreSQL transaction per event, reply built from the view) → request-reply backend → HTTP handler; the same domain code, view and topics partitioned alike.\n\n")
	writeTargets(&b, r.Targets)
	writeRegression(&b, r)
	writeBroker(&b, r.Kafka, r.Broker)
	writeStages(&b, r.Stages)
	for _, mixName := range mixNames(r.Series) {
		fmt.Fprintf(&b, "## %s\n\n", mixName)
		b.WriteString("| system | offered /s | answered /s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | dropped |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Series {
			if s.Mix != mixName {
				continue
			}
			for _, st := range s.Steps {
				fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %d |\n", s.System, st.Rate, st.Throughput, st.P50, st.P90, st.P99, st.P999, st.Max, st.Errors, st.Dropped)
			}
		}
		writeRequests(&b, r.Series, mixName)
		for _, s := range r.Series {
			if s.Mix == mixName {
				writeCost(&b, s)
			}
		}
		b.WriteString("\n| system | highest rate sustained (p99 ≤ bound, no error) |\n|---|---|\n")
		for _, s := range r.Series {
			if s.Mix == mixName {
				fmt.Fprintf(&b, "| %s | %.0f /s |\n", s.System, s.MaxSustained)
			}
		}
		b.WriteString("\n")
	}
	writeScaling(&b, r.ScalingPlan, r.Scaling)
	writeProfiles(&b, r.Profiles, r.ProfileDir)
	if len(r.Plots) > 0 {
		b.WriteString("## Plots\n\n")
		for _, p := range r.Plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(filepath.Base(p), ".png"), p)
		}
	}
	b.WriteString("Raw results, with each step's latency CDF: `docs/bench/results.json`.\n")
	return b.String()
}

func mixNames(ss []series) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s.Mix] {
			seen[s.Mix] = true
			out = append(out, s.Mix)
		}
	}
	return out
}

// writeCost renders what each of s's processes spent per answered
// command: CPU ms (and peak resident memory), the system's total (its
// processes, the broker and PostgreSQL) and the load generator's apart.
func writeCost(b *strings.Builder, s series) {
	var components []string
	loadgen := false
	for _, st := range s.Steps {
		for c := range st.Cost {
			if c == loadgenComponent {
				loadgen = true
			} else if !slices.Contains(components, c) {
				components = append(components, c)
			}
		}
	}
	if len(components) == 0 {
		return
	}
	slices.SortFunc(components, byComponent)
	fmt.Fprintf(b, "\n%s — CPU ms per command, by process (peak memory MiB):\n\n| offered /s | %s | system total |", s.System, strings.Join(components, " | "))
	if loadgen {
		b.WriteString(" load generator |")
	}
	fmt.Fprintf(b, "\n|---|%s---|%s\n", strings.Repeat("---|", len(components)), map[bool]string{true: "---|", false: ""}[loadgen])
	for _, st := range s.Steps {
		fmt.Fprintf(b, "| %.0f |", st.Rate)
		var total float64
		for _, c := range components {
			cost, ok := st.Cost[c]
			if !ok {
				b.WriteString(" — |")
				continue
			}
			total += cost.CPUSecondsPer1000
			fmt.Fprintf(b, " %.2f (%.0f) |", cost.CPUSecondsPer1000, cost.PeakRSSMiB)
		}
		fmt.Fprintf(b, " **%.2f** |", total)
		if loadgen {
			if cost, ok := st.Cost[loadgenComponent]; ok {
				fmt.Fprintf(b, " %.2f (%.0f) |", cost.CPUSecondsPer1000, cost.PeakRSSMiB)
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
}

// byComponent orders a system's processes first, by name, then the broker
// and PostgreSQL.
func byComponent(a, b string) int {
	rank := func(c string) int { return map[string]int{"kafka": 1, "postgres": 2}[c] }
	return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b))
}

// mainAPIs are the broker APIs the report shows one by one; the others are
// summed.
var mainAPIs = []string{"Produce", "Fetch", "EndTxn", "AddPartitionsToTxn", "AddOffsetsToTxn", "TxnOffsetCommit",
	"Heartbeat", "WriteTxnMarkers", "OffsetCommit", "Metadata"}

// writeRequests renders the broker requests per command of every step of
// mix mixName that has them, by API.
func writeRequests(b *strings.Builder, ss []series, mixName string) {
	var rows strings.Builder
	var others []string
	for _, s := range ss {
		if s.Mix != mixName {
			continue
		}
		for _, st := range s.Steps {
			if st.BrokerRequests == nil {
				continue
			}
			fmt.Fprintf(&rows, "| %s | %.0f |", s.System, st.Rate)
			for _, api := range mainAPIs {
				fmt.Fprintf(&rows, " %s |", perCommand(st.BrokerRequests[api]))
			}
			var rest float64
			for api, n := range st.BrokerRequests {
				if !slices.Contains(mainAPIs, api) {
					rest += n
					if !slices.Contains(others, api) {
						others = append(others, api)
					}
				}
			}
			fmt.Fprintf(&rows, " %s | **%.2f** |\n", perCommand(rest), sumValues(st.BrokerRequests))
		}
	}
	if rows.Len() == 0 {
		return
	}
	b.WriteString("\nBroker requests per command, by API, as the broker counted them")
	if len(others) > 0 {
		slices.Sort(others)
		fmt.Fprintf(b, " (others: %s)", strings.Join(others, ", "))
	}
	fmt.Fprintf(b, ":\n\n| system | offered /s | %s | others | total |\n|---|---|%s---|---|\n%s", strings.Join(mainAPIs, " | "), strings.Repeat("---|", len(mainAPIs)), rows.String())
}

// perCommand renders a number of requests per command; "·" for none.
func perCommand(n float64) string {
	if n == 0 {
		return "·"
	}
	return fmt.Sprintf("%.2f", n)
}

// writeBroker renders how the broker ran: its JVM, its JIT and how it was
// warmed up.
func writeBroker(b *strings.Builder, kafka string, bi brokerInfo) {
	if bi.JVM == "" {
		return
	}
	jit := "the JVM's default (tiered: C1, then C2 for hot code), as production runs it"
	if len(bi.JITFlags) > 0 {
		jit = "`" + strings.Join(bi.JITFlags, " ") + "`"
	}
	fmt.Fprintf(b, "## Broker\n\nApache Kafka %s on %s; JIT: %s.", kafka, bi.JVM, jit)
	if len(bi.WarmUp) == 0 {
		b.WriteString(" It was not warmed up: no system measured ran on it.\n\n")
		return
	}
	p := bi.Plan
	fmt.Fprintf(b, " Before the first series, %s drove it at %.0f commands/s in rounds of %s until its CPU time per command fell by less than %.0f%% from one round to the next (%d rounds at least, %d at most):\n\n",
		bi.WarmedWith, p.Rate, p.Round, p.Tolerance*100, p.MinRounds, p.MaxRounds)
	b.WriteString("| round | answered | errors | p50 ms | broker CPU ms per command |\n|---|---|---|---|---|\n")
	for i, w := range bi.WarmUp {
		fmt.Fprintf(b, "| %d | %d | %d | %.1f | %.3f |\n", i+1, w.OK, w.Errors, w.P50, w.BrokerCPUMs)
	}
	b.WriteString("\n")
}

// writeStages renders where the round trips of Answerback and of the
// embedded default spend their time.
func writeStages(b *strings.Builder, probes []stageProbe) {
	if len(probes) == 0 {
		return
	}
	b.WriteString("## Where the time goes\n\nThe round trip at no load (commands one after the other on one order), split by the timestamps of the records each command leaves: the command (stamped by the gateway), its first event (by the aggregator) and the reply (by the projector).\n\n")
	for _, p := range probes {
		fmt.Fprintf(b, "%s, %d commands:\n\n| stage | p50 ms | p90 ms | what happens |\n|---|---|---|---|\n", cmp.Or(p.System, nameAnswerback), p.Commands)
		for _, s := range p.Stages {
			fmt.Fprintf(b, "| %s | %.1f | %.1f | %s |\n", s.Name, ms(s.P50), ms(s.P90), s.What)
		}
		b.WriteString("\n")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeScaling renders the scaling matrix: the highest rate each layout
// sustained, and its p50 at the first rate.
func writeScaling(b *strings.Builder, sp scalingPlan, points []scalingPoint) {
	if len(points) == 0 {
		return
	}
	fmt.Fprintf(b, "## Scaling: partitions × instances\n\nAnswerback alone on the machine, a fresh deployment per cell (own topics and database), aggregators and projectors %v instances each, spread over %d orders; rates %v/s, %s each after %s of warm-up, stepped up until p99 over %s or an error.\n\n", sp.Instances, sp.Orders, sp.Rates, sp.Step, sp.WarmUp, sp.P99Bound)
	b.WriteString("| partitions | instances | highest rate sustained /s | p50 ms at the first rate | p99 ms at the first rate |\n|---|---|---|---|---|\n")
	for _, p := range points {
		var p50, p99 float64
		if len(p.Steps) > 0 {
			p50, p99 = p.Steps[0].P50, p.Steps[0].P99
		}
		fmt.Fprintf(b, "| %d | %d | %.0f | %.1f | %.1f |\n", p.Partitions, p.Instances, p.MaxSustained, p50, p99)
	}
	b.WriteString("\n")
}

// writeRegression compares Answerback with its build from the baseline
// commit, measured in the same run, mix by mix: the highest rate sustained,
// p50 at 100/s and the system's CPU per command at 100/s.
func writeRegression(b *strings.Builder, r results) {
	var base string
	for _, s := range r.Series {
		if strings.HasPrefix(s.System, nameAnswerback+" at ") {
			base = s.System
		}
	}
	if base == "" {
		return
	}
	fmt.Fprintf(b, "## Against the baseline\n\nAnswerback against itself as built from `%s` (%s), measured right after it in this run, on the same broker and PostgreSQL. One run on a shared machine: differences of tens of percent are noise (see the Latency notes).\n\n", r.Baseline, strings.TrimPrefix(base, nameAnswerback+" at "))
	b.WriteString("| mix | highest sustained | baseline's | p50 at 100/s ms | baseline's | CPU ms per command at 100/s | baseline's |\n|---|---|---|---|---|---|---|\n")
	for _, mixName := range mixNames(r.Series) {
		now, okNow := findSeries(r.Series, nameAnswerback, mixName)
		then, okThen := findSeries(r.Series, base, mixName)
		if !okNow || !okThen {
			continue
		}
		p50 := func(s series) string {
			if st, ok := stepAt(s, 100); ok {
				return fmt.Sprintf("%.1f", st.P50)
			}
			return "—"
		}
		cpu := func(s series) string {
			if c, ok := cpuAt(s, 100); ok {
				return fmt.Sprintf("%.2f", c)
			}
			return "—"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", mixName, perSecond(now.MaxSustained), perSecond(then.MaxSustained), p50(now), p50(then), cpu(now), cpu(then))
	}
	b.WriteString("\n")
}

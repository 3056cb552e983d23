// Command bench measures Answerback's synchronous round trip open-loop at
// fixed arrival rates, beside the floors of the same machine: the
// exactly-once floor (the same guarantees built directly on franz-go and
// pgx), the transport floor (three plain produce→consume hops and one
// PostgreSQL commit) and the monolith floor (one HTTP handler applying the
// same command and building the same reply in one PostgreSQL transaction),
// and beside a peer: the same flow built with Watermill's CQRS and
// request-reply over Kafka. It starts a real Apache Kafka broker and a real
// PostgreSQL, runs the services as processes behind a load balancer and each
// system built into the bench in a process of its own, and writes the
// tables to docs/BENCHMARKS.md and the raw results to
// docs/bench/results.json. Each step reports its latency, the CPU time per
// command of every process and the broker's requests per command by API.
//
//	make bench             # the default run
//	BENCH_QUICK=1 make bench   # a one-minute smoke (CI)
//	make bench BENCH_FLAGS=-systems=transport,watermill   # only some systems
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/answerback/answerback/bench/loadgen"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) > 1 && os.Args[1] == childCommand { // a system's own process (child.go)
		if len(os.Args) != 3 {
			fmt.Fprintf(os.Stderr, "usage: %s %s <spec JSON>\n", os.Args[0], childCommand)
			os.Exit(2)
		}
		if err := serveChild(os.Args[2], os.Stdout, log.With("process", "child")); err != nil {
			log.Error("child failed", "err", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	flag.StringVar(&cfg.root, "root", "..", "the repository's root folder (services are built from it)")
	flag.StringVar(&cfg.cache, "kafka-cache", os.Getenv("KAFKA_JARS_CACHE"), "folder of the Apache Kafka jars")
	flag.StringVar(&cfg.report, "report", "", "write the Markdown report here (default: <root>/docs/BENCHMARKS.md)")
	flag.StringVar(&cfg.results, "results", "", "write the raw results here (default: <root>/docs/bench/results.json)")
	flag.BoolVar(&cfg.quick, "quick", os.Getenv("BENCH_QUICK") != "", "a one-minute smoke run (env BENCH_QUICK)")
	flag.BoolVar(&cfg.skipScaling, "no-scaling", false, "leave out the partitions × instances matrix (it comes with answerback otherwise)")
	rates := flag.String("rates", "", "the offered rates to step through, comma-separated (default: the plan's), e.g. 500,1000,1500: to look closer at some")
	flag.BoolVar(&cfg.stagesOnly, "stages-only", false, "only split the round trip of Answerback and the embedded default (those selected) by stage at no load, print it and stop")
	flag.BoolVar(&cfg.profileOnly, "profile-only", false, "only profile Answerback's processes and the broker under load (spread mix), print where the CPU goes and stop; raw profiles in <results folder>/profiles")
	flag.BoolVar(&cfg.renderOnly, "render", false, "measure nothing: write the plots and report of the raw results file (-results) again")
	flag.BoolVar(&cfg.dataSizeOnly, "data-size-only", false, "only time the reply query against views of 10k and 1M orders and catalogs of 10, 1k and 100k items; write <results folder>/data-size.md")
	flag.StringVar(&cfg.baseline, "baseline", "", "also measure Answerback as built from this commit (a git worktree), right after the run's own, and compare them: a regression check in the same run")
	systems := flag.String("systems", strings.Join(systemKeys, ","), "the systems to measure, comma-separated, among "+strings.Join(systemKeys, ", ")+
		" (the stage probe and the scaling matrix come with answerback)")
	flag.Parse()
	var err error
	if cfg.rates, err = parseRates(*rates); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if cfg.systems, err = parseSystems(*systems); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if cfg.report == "" {
		cfg.report = filepath.Join(cfg.root, "docs", "BENCHMARKS.md")
	}
	if cfg.results == "" {
		cfg.results = filepath.Join(cfg.root, "docs", "bench", "results.json")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.renderOnly {
		if err := render(cfg); err != nil {
			log.Error("render failed", "err", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, cfg, log); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

type config struct {
	root, cache, report, results string
	quick, stagesOnly            bool
	rates                        []float64 // replaces the plan's when set
	skipScaling                  bool
	dataSizeOnly, profileOnly    bool
	renderOnly                   bool
	systems                      map[string]bool // by key (systemKeys) → measured
	// baseline, when set, is a commit whose Answerback is measured right
	// after the run's own (startBaseline): a regression check.
	baseline string
}

// systemKeys name the systems the -systems flag selects, in the order they
// run. Those besides answerback and embedded are built into the bench
// binary (childSystems).
var systemKeys = []string{"answerback", "embedded", "eosfloor", "eosfloor-embedded", "transport", "monolith", "watermill"}

// baselineKey is the system -baseline adds, measured right after answerback.
const baselineKey = "baseline"

// parseRates reads the -rates flag: positive numbers, comma-separated,
// rising; "" is none.
func parseRates(list string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || len(out) > 0 && r <= out[len(out)-1] {
			return nil, fmt.Errorf("-rates: %q is not a rate above the one before it", f)
		}
		out = append(out, r)
	}
	return out, nil
}

func parseSystems(list string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "" {
			continue
		}
		if !slices.Contains(systemKeys, k) {
			return nil, fmt.Errorf("-systems: unknown system %q (known: %s)", k, strings.Join(systemKeys, ", "))
		}
		out[k] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-systems: no system selected (known: %s)", strings.Join(systemKeys, ", "))
	}
	return out, nil
}

// plan is what one run measures.
type plan struct {
	Rates    []float64     `json:"rates"`    // offered rates, stepped up until one is not sustained
	Step     time.Duration `json:"step"`     // length of each rate step
	WarmUp   time.Duration `json:"warmUp"`   // at 50/s before the first step of each series
	P99Bound time.Duration `json:"p99Bound"` // a rate is sustained when p99 stays under it with no error
}

func planFor(quick bool) plan {
	if quick {
		return plan{Rates: []float64{100, 300}, Step: 5 * time.Second, WarmUp: 2 * time.Second, P99Bound: 100 * time.Millisecond}
	}
	// Steps of 250/s up to 1,500/s, then 500/s: the highest sustained rate
	// is judged against the targets' 1,000/s and 2,000/s and the floors'
	// rates. Ten steps of 6 s take a series at most 4 s longer than the
	// seven of 8 s before them, and one that stops early less time.
	return plan{Rates: []float64{100, 250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000}, Step: 6 * time.Second, WarmUp: 8 * time.Second, P99Bound: 100 * time.Millisecond}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	started := time.Now()
	p := planFor(cfg.quick)
	if len(cfg.rates) > 0 {
		p.Rates = cfg.rates
	}
	if cfg.profileOnly && !cfg.systems["answerback"] {
		return fmt.Errorf("-profile-only measures Answerback: select answerback in -systems")
	}
	if cfg.stagesOnly && !cfg.systems["answerback"] && !cfg.systems["embedded"] {
		return fmt.Errorf("-stages-only splits the round trip of Answerback or the embedded default: select answerback or embedded in -systems")
	}
	env, err := startInfra(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer env.stop()

	if cfg.dataSizeOnly {
		points, err := measureDataSize(ctx, env, []int{10_000, 1_000_000}, []int{10, 1_000, 100_000}, log)
		if err != nil {
			return err
		}
		var b strings.Builder
		b.WriteString("# Benchmarks: data size\n\n")
		fmt.Fprintf(&b, "Written by `make bench-data` on %s. Machine: %s; PostgreSQL with fsync on.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), describeMachine())
		writeDataSize(&b, points)
		fmt.Print(b.String())
		if err := os.MkdirAll(filepath.Dir(cfg.results), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(filepath.Dir(cfg.results), "data-size.md"), []byte(b.String()), 0o644)
	}
	profileDir := filepath.Join(filepath.Dir(cfg.results), "profiles")
	// profile runs Answerback under a steady load with its processes and the
	// broker profiled.
	profile := func(ab *system) (profileRun, error) {
		rate, warm, d := 200.0, 30*time.Second, 10*time.Second
		if cfg.quick {
			rate, warm, d = 100, 3*time.Second, 4*time.Second
		}
		if !cfg.profileOnly {
			warm = 5 * time.Second // the series before warmed the broker up
		}
		return profileUnderLoad(ctx, ab, mixes[0], rate, warm, d, profileDir, log)
	}
	if cfg.profileOnly {
		ab, err := startAnswerback(ctx, env, cfg, defaultLayout, log)
		if err != nil {
			return err
		}
		defer ab.stop()
		run, err := profile(ab)
		if err != nil {
			return err
		}
		var b strings.Builder
		writeProfiles(&b, []profileRun{run}, profileDir)
		fmt.Print(b.String())
		return nil
	}
	probeCommands := map[bool]int{true: 50, false: 300}[cfg.quick]
	if cfg.stagesOnly {
		var b strings.Builder
		for _, s := range []struct {
			key   string
			start func() (*system, error)
		}{
			{"answerback", func() (*system, error) { return startAnswerback(ctx, env, cfg, defaultLayout, log) }},
			{"embedded", func() (*system, error) { return startEmbedded(ctx, env, cfg, log) }},
		} {
			if !cfg.systems[s.key] {
				continue
			}
			sys, err := s.start()
			if err != nil {
				return err
			}
			probe, err := probeStages(ctx, sys, probeCommands)
			sys.stop()
			if err != nil {
				return fmt.Errorf("stage probe: %w", err)
			}
			writeStages(&b, []stageProbe{probe})
		}
		fmt.Print(b.String())
		return nil
	}

	// Each system runs alone: started before its series and stopped after
	// them, so that no other system's idle clients take the machine's CPU.
	res := results{Machine: describeMachine(), Code: sourceState(ctx, cfg.root), Plan: p, Kafka: env.kafkaVersion, Quick: cfg.quick,
		Broker: brokerInfo{JVM: javaVersion(ctx), JITFlags: env.broker.JITFlags(), Plan: warmPlanFor(cfg.quick)}}
	commit, err := env.commitLatency(ctx, 200)
	if err != nil {
		return fmt.Errorf("PostgreSQL commit probe: %w", err)
	}
	res.CommitMs = ms(commit)
	log.Info("PostgreSQL commit latency", "p50", commit)
	start := func(key string) (*system, error) {
		switch key {
		case "answerback":
			return startAnswerback(ctx, env, cfg, defaultLayout, log)
		case "embedded":
			return startEmbedded(ctx, env, cfg, log)
		case baselineKey:
			return startBaseline(ctx, env, cfg, log)
		}
		return startChildSystem(ctx, env, key)
	}
	order := slices.Clone(systemKeys)
	if cfg.baseline != "" && cfg.systems["answerback"] {
		order = slices.Insert(order, slices.Index(order, "answerback")+1, baselineKey)
		cfg.systems[baselineKey] = true
		res.Baseline = cfg.baseline
	}
	for _, key := range order {
		if !cfg.systems[key] {
			continue
		}
		sys, err := start(key)
		if err != nil {
			return err
		}
		sys.stop = sync.OnceFunc(sys.stop) // stopped after its series, or on the way out
		defer sys.stop()
		if res.Broker.WarmedWith == "" && sys.pids()["kafka"] > 0 {
			// A young broker runs interpreted or lightly compiled code and
			// compiles besides: the first system measured would pay for it.
			if res.Broker.WarmUp, err = warmBroker(ctx, sys, res.Broker.Plan, log); err != nil {
				return fmt.Errorf("broker warm-up: %w", err)
			}
			res.Broker.WarmedWith = sys.name
		}
		if sys.stageSource != nil {
			probe, err := probeStages(ctx, sys, probeCommands)
			if err != nil {
				return fmt.Errorf("%s: stage probe: %w", sys.name, err)
			}
			res.Stages = append(res.Stages, probe)
		}
		for _, mix := range mixes {
			series, err := measure(ctx, sys, mix, p, log)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", sys.name, mix.name, err)
			}
			res.Series = append(res.Series, series)
		}
		if key == "answerback" {
			run, err := profile(sys)
			if err != nil {
				return fmt.Errorf("profile: %w", err)
			}
			res.Profiles = append(res.Profiles, run)
		}
		sys.stop()
	}
	if cfg.systems["answerback"] && !cfg.skipScaling {
		sp := scalingPlanFor(cfg.quick)
		if res.Scaling, err = measureScaling(ctx, env, cfg, sp, log); err != nil {
			return err
		}
		res.ScalingPlan = sp
	}
	res.Finished = time.Now().UTC().Truncate(time.Minute)
	res.Took = res.Finished.Sub(started).Round(time.Second).String()
	return writeOutputs(res, cfg)
}

// sourceState names the commit of the checkout at root that the run builds
// and measures — with "and uncommitted changes to …" when the product's
// code differs from it — or says why it cannot.
func sourceState(ctx context.Context, root string) string {
	head, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown (git rev-parse: " + err.Error() + ")"
	}
	state := strings.TrimSpace(string(head))
	dirty, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--", "libs", "services", "bench", "deploy/local").Output()
	if err != nil {
		return state + " (uncommitted changes unknown: " + err.Error() + ")"
	}
	if strings.TrimSpace(string(dirty)) != "" {
		var files []string
		for _, line := range strings.Split(string(dirty), "\n") {
			if len(line) > 3 { // "XY path"
				files = append(files, line[3:])
			}
		}
		state += " and uncommitted changes to " + strings.Join(files, ", ")
	}
	return state
}

// warmPlan is how the broker is warmed up before the first series: rounds
// at a steady rate until its CPU time per command stops falling.
type warmPlan struct {
	Rate      float64       `json:"rate"`
	Round     time.Duration `json:"round"`
	MinRounds int           `json:"minRounds"`
	MaxRounds int           `json:"maxRounds"`
	// Tolerance: warm once a round's broker CPU per command fell by less
	// than this fraction from the round before.
	Tolerance float64 `json:"tolerance"`
}

func warmPlanFor(quick bool) warmPlan {
	if quick {
		return warmPlan{Rate: 100, Round: 3 * time.Second, MinRounds: 3, MaxRounds: 8, Tolerance: 0.1}
	}
	return warmPlan{Rate: 100, Round: 15 * time.Second, MinRounds: 4, MaxRounds: 12, Tolerance: 0.05}
}

// warmRound is one round of the broker's warm-up.
type warmRound struct {
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
	OK      int     `json:"ok"`
	Errors  int     `json:"errors"`
	P50     float64 `json:"p50Ms"`
	// BrokerCPUMs is the broker's CPU time per answered command, ms.
	BrokerCPUMs float64 `json:"brokerCpuMsPerCommand"`
}

// warmBroker drives sys, a system on the run's broker, with wp's rounds on
// orders of its own until the broker is warm (warmedUp), and returns the
// rounds.
func warmBroker(ctx context.Context, sys *system, wp warmPlan, log *slog.Logger) ([]warmRound, error) {
	orders, err := createOrders(ctx, sys, mix{name: "warm-up", orders: 100}, "warm")
	if err != nil {
		return nil, err
	}
	steps := newStepper(sys, log)
	steps.countRequests = false
	var rounds []warmRound
	sent := 0
	for len(rounds) < wp.MaxRounds {
		if len(rounds) >= wp.MinRounds && warmedUp(rounds, wp.Tolerance) {
			break
		}
		r := steps.run(ctx, loadgen.Options{Rate: wp.Rate, Duration: wp.Round}, addItem(sys, orders, sent))
		if err := ctx.Err(); err != nil {
			return rounds, err
		}
		sent += r.Sent
		rounds = append(rounds, warmRound{Seconds: r.Seconds, Rate: r.Rate, OK: r.OK, Errors: r.Errors, P50: r.P50, BrokerCPUMs: r.Cost["kafka"].CPUSecondsPer1000})
		log.Info("broker warm-up", "system", sys.name, "round", len(rounds), "ok", r.OK, "errors", r.Errors, "p50", r.P50,
			"brokerCpuMsPerCommand", fmt.Sprintf("%.3f", rounds[len(rounds)-1].BrokerCPUMs))
	}
	return rounds, nil
}

// warmedUp reports whether the broker's CPU time per command stopped
// falling: the last round's fell by less than tolerance (a fraction) from
// the round before, or rose.
func warmedUp(rounds []warmRound, tolerance float64) bool {
	n := len(rounds)
	if n < 2 {
		return false
	}
	prev, last := rounds[n-2].BrokerCPUMs, rounds[n-1].BrokerCPUMs
	return last >= prev*(1-tolerance)
}

// writeOutputs writes a run's raw results, plots and report; the targets
// are judged here, so that a report rendered again judges them anew.
func writeOutputs(res results, cfg config) error {
	res.Targets = checkTargets(res)
	if err := os.MkdirAll(filepath.Dir(cfg.results), 0o755); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(cfg.results, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	plotDir := filepath.Dir(cfg.results)
	var err error
	if res.Plots, err = writePlots(res, plotDir); err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	if len(res.Scaling) > 0 {
		if err := plotScaling(res.Scaling, filepath.Join(plotDir, "throughput-vs-partitions.png")); err != nil {
			return fmt.Errorf("plots: %w", err)
		}
		res.Plots = append(res.Plots, "throughput-vs-partitions.png")
	}
	profileDir := filepath.Join(plotDir, "profiles")
	res.ProfileDir = profileDir // named from the repository's root in the report
	if rel, err := filepath.Rel(cfg.root, profileDir); err == nil {
		res.ProfileDir = filepath.ToSlash(rel)
	}
	if rel, err := filepath.Rel(filepath.Dir(cfg.report), plotDir); err == nil {
		for i, name := range res.Plots {
			res.Plots[i] = filepath.ToSlash(filepath.Join(rel, name))
		}
	}
	report := res.markdown()
	fmt.Println(report)
	return os.WriteFile(cfg.report, []byte(report), 0o644)
}

// render writes the plots and report of the raw results in cfg.results
// again, without measuring: after a change to the report.
func render(cfg config) error {
	raw, err := os.ReadFile(cfg.results)
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("%s: %w", cfg.results, err)
	}
	return writeOutputs(res, cfg)
}

package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"

	"github.com/answerback/answerback/bench/loadgen"
)

// profileRun is where Answerback's processes spend their CPU under a steady
// load: Go's CPU profile of each service (pprof) and the broker's Java
// execution samples (JFR), taken together during one run at a fixed rate.
type profileRun struct {
	System    string           `json:"system"`
	Mix       string           `json:"mix"`
	Result    loadgen.Result   `json:"result"` // the load while profiling
	Processes []processProfile `json:"processes"`
}

// processProfile is one process's profile, summarized.
type processProfile struct {
	Process string `json:"process"`
	Kind    string `json:"kind"` // "Go CPU profile" or "JFR execution samples"
	// CPUSeconds is the CPU time the profile saw (Go), or that the JVM's
	// threads used during it (jcmd Thread.print).
	CPUSeconds float64 `json:"cpuSeconds,omitempty"`
	Samples    int     `json:"samples"`
	File       string  `json:"file"` // the raw profile, beside results.json
	// Functions are the functions the CPU was in (self), largest first: of
	// the Go profile's CPU time, or of the JFR execution samples (which see
	// Java code only, not the time a thread spends in the kernel or the VM).
	Functions []share `json:"functions"`
	// Groups: Go, by package (self); the JVM, its threads' CPU time by
	// thread pool, the VM's own (GC, JIT) included.
	Groups []share `json:"groups"`
	// Requests (the broker) are the samples taken while a request handler
	// served a request, by the KafkaApis method that served it.
	Requests []share `json:"requests,omitempty"`
}

// share is a part of a profile's samples.
type share struct {
	Name    string  `json:"name"`
	Percent float64 `json:"percent"`
}

const profileTop = 8

// profileUnderLoad drives sys with mix m at rate for warm, then for d while
// it profiles every process of sys that serves Go's profiles (pprofAddrs)
// and the broker (JFR through jcmd); raw profiles go to dir. The warm-up
// lets the broker's JIT compile what the load runs: a young broker spends
// more CPU compiling than serving.
func profileUnderLoad(ctx context.Context, sys *system, m mix, rate float64, warm, d time.Duration, dir string, log *slog.Logger) (profileRun, error) {
	run := profileRun{System: sys.name, Mix: m.name}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return run, err
	}
	orders, err := createOrders(ctx, sys, m, "prof")
	if err != nil {
		return run, err
	}
	warmed := loadgen.Run(ctx, loadgen.Options{Rate: rate, Duration: warm}, addItem(sys, orders, 0))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	collect := func(p processProfile, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Process, err))
			return
		}
		run.Processes = append(run.Processes, p)
	}
	for _, name := range slices.Sorted(maps.Keys(sys.pprofAddrs)) {
		wg.Go(func() {
			p, err := goProfile(ctx, name, sys.pprofAddrs[name], d, dir)
			collect(p, err)
		})
	}
	if pid := sys.pids()["kafka"]; pid > 0 {
		wg.Go(func() {
			p, err := jfrProfile(ctx, "kafka", pid, d, dir)
			collect(p, err)
		})
	}
	// The load runs a little longer than the profiles, so they see it only.
	steps := newStepper(sys, log)
	steps.countRequests = false // the profiles run already: no JMX read (a JVM start) inside them
	run.Result = steps.run(ctx, loadgen.Options{Rate: rate, Duration: d + time.Second}, addItem(sys, orders, warmed.Sent))
	wg.Wait()
	slices.SortFunc(run.Processes, func(a, b processProfile) int { return cmp.Compare(a.Process, b.Process) })
	log.Info("profiled", "system", sys.name, "mix", m.name, "rate", rate, "ok", run.Result.OK, "p50", run.Result.P50, "p99", run.Result.P99, "processes", len(run.Processes))
	for _, e := range errs {
		log.Warn("profile missing", "err", e)
	}
	if len(run.Processes) == 0 {
		return run, fmt.Errorf("no profile taken: %w", errors.Join(errs...))
	}
	return run, nil
}

// goProfile takes a CPU profile of d from the pprof endpoint at addr.
func goProfile(ctx context.Context, name, addr string, d time.Duration, dir string) (processProfile, error) {
	p := processProfile{Process: name, Kind: "Go CPU profile", File: name + ".pb.gz"}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return p, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return p, err
	}
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(raw))
	}
	if err := os.WriteFile(filepath.Join(dir, p.File), raw, 0o644); err != nil {
		return p, err
	}
	prof, err := profile.ParseData(raw)
	if err != nil {
		return p, err
	}
	cpu := slices.IndexFunc(prof.SampleType, func(t *profile.ValueType) bool { return t.Type == "cpu" })
	if cpu < 0 {
		return p, fmt.Errorf("%s: no cpu samples in the profile", url)
	}
	functions, packages := map[string]float64{}, map[string]float64{}
	var total float64
	for _, s := range prof.Sample {
		v := float64(s.Value[cpu])
		total += v
		p.Samples++
		fn := leafFunction(s)
		functions[fn] += v
		packages[goPackage(fn)] += v
	}
	p.CPUSeconds = total / 1e9
	p.Functions, p.Groups = top(functions, total), top(packages, total)
	return p, nil
}

// leafFunction is the function a sample was taken in.
func leafFunction(s *profile.Sample) string {
	if len(s.Location) > 0 && len(s.Location[0].Line) > 0 && s.Location[0].Line[0].Function != nil {
		return s.Location[0].Line[0].Function.Name
	}
	return "(unknown)"
}

// goPackage is the import path of a Go function's package:
// "github.com/jackc/pgx/v5/pgconn.(*PgConn).Exec" → "github.com/jackc/pgx/v5/pgconn".
func goPackage(fn string) string {
	slash := strings.LastIndexByte(fn, '/')
	if dot := strings.IndexByte(fn[slash+1:], '.'); dot >= 0 {
		return fn[:slash+1+dot]
	}
	return fn
}

// jfrProfile records the JVM pid's execution samples for d with JDK Flight
// Recorder (jcmd JFR.start, the "profile" settings) and reads them back
// with the jfr tool.
func jfrProfile(ctx context.Context, name string, pid int, d time.Duration, dir string) (processProfile, error) {
	p := processProfile{Process: name, Kind: "JFR execution samples", File: name + ".jfr"}
	file, err := filepath.Abs(filepath.Join(dir, p.File))
	if err != nil {
		return p, err
	}
	_ = os.Remove(file)
	before, err := jvmThreadCPU(ctx, pid)
	if err != nil {
		return p, err
	}
	rec := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if out, err := exec.CommandContext(ctx, "jcmd", strconv.Itoa(pid), "JFR.start", "name="+rec, "settings=profile",
		fmt.Sprintf("duration=%ds", int(d.Seconds())), "filename="+file).CombinedOutput(); err != nil {
		return p, fmt.Errorf("jcmd JFR.start: %w: %s", err, out)
	}
	// The recording is written when its duration ends; the threads' CPU
	// time is read at the same moment.
	select {
	case <-ctx.Done():
		return p, ctx.Err()
	case <-time.After(d):
	}
	after, err := jvmThreadCPU(ctx, pid)
	if err != nil {
		return p, err
	}
	pools := map[string]float64{}
	for name, ms := range after {
		if spent := ms - before[name]; spent > 0 {
			pools[digits.ReplaceAllString(name, "N")] += spent
			p.CPUSeconds += spent / 1000
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := os.Stat(file); err == nil && st.Size() > 0 && time.Since(st.ModTime()) > time.Second {
			break
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("no recording in %s 30s after its end", file)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	out, err := exec.CommandContext(ctx, "jfr", "print", "--events", "jdk.ExecutionSample", "--stack-depth", "64", file).Output()
	if err != nil {
		return p, fmt.Errorf("jfr print: %w", err)
	}
	s := parseJFRSamples(out)
	p.Samples = s.n
	p.Functions, p.Requests = top(s.methods, float64(s.n)), top(s.requests, float64(s.n))
	p.Groups = top(pools, p.CPUSeconds*1000)
	return p, nil
}

// threadLine is a thread in `jcmd <pid> Thread.print`: its name and the CPU
// time it has used ("cpu=12.34ms"), VM threads (GC, JIT) included.
var threadLine = regexp.MustCompile(`^"(.+?)" .*\bcpu=([0-9.]+)ms`)

// jvmThreadCPU returns the CPU milliseconds each thread of JVM pid has used.
func jvmThreadCPU(ctx context.Context, pid int) (map[string]float64, error) {
	out, err := exec.CommandContext(ctx, "jcmd", strconv.Itoa(pid), "Thread.print").Output()
	if err != nil {
		return nil, fmt.Errorf("jcmd Thread.print: %w", err)
	}
	cpu := map[string]float64{}
	for line := range strings.Lines(string(out)) {
		if m := threadLine.FindStringSubmatch(line); m != nil {
			ms, _ := strconv.ParseFloat(m[2], 64)
			cpu[m[1]] += ms
		}
	}
	if len(cpu) == 0 {
		return nil, fmt.Errorf("jcmd Thread.print: no thread with its CPU time")
	}
	return cpu, nil
}

// digits finds the numbers in a thread's name: threads of one pool differ
// only there ("data-plane-kafka-request-handler-3").
var digits = regexp.MustCompile(`[0-9]+`)

// jfrSamples are execution samples counted two ways.
type jfrSamples struct {
	methods  map[string]float64 // by leaf method
	requests map[string]float64 // by the KafkaApis method on the stack, if any
	n        int
}

// parseJFRSamples counts the execution samples `jfr print` lists.
func parseJFRSamples(out []byte) jfrSamples {
	s := jfrSamples{methods: map[string]float64{}, requests: map[string]float64{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	inStack, frame, request := false, 0, ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "jdk.ExecutionSample"):
			s.n++
		case strings.HasPrefix(line, "stackTrace = ["):
			inStack, frame, request = true, 0, ""
		case inStack && line == "]":
			inStack = false
			if request != "" {
				s.requests[request]++
			}
		case inStack && line != "...":
			method, _, _ := strings.Cut(line, "(")
			if frame == 0 {
				s.methods[method]++
			}
			frame++
			// The innermost handler on the stack names the request (the
			// outermost, KafkaApis.handle, dispatches them all).
			if _, name, ok := strings.Cut(method, "KafkaApis.handle"); ok && name != "" && request == "" {
				request = strings.TrimSuffix(name, "Request")
			}
		}
	}
	return s
}

// top returns the largest parts of a profile's total, in percent.
func top(parts map[string]float64, total float64) []share {
	out := make([]share, 0, len(parts))
	for name, v := range parts {
		out = append(out, share{Name: name, Percent: 100 * v / total})
	}
	slices.SortFunc(out, func(a, b share) int {
		return cmp.Or(cmp.Compare(b.Percent, a.Percent), cmp.Compare(a.Name, b.Name))
	})
	return out[:min(len(out), profileTop)]
}

// writeProfiles renders the profiles as Markdown.
func writeProfiles(b *strings.Builder, runs []profileRun, rawDir string) {
	if len(runs) == 0 {
		return
	}
	b.WriteString("## Where the CPU goes\n\n")
	for _, r := range runs {
		fmt.Fprintf(b, "%s, %s, at %.0f commands/s for %.0fs (p50 %.1f ms, p99 %.1f ms, %d errors): each process's largest shares of its own CPU samples. Raw profiles in `%s` (`go tool pprof`, `jfr print`).\n\n",
			r.System, r.Mix, r.Result.Rate, r.Result.Seconds, r.Result.P50, r.Result.P99, r.Result.Errors, rawDir)
		if len(r.Result.Cost) > 0 {
			b.WriteString("CPU seconds per 1,000 commands while profiled (the profilers' own cost included): ")
			for i, name := range slices.Sorted(maps.Keys(r.Result.Cost)) {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(b, "%s %.2f", name, r.Result.Cost[name].CPUSecondsPer1000)
			}
			b.WriteString(".\n\n")
		}
		for _, p := range r.Processes {
			what, function, group := fmt.Sprintf("%.1f CPU s", p.CPUSeconds), "function (self, % of CPU)", "package (self, % of CPU)"
			if strings.HasPrefix(p.Kind, "JFR") {
				what = fmt.Sprintf("%.1f CPU s in its threads, %d execution samples", p.CPUSeconds, p.Samples)
				function, group = "Java method (self, % of samples)", "thread pool (% of CPU)"
			}
			fmt.Fprintf(b, "**%s** (%s, %s)\n\n| %s | %% | %s | %% |\n|---|---|---|---|\n", p.Process, p.Kind, what, function, group)
			for i := range max(len(p.Functions), len(p.Groups)) {
				var f, g share
				if i < len(p.Functions) {
					f = p.Functions[i]
				}
				if i < len(p.Groups) {
					g = p.Groups[i]
				}
				fmt.Fprintf(b, "| `%s` | %.1f | `%s` | %.1f |\n", f.Name, f.Percent, g.Name, g.Percent)
			}
			b.WriteString("\n")
			if len(p.Requests) > 0 {
				b.WriteString("Execution samples taken while serving a request, by request (`KafkaApis.handle…`): ")
				for i, r := range p.Requests {
					if i > 0 {
						b.WriteString(", ")
					}
					fmt.Fprintf(b, "%s %.1f%%", r.Name, r.Percent)
				}
				b.WriteString(".\n\n")
			}
		}
	}
}

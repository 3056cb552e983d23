package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/answerback/answerback/bench/loadgen"
	"github.com/answerback/answerback/deploy/local/procs"
)

// system is one implementation of the add-item round trip, served over HTTP
// with Answerback's API: POST /v1/orders/{id}/items answers 200 with the
// order and the catalog items still valid for it.
type system struct {
	name string
	url  string
	// token is the bearer token every request to the system carries: an
	// Answerback gateway's, for the bench's tenant; "" for the systems that
	// check none.
	token string
	// createOrder makes an order ready for add-item commands.
	createOrder func(ctx context.Context, id string) error
	stop        func()
	// pids names the processes whose CPU time and memory a step costs
	// (component → pid): the system's own, and the broker's ("kafka") when
	// it runs on the run's Apache Kafka (env.onBroker). The load generator
	// (the bench process) counts as "loadgen" besides.
	pids func() map[string]int
	// pgDatabase names the system's database: the CPU time of PostgreSQL's
	// backends serving it counts as the cost of component "postgres".
	pgDatabase string
	pgPid      func() int // the postmaster
	// pprofAddrs are the addresses that serve Go's profiles, by process.
	pprofAddrs map[string]string
	// brokerRequests returns the requests the system's broker has served so
	// far, by API name ("Produce", "Fetch", "EndTxn"…), counted by the broker
	// itself (Apache Kafka's RequestMetrics, or a kfake control hook); the
	// difference over a step, divided by the commands answered, is the
	// requests per command. nil when not known.
	brokerRequests func(ctx context.Context) (map[string]float64, error)
	// stageSource is where the stage probe reads the records a command
	// leaves; nil for systems built otherwise than Answerback.
	stageSource *stageSource
}

// stageSource names the broker and the gateways' reply topics of an
// Answerback deployment.
type stageSource struct {
	brokers     []string
	replyTopics []string
}

// mix is a traffic pattern: commands spread over many orders, or many
// clients on a few hot orders.
type mix struct {
	name   string
	orders int
}

var mixes = []mix{{name: "spread (1,000 orders)", orders: 1000}, {name: "hot (10 orders)", orders: 10}}

// skus is the catalog every system sells; each order cycles through it one
// unit at a time, so an order takes skuCount×1000 commands before its lines
// are full.
const skuCount = 50

func skuName(i int) string { return fmt.Sprintf("sku-%02d", i) }

// series is one system under one mix at increasing offered rates.
type series struct {
	System string           `json:"system"`
	Mix    string           `json:"mix"`
	Steps  []loadgen.Result `json:"steps"`
	// MaxSustained is the highest rate sustained (p99 under the bound, no
	// error); 0 when none was.
	MaxSustained float64 `json:"maxSustained"`
}

// client is the load generator's HTTP client, the same for every system.
var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute}}

func measure(ctx context.Context, sys *system, m mix, p plan, log *slog.Logger) (series, error) {
	s := series{System: sys.name, Mix: m.name}
	orders, err := createOrders(ctx, sys, m, "")
	if err != nil {
		return s, err
	}
	warm := loadgen.Run(ctx, loadgen.Options{Rate: 50, Duration: p.WarmUp}, addItem(sys, orders, 0))
	log.Info("warmed up", "system", sys.name, "mix", m.name, "ok", warm.OK, "errors", warm.Errors)
	sent := warm.Sent
	steps := newStepper(sys, log)
	for _, rate := range p.Rates {
		r := steps.run(ctx, loadgen.Options{Rate: rate, Duration: p.Step}, addItem(sys, orders, sent))
		sent += r.Sent
		attrs := []any{"system", sys.name, "mix", m.name, "rate", rate, "ok", r.OK, "errors", r.Errors, "dropped", r.Dropped,
			"p50", r.P50, "p99", r.P99, "throughput", r.Throughput}
		if r.BrokerRequests != nil {
			attrs = append(attrs, "brokerRequestsPerCommand", fmt.Sprintf("%.2f", sumValues(r.BrokerRequests)))
		}
		log.Info("step", attrs...)
		s.Steps = append(s.Steps, r)
		if !r.Sustained(p.P99Bound) {
			break
		}
		s.MaxSustained = rate
		if err := ctx.Err(); err != nil {
			return s, err
		}
	}
	return s, nil
}

// createOrders creates the orders of mix m on sys, named after the mix, tag
// and the time, so that every run has its own.
func createOrders(ctx context.Context, sys *system, m mix, tag string) ([]string, error) {
	prefix := fmt.Sprintf("%s%s-%d", tag, map[bool]string{true: "hot", false: "spread"}[m.orders < 100], time.Now().UnixNano()%1e6)
	orders := make([]string, m.orders)
	for i := range orders {
		orders[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	// A few at a time: one after the other, a thousand orders took most of
	// a minute per system.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, id := range orders {
		g.Go(func() error {
			if err := sys.createOrder(gctx, id); err != nil {
				return fmt.Errorf("creating order %s: %w", id, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return orders, nil
}

// addItem is request i of a run: one unit of the next SKU on the next order.
// offset continues the sequence across steps, so orders keep filling evenly.
func addItem(sys *system, orders []string, offset int) func(ctx context.Context, i int) error {
	return func(ctx context.Context, i int) error {
		n := offset + i
		order := orders[n%len(orders)]
		body, _ := json.Marshal(map[string]any{"sku": skuName((n / len(orders)) % skuCount), "quantity": 1})
		return post(ctx, sys.url+"/v1/orders/"+order+"/items", sys.token, body, http.StatusOK)
	}
}

// post sends body to url with token (if any) and wants status want.
func post(ctx context.Context, url, token string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	authorize(req, token)
	return do(req, want)
}

func do(req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	return nil
}

// serveLocal serves h on a free loopback port until shutdown is called.
func serveLocal(h http.Handler) (url string, shutdown func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends at Shutdown
	return "http://" + ln.Addr().String(), func() { _ = srv.Shutdown(context.Background()) }, nil
}

// stepper runs load steps on one system and finds what each cost: the CPU
// time of every process and the broker's requests, per answered command.
type stepper struct {
	sys *system
	log *slog.Logger
	// countRequests reads the broker's request counts around each step
	// (sys.brokerRequests).
	countRequests bool
	// requests are the broker's counts at the end of the last step, the
	// start of the next; nil: read them anew.
	requests map[string]float64
}

func newStepper(sys *system, log *slog.Logger) *stepper {
	return &stepper{sys: sys, log: log, countRequests: sys.brokerRequests != nil}
}

// run runs one step of o and returns its result with Cost and
// BrokerRequests. The broker's counts are read before the processes' CPU
// time at the start and after it at the end, so that reading them (a JVM
// start, the broker answering JMX) costs no process inside the step.
func (st *stepper) run(ctx context.Context, o loadgen.Options, do func(ctx context.Context, i int) error) loadgen.Result {
	if st.countRequests && st.requests == nil {
		st.requests = st.readRequests(ctx)
	}
	before := usage(st.sys)
	r := loadgen.Run(ctx, o, do)
	r.Cost = costPer1000(before, usage(st.sys), r.OK)
	if st.countRequests {
		after := st.readRequests(ctx)
		r.BrokerRequests = requestsPer(st.requests, after, r.OK)
		st.requests = after
	}
	return r
}

// readRequests reads the broker's request counts; nil when it cannot (the
// step then has none).
func (st *stepper) readRequests(ctx context.Context) map[string]float64 {
	counts, err := st.sys.brokerRequests(ctx)
	if err != nil {
		st.log.Warn("broker request counts unknown", "system", st.sys.name, "err", err)
		return nil
	}
	return counts
}

// requestsPer is, by API, the requests counted between before and after per
// answered command; nil when either count is unknown. An API whose count
// went down (a broker restarted) is left out.
func requestsPer(before, after map[string]float64, ok int) map[string]float64 {
	if before == nil || after == nil || ok == 0 {
		return nil
	}
	out := map[string]float64{}
	for api, a := range after {
		if d := a - before[api]; d > 0 {
			out[api] = d / float64(ok)
		}
	}
	return out
}

func sumValues(m map[string]float64) float64 {
	var sum float64
	for _, v := range m {
		sum += v
	}
	return sum
}

// loadgenComponent is the load generator's component: the bench process.
const loadgenComponent = "loadgen"

// usage reads the CPU time and peak memory of sys's processes, and of the
// load generator.
func usage(sys *system) map[string]procs.Usage {
	out := map[string]procs.Usage{}
	if u, err := procs.UsageOf(os.Getpid()); err == nil {
		out[loadgenComponent] = u
	}
	if sys.pids == nil {
		return out
	}
	for name, pid := range sys.pids() {
		if u, err := procs.UsageOf(pid); err == nil {
			out[name] = u
		}
	}
	if sys.pgPid != nil {
		if u, err := backendsUsage(sys.pgPid(), sys.pgDatabase); err == nil {
			out["postgres"] = u
		}
	}
	return out
}

// backendsUsage sums the CPU time of the PostgreSQL backends serving
// database (children of the postmaster whose title names it); the peak
// memory is the largest of one backend's.
func backendsUsage(postmaster int, database string) (procs.Usage, error) {
	var sum procs.Usage
	kids, err := procs.Children(postmaster)
	if err != nil {
		return sum, err
	}
	for _, pid := range kids {
		title, err := procs.Cmdline(pid)
		if err != nil || !strings.Contains(title, " "+database+" ") {
			continue
		}
		if u, err := procs.UsageOf(pid); err == nil {
			sum.CPU += u.CPU
			sum.PeakRSS = max(sum.PeakRSS, u.PeakRSS)
		}
	}
	return sum, nil
}

// costPer1000 is, per component, the CPU seconds a step took per 1,000
// answered commands and the peak resident memory so far.
func costPer1000(before, after map[string]procs.Usage, ok int) map[string]loadgen.Cost {
	if len(after) == 0 || ok == 0 {
		return nil
	}
	out := map[string]loadgen.Cost{}
	for name, a := range after {
		b, seen := before[name]
		if !seen {
			continue
		}
		out[name] = loadgen.Cost{CPUSecondsPer1000: (a.CPU - b.CPU).Seconds() * 1000 / float64(ok), PeakRSSMiB: float64(a.PeakRSS) / (1 << 20)}
	}
	return out
}

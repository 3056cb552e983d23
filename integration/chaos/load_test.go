//go:build chaos

package chaos

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

const (
	spreadOrders  = 40
	hotOrders     = 2
	clientTimeout = 10 * time.Second // no request may take longer
	retryBudget   = 8                // attempts of one command (same Idempotency-Key) on 502/503/transport errors
)

type cluster struct {
	t       *testing.T
	base    string
	token   string // the bearer token of every request
	http    *http.Client
	brokers string

	mu       sync.Mutex
	fault    string
	outcomes []outcome
	// awaiting is set while a phase waits for the first round trip that
	// starts after its fault was mended; record closes it.
	awaiting *recoveryWait
	// recovery: per fault, the longest time from a fault's end to the next
	// successful round trip, and whether every repetition recovered.
	recovery  map[string]time.Duration
	recovered map[string]bool
	// notes: per fault, what its injections did (see note).
	notes map[string][]string
	// attempts are the answers other than 2xx and 202; windows are when
	// each injected fault was active (the server-error invariant).
	attempts []attempt
	windows  []faultWindow
	// viewChecks: per fault, what comparing the view with the events found
	// at the phase's end; restarts: per fault, the services that restarted
	// by themselves during its phase.
	viewChecks map[string]string
	restarts   map[string]int64
}

// recoveryWait is one wait for the system to answer again after a fault.
type recoveryWait struct {
	since time.Time
	at    time.Time // the first 2xx round trip that started after since
	done  chan struct{}
}

func newCluster(t *testing.T, base, token string) *cluster {
	return &cluster{t: t, base: base, token: token, http: &http.Client{Timeout: clientTimeout},
		recovery: map[string]time.Duration{}, recovered: map[string]bool{}, notes: map[string][]string{}, viewChecks: map[string]string{}, restarts: map[string]int64{}}
}

// note records, for the report, what one injection of fault did.
func (c *cluster) note(fault, text string) {
	c.t.Logf("%s: %s", fault, text)
	c.mu.Lock()
	c.notes[fault] = append(c.notes[fault], text)
	c.mu.Unlock()
}

func (c *cluster) setPhase(name string) {
	c.mu.Lock()
	c.fault = name
	c.mu.Unlock()
}

func (c *cluster) do(method, path string, body any, headers map[string]string) (int, map[string]any, error) {
	a, err := c.call(method, path, body, headers)
	return a.status, a.body, err
}

// answer is one HTTP answer, its body read.
type answer struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (c *cluster) call(method, path string, body any, headers map[string]string) (answer, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if a.raw, err = io.ReadAll(resp.Body); err != nil {
		return answer{}, err
	}
	_ = json.Unmarshal(a.raw, &a.body)
	return a, nil
}

func (c *cluster) waitReady(bound time.Duration) {
	deadline := time.Now().Add(bound)
	for {
		if status, _, err := c.do(http.MethodGet, "/v1/catalog", nil, nil); err == nil && status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the stack was not ready within %s", bound)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func orderID(i int) string { return fmt.Sprintf("order-%d", i) }

// skus are the catalog the load buys from: as many as an order may hold
// lines (orders.MaxLines), so that a hot order, which takes a fifth of the
// load, stays within orders.MaxLineQuantity per line for a whole run (the
// domain refuses more, 422, and valid traffic has no 4xx).
var skus = func() []string {
	out := make([]string, orders.MaxLines)
	for i := range out {
		out[i] = fmt.Sprintf("sku-%02d", i)
	}
	return out
}()

// seed creates the catalog and the orders, retrying each with its key while
// the stack still starts (topics being created answer 503).
func (c *cluster) seed() {
	for _, sku := range skus {
		c.seedOne(http.MethodPut, "/v1/catalog/"+sku, map[string]any{"name": sku, "unitPrice": 100, "stock": 1_000_000_000, "maxPerOrder": 1_000_000_000, "active": true},
			"seed-"+sku, http.StatusOK)
	}
	for i := range spreadOrders + hotOrders {
		c.seedOne(http.MethodPost, "/v1/orders", map[string]any{"id": orderID(i), "customerId": "chaos"}, "create-"+orderID(i), http.StatusCreated)
	}
}

func (c *cluster) seedOne(method, path string, body any, key string, want int) {
	deadline := time.Now().Add(time.Minute)
	for {
		status, resp, err := c.do(method, path, body, map[string]string{"Idempotency-Key": key, "Prefer": "wait=20"})
		if err == nil && status == want {
			return
		}
		if time.Now().After(deadline) || (err == nil && status != http.StatusServiceUnavailable && status != http.StatusBadGateway) {
			c.t.Fatalf("seeding %s %s: %d %v %v", method, path, status, resp, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type loadHandle struct {
	cancel context.CancelFunc
	wg     *sync.WaitGroup
}

func (l loadHandle) stop() { l.cancel(); l.wg.Wait() }

// startLoad runs n clients, each sending add-item commands back to back:
// four in five to one of many orders, one in five to a hot order.
func (c *cluster) startLoad(n int) loadHandle {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { // owned by the load handle
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for ctx.Err() == nil {
				order := orderID(rng.IntN(spreadOrders))
				if rng.IntN(5) == 0 {
					order = orderID(spreadOrders + rng.IntN(hotOrders))
				}
				c.record(c.command(order, skus[rng.IntN(len(skus))]))
			}
		}()
	}
	return loadHandle{cancel: cancel, wg: &wg}
}

// command sends one add-item command as a well-behaved client does: with an
// Idempotency-Key, retried with the same key on 502, 503 and transport errors.
func (c *cluster) command(order, sku string) outcome {
	c.mu.Lock()
	o := outcome{fault: c.fault, order: order, start: time.Now()}
	c.mu.Unlock()
	key := uuid.NewString()
	for o.attempts < retryBudget {
		o.attempts++
		start := time.Now()
		a, err := c.call(http.MethodPost, "/v1/orders/"+order+"/items", map[string]any{"sku": sku, "quantity": 1},
			map[string]string{"Idempotency-Key": key, "Prefer": "wait=3"})
		status, body := a.status, a.body
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || time.Since(start) >= clientTimeout {
				o.hung = true
			}
			time.Sleep(250 * time.Millisecond)
			continue
		}
		o.status, o.body = status, a.raw
		c.recordAttempt(a)
		if id, ok := body["commandId"].(string); ok {
			o.commandID = id
		}
		if v, ok := body["version"].(float64); ok {
			o.version = int64(v)
		}
		if status == http.StatusBadGateway || status == http.StatusServiceUnavailable {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		break
	}
	o.at = time.Now()
	return o
}

// recordAttempt keeps an answer that is neither 2xx nor 202, for the
// server-error invariant.
func (c *cluster) recordAttempt(a answer) {
	if a.status < 300 {
		return
	}
	problem, _ := a.body["type"].(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts = append(c.attempts, attempt{fault: c.fault, status: a.status, retryAfter: a.header.Get("Retry-After") != "", problem: problem, at: time.Now()})
}

func (c *cluster) record(o outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outcomes = append(c.outcomes, o)
	if w := c.awaiting; w != nil && o.status >= 200 && o.status < 300 && o.status != http.StatusAccepted && !o.start.Before(w.since) {
		w.at = o.at
		close(w.done)
		c.awaiting = nil
	}
}

// phase runs one fault under load: repeat times, at a random moment of its
// slot, inject it, mend it downFor (or the fault's hold) later, wait (up to
// recoveryBound) for the first round trip that starts after that and
// succeeds, then run the fault's check. The phase lasts at least length.
func (c *cluster) phase(f fault, length, downFor time.Duration) {
	c.setPhase(f.name)
	c.t.Logf("phase: %s", f.name)
	start := time.Now()
	repeat := max(f.repeat, 1)
	slot := length / time.Duration(repeat)
	for i := range repeat {
		slotStart := start.Add(time.Duration(i) * slot)
		time.Sleep(time.Until(slotStart.Add(randomDelay(slot / 4))))
		injected := time.Now()
		if f.inject != nil {
			f.inject()
			time.Sleep(cmp.Or(f.hold, downFor))
			f.recover()
		}
		w := &recoveryWait{since: time.Now(), done: make(chan struct{})}
		c.mu.Lock()
		c.awaiting = w
		c.mu.Unlock()
		select {
		case <-w.done:
			c.mu.Lock()
			if f.inject != nil {
				c.windows = append(c.windows, faultWindow{fault: f.name, from: injected, to: w.at})
			}
			c.recovery[f.name] = max(c.recovery[f.name], w.at.Sub(w.since))
			if _, seen := c.recovered[f.name]; !seen {
				c.recovered[f.name] = true
			}
			c.mu.Unlock()
		case <-time.After(recoveryBound):
			c.mu.Lock()
			c.windows = append(c.windows, faultWindow{fault: f.name, from: injected, to: time.Now()})
			c.awaiting = nil
			c.recovered[f.name] = false
			c.mu.Unlock()
			c.t.Errorf("phase %q: no round trip succeeded within %s of the fault's end", f.name, recoveryBound)
		}
		if f.check != nil {
			f.check()
		}
	}
	time.Sleep(time.Until(start.Add(length)))
}

// settle waits until every 202 has a final status (or the bound runs out).
func (c *cluster) settle(bound time.Duration) {
	deadline := time.Now().Add(bound)
	c.mu.Lock()
	var pending []string
	for _, o := range c.outcomes {
		if o.status == http.StatusAccepted {
			pending = append(pending, o.commandID)
		}
	}
	c.mu.Unlock()
	for _, id := range pending {
		for time.Now().Before(deadline) {
			status, body, err := c.do(http.MethodGet, "/v1/commands/"+id, nil, nil)
			if err == nil && status == http.StatusOK && body["status"] != "pending" {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// results per fault, for the report.
type results struct {
	byFault              map[string]*row
	versionErrors        []string
	duplicatedCommandIDs int
	// The invariants checked once the load stopped: recorded outcomes
	// against the events, answers other than 2xx and 202 against the
	// faults, dead letters, and the view against the events.
	outcomeRowErrors, serverErrors, viewDiffs []string
	outcomeRows                               int
	deadLetters                               int64
}

type row struct {
	requests, ok, accepted, client4xx, server5xx, failed, hung, lost, duplicated int
	// misversioned: answers whose version is not the one the events topic
	// gives their command's event.
	misversioned int
	// unfaithful: 2xx answers whose version or reply differ from what
	// GET /v1/commands/{id} records.
	unfaithful int
	recovery   time.Duration
	recovered  bool
}

// check reads the events topic, the command statuses, the recorded outcomes,
// the dead-letter topics and the view, and holds them against what the
// clients were told and against each other.
func (c *cluster) check(db *pgxpool.Pool, adm *kadm.Client) results {
	c.t.Helper()
	events := c.readEvents()
	indexed := indexEvents(events)
	perCommand, logVersion := indexed.count, indexed.version
	versions := map[string][]int64{}
	for _, ev := range events {
		versions[ev.AggregateID] = append(versions[ev.AggregateID], ev.Version)
	}
	// An answer's version must be its command's in the log: an instance that
	// decided from stale state, or a zombie whose write was dropped, answers
	// a version the log gave another command.
	checkApplied := func(r *row, o outcome, answered int64, how string) {
		switch n := perCommand[o.commandID]; {
		case n == 0:
			r.lost++
			c.t.Errorf("command %s answered %s on %s has no event", o.commandID, how, o.order)
		case n > 1:
			r.duplicated++
		case answered != logVersion[o.commandID]:
			r.misversioned++
			c.t.Errorf("command %s answered %s on %s with version %d; its event has version %d", o.commandID, how, o.order, answered, logVersion[o.commandID])
		}
	}
	res := results{byFault: map[string]*row{}}
	for agg, vs := range versions {
		for i, v := range vs {
			if v != int64(i+1) {
				res.versionErrors = append(res.versionErrors, fmt.Sprintf("%s: event %d has version %d", agg, i, v))
				break
			}
		}
	}
	for id, n := range perCommand {
		if n > 1 && id != "" {
			res.duplicatedCommandIDs++
			c.t.Errorf("command %s has %d events: applied more than once", id, n)
		}
	}
	c.mu.Lock()
	outcomes := append([]outcome(nil), c.outcomes...)
	c.mu.Unlock()
	for _, o := range outcomes {
		r := res.byFault[o.fault]
		if r == nil {
			r = &row{}
			res.byFault[o.fault] = r
		}
		r.requests++
		if o.hung {
			r.hung++
		}
		switch {
		case o.status == http.StatusAccepted:
			r.accepted++
			status, body, err := c.do(http.MethodGet, "/v1/commands/"+o.commandID, nil, nil)
			switch {
			case err != nil || status != http.StatusOK || body["status"] == "pending":
				r.lost++
				c.t.Errorf("command %s answered 202 never reached a final status (%d %v %v)", o.commandID, status, body, err)
			case body["status"] == string(envelope.Applied):
				v, _ := body["version"].(float64)
				checkApplied(r, o, int64(v), "202, then applied,")
			}
		case o.status >= 200 && o.status < 300:
			r.ok++
			checkApplied(r, o, o.version, strconv.Itoa(o.status))
			a, err := c.call(http.MethodGet, "/v1/commands/"+o.commandID, nil, nil)
			if err != nil {
				c.t.Errorf("status of %s: %v", o.commandID, err)
				continue
			}
			st := commandStatus{HTTPStatus: a.status}
			_ = json.Unmarshal(a.raw, &st)
			if v := answerViolations(o, st); len(v) > 0 {
				r.unfaithful++
				for _, s := range v {
					c.t.Error(s)
				}
			}
		case o.status >= 400 && o.status < 500:
			r.client4xx++
		case o.status >= 500:
			r.server5xx++
		default:
			r.failed++
		}
	}
	c.mu.Lock()
	for fault, r := range res.byFault {
		r.recovery, r.recovered = c.recovery[fault], c.recovered[fault]
		if r.hung > 0 {
			c.t.Errorf("phase %q: %d requests ran into the client's %s bound", fault, r.hung, clientTimeout)
		}
	}
	c.mu.Unlock()
	for _, e := range res.versionErrors {
		c.t.Errorf("event versions not contiguous: %s", e)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rows, err := readOutcomeRows(ctx, db, "orders.")
	if err != nil {
		c.t.Errorf("reading the recorded outcomes: %v", err)
	}
	res.outcomeRows = len(rows)
	res.outcomeRowErrors = outcomeRowViolations(rows, indexed)
	c.mu.Lock()
	res.serverErrors = serverErrorViolations(c.attempts, c.windows, serverErrorGrace)
	c.mu.Unlock()
	if res.deadLetters, err = deadLetters(ctx, adm, "orders.dlq", "catalog.dlq"); err != nil {
		c.t.Errorf("counting dead letters: %v", err)
	}
	if res.viewDiffs, err = viewMismatches(ctx, strings.Split(c.brokers, ","), db, ""); err != nil {
		c.t.Errorf("comparing the view with the events: %v", err)
	}
	for _, list := range [][]string{res.outcomeRowErrors, res.serverErrors, res.viewDiffs} {
		for _, v := range list {
			c.t.Error(v)
		}
	}
	if res.deadLetters > 0 {
		c.t.Errorf("%d dead letters from valid traffic", res.deadLetters)
	}
	return res
}

// readEvents reads the whole orders events topic (read_committed).
func (c *cluster) readEvents() []envelope.Event {
	c.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(c.brokers, ",")...), kgo.ConsumeTopics("orders.events"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	var out []envelope.Event
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		if fetches.NumRecords() == 0 {
			return out
		}
		fetches.EachRecord(func(r *kgo.Record) {
			ev, err := envelope.DecodeEvent(r)
			if err != nil {
				c.t.Errorf("undecodable event at %d/%d: %v", r.Partition, r.Offset, err)
				return
			}
			out = append(out, ev)
		})
	}
}

// measuredCommit names the commit of the checkout whose services the suite
// built, with "and uncommitted changes" when the product's code differed.
func measuredCommit() string {
	head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "an unrecorded commit (git rev-parse: " + err.Error() + ")"
	}
	state := "commit " + strings.TrimSpace(string(head))
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return state
	}
	dirty, err := exec.Command("git", "-C", strings.TrimSpace(string(top)), "status", "--porcelain", "--", "libs", "services", "deploy/local", "integration/chaos").Output()
	if err == nil && strings.TrimSpace(string(dirty)) != "" {
		state += " and uncommitted changes to the code it ran"
	}
	return state
}

// header is the top of docs/RELIABILITY.md: what ran, and how.
func header(phase time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Reliability\n\nWritten by `make chaos` (integration/chaos) on %s, measuring %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), measuredCommit())
	fmt.Fprintf(&b, "Setup: two gateways behind a load balancer, two aggregators, two projectors, each a separate OS process; Apache Kafka (one broker, then a three-node cluster) and one PostgreSQL, real, on this machine (2 cores). "+
		"Load: 16 clients sending add-item commands back to back with an Idempotency-Key, retried with the same key on 502/503/transport errors (at most %d attempts), `Prefer: wait=3`, client timeout %s; %d orders plus %d hot orders written by every client. "+
		"Each fault phase lasts at least %s; a fault marked ×2 is injected twice, each time at a random moment of its half of the phase, and mended %s later; the phase then waits (at most %s) for the next round trip to succeed. "+
		"A paused instance (SIGSTOP) stays stopped at least %s — past its group session and transaction timeouts — and until its group shows its partitions on the other instance and the transactions it left open, if any, aborted (by the coordinator past their timeout, or fenced by the new owner); after SIGCONT it must be back in its group within %s, itself or, an aggregator fenced, restarted by its supervisor (the notes below the tables say which, and count the restarts).\n\n",
		retryBudget, clientTimeout, spreadOrders, hotOrders, phase, phase/4, recoveryBound, pausedFor, rejoinBound)
	b.WriteString("Invariants checked after the load stopped and every 202 settled, each shown to fail on a broken input by a test of its own (integration/chaos/invariants_fail_test.go, in `make test`): every 2xx command has exactly one event (*lost*/*duplicated*), at the version the client was answered (*wrong version*), and its answer — version and reply — equals what `GET /v1/commands/{id}` records (*answer ≠ record*); every 202 reached a final status (*lost*), and one applied has its event at the version its status reports; every recorded outcome matches its events (applied: one event at its version; rejected: none); every order's event versions are 1..n; no command ID has two events; valid traffic leaves no dead letter; every answer other than 2xx and 202 is a 503 with Retry-After while a fault is active (from its injection to the first round trip that succeeded after its end, plus 10s) — any 4xx, 500, 502, 504, or 503 otherwise fails the run; no request ran into the client's bound (*hung*). " +
		"After every phase, under load, and at the end, the view is compared with the events projected afresh, from offset 0 into a scratch schema up to the offsets the live projector stored with it (*view = events*). Every fault is checked to have taken effect (a killed process gone, a stopped broker's or database's port refusing); a failed injection fails the run. *restarts* counts the services their supervisor restarted during the phase, after they exited on their own: more than one per injection fails the run. " +
		"*failed* counts commands whose every attempt met a transport error or 5xx; *recovery* is the longest time from a fault's end to the next round trip that started after it and succeeded.\n")
	return b.String()
}

// report renders one scenario's results as a section of docs/RELIABILITY.md.
func (c *cluster) report(scenario string, res results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## %s\n\n", scenario)
	b.WriteString("| fault | requests | 2xx | 202 | 4xx | 5xx | failed | lost | duplicated | wrong version | answer ≠ record | hung | recovery | restarts | view = events |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var faults []string
	for f := range res.byFault {
		faults = append(faults, f)
	}
	sort.Strings(faults)
	for _, f := range faults {
		r := res.byFault[f]
		rec := "–"
		if r.recovered {
			rec = r.recovery.Round(time.Millisecond).String()
		}
		c.mu.Lock()
		restarts, viewCheck := c.restarts[f], cmp.Or(c.viewChecks[f], "–")
		c.mu.Unlock()
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s | %d | %s |\n", f, r.requests, r.ok, r.accepted, r.client4xx, r.server5xx, r.failed, r.lost, r.duplicated, r.misversioned, r.unfaithful, r.hung, rec, restarts, viewCheck)
	}
	fmt.Fprintf(&b, "\nEvent versions not 1..n: %d orders. Command IDs with more than one event: %d. "+
		"Recorded outcomes of orders: %d, %d not matching their events. Answers other than 2xx and 202 outside the rules (a 503 with Retry-After while a fault is active, or within %s of its end): %d. Dead letters: %d. "+
		"The view against the events projected afresh at the end: %s.\n",
		len(res.versionErrors), res.duplicatedCommandIDs, res.outcomeRows, len(res.outcomeRowErrors), serverErrorGrace, len(res.serverErrors), res.deadLetters, viewVerdict(res.viewDiffs))
	for _, v := range append(append(append([]string{}, res.outcomeRowErrors...), res.serverErrors...), res.viewDiffs...) {
		fmt.Fprintf(&b, "\n- violation: %s", v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range faults {
		for _, n := range c.notes[f] {
			fmt.Fprintf(&b, "\n- %s: %s", f, n)
		}
	}
	if len(c.notes) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// viewVerdict says what comparing the view with the events found.
func viewVerdict(diffs []string) string {
	if len(diffs) == 0 {
		return "equal"
	}
	return fmt.Sprintf("%d tables differ", len(diffs))
}

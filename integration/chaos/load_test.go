//go:build chaos

package chaos

import (
	"bytes"
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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

const (
	spreadOrders  = 40
	hotOrders     = 2
	clientTimeout = 10 * time.Second // no request may take longer
	retryBudget   = 8                // attempts of one command (same Idempotency-Key) on 502/503/transport errors
)

// outcome of one command, as its client saw it in the end.
type outcome struct {
	fault     string
	order     string
	status    int // final HTTP status; 0 for a transport error on every attempt
	commandID string
	version   int64
	attempts  int
	hung      bool // a request ran into the client timeout
	at        time.Time
}

type cluster struct {
	t    *testing.T
	base string
	http *http.Client

	mu       sync.Mutex
	fault    string
	outcomes []outcome
	// recovered: per fault, when its recovery ended and when the next 2xx came
	recoveredAt map[string]time.Time
	firstOK     map[string]time.Time
	brokers     string
}

func newCluster(t *testing.T, base string) *cluster {
	return &cluster{t: t, base: base, http: &http.Client{Timeout: clientTimeout},
		recoveredAt: map[string]time.Time{}, firstOK: map[string]time.Time{}}
}

func (c *cluster) do(method, path string, body any, headers map[string]string) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, nil
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

// seed creates the catalog and the orders.
func (c *cluster) seed() {
	for _, sku := range []string{"apple", "pear", "plum"} {
		status, body, err := c.do(http.MethodPut, "/v1/catalog/"+sku, map[string]any{"name": sku, "unitPrice": 100, "stock": 1_000_000, "maxPerOrder": 1000, "active": true},
			map[string]string{"Idempotency-Key": "seed-" + sku, "Prefer": "wait=20"})
		if err != nil || status != http.StatusOK {
			c.t.Fatalf("seeding %s: %d %v %v", sku, status, body, err)
		}
	}
	for i := range spreadOrders + hotOrders {
		status, body, err := c.do(http.MethodPost, "/v1/orders", map[string]any{"id": orderID(i), "customerId": "chaos"},
			map[string]string{"Idempotency-Key": "create-" + orderID(i), "Prefer": "wait=20"})
		if err != nil || status != http.StatusCreated {
			c.t.Fatalf("creating %s: %d %v %v", orderID(i), status, body, err)
		}
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
				c.record(c.command(order, []string{"apple", "pear", "plum"}[rng.IntN(3)]))
			}
		}()
	}
	return loadHandle{cancel: cancel, wg: &wg}
}

// command sends one add-item command as a well-behaved client does: with an
// Idempotency-Key, retried with the same key on 502, 503 and transport errors.
func (c *cluster) command(order, sku string) outcome {
	c.mu.Lock()
	o := outcome{fault: c.fault, order: order}
	c.mu.Unlock()
	key := uuid.NewString()
	for o.attempts < retryBudget {
		o.attempts++
		start := time.Now()
		status, body, err := c.do(http.MethodPost, "/v1/orders/"+order+"/items", map[string]any{"sku": sku, "quantity": 1},
			map[string]string{"Idempotency-Key": key, "Prefer": "wait=3"})
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || time.Since(start) >= clientTimeout {
				o.hung = true
			}
			time.Sleep(250 * time.Millisecond)
			continue
		}
		o.status = status
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

func (c *cluster) record(o outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outcomes = append(c.outcomes, o)
	if o.status >= 200 && o.status < 300 && o.status != http.StatusAccepted {
		if rec, ok := c.recoveredAt[o.fault]; ok && o.at.After(rec) {
			if _, seen := c.firstOK[o.fault]; !seen {
				c.firstOK[o.fault] = o.at
			}
		}
	}
}

// phase runs one fault under load: inject at the start, recover after downFor.
func (c *cluster) phase(f fault, length, downFor time.Duration) {
	c.mu.Lock()
	c.fault = f.name
	c.mu.Unlock()
	c.t.Logf("phase: %s", f.name)
	start := time.Now()
	if f.inject != nil {
		f.inject()
		time.Sleep(max(0, downFor-time.Since(start)))
		f.recover()
	}
	c.mu.Lock()
	c.recoveredAt[f.name] = time.Now()
	c.mu.Unlock()
	time.Sleep(max(0, length-time.Since(start)))
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
}

type row struct {
	requests, ok, accepted, client4xx, server5xx, failed, hung, lost, duplicated int
	recovery                                                                     time.Duration
	recovered                                                                    bool
}

// check reads the events topic and the command statuses and holds them
// against what the clients were told.
func (c *cluster) check() results {
	c.t.Helper()
	events := c.readEvents()
	perCommand := map[string]int{}
	versions := map[string][]int64{}
	for _, ev := range events {
		perCommand[ev.CommandID]++
		versions[ev.AggregateID] = append(versions[ev.AggregateID], ev.Version)
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
			if err != nil || status != http.StatusOK || body["status"] == "pending" {
				r.lost++
				c.t.Errorf("command %s answered 202 never reached a final status (%d %v %v)", o.commandID, status, body, err)
			}
		case o.status >= 200 && o.status < 300:
			r.ok++
			switch n := perCommand[o.commandID]; {
			case n == 0:
				r.lost++
				c.t.Errorf("command %s answered %d on %s has no event", o.commandID, o.status, o.order)
			case n > 1:
				r.duplicated++
			}
		case o.status >= 400 && o.status < 500:
			r.client4xx++
		case o.status >= 500:
			r.server5xx++
		default:
			r.failed++
		}
	}
	for fault, r := range res.byFault {
		if rec, ok := c.recoveredAt[fault]; ok {
			if first, ok := c.firstOK[fault]; ok {
				r.recovery, r.recovered = first.Sub(rec), true
			}
		}
		if !r.recovered && r.ok > 0 {
			c.t.Errorf("phase %q: no successful round trip after the fault ended", fault)
		}
		if r.hung > 0 {
			c.t.Errorf("phase %q: %d requests ran into the client's %s bound", fault, r.hung, clientTimeout)
		}
	}
	for _, e := range res.versionErrors {
		c.t.Errorf("event versions not contiguous: %s", e)
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

// report renders the results as the Markdown of docs/RELIABILITY.md.
func (c *cluster) report(res results, phase time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Reliability\n\nWritten by `make chaos` (integration/chaos) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Setup: two gateways behind a load balancer, two aggregators, two projectors, each a separate OS process; one Apache Kafka broker and one PostgreSQL, real, on this machine (2 cores). Load: 16 clients sending add-item commands back to back with an Idempotency-Key, retried with the same key on 502/503/transport errors (at most %d attempts), `Prefer: wait=3`, client timeout %s; %d orders plus %d hot orders written by every client. Each fault phase lasts %s; the fault is mended after %s.\n\n",
		retryBudget, clientTimeout, spreadOrders, hotOrders, phase, phase/4)
	b.WriteString("| fault | requests | 2xx | 202 | 4xx | 5xx | failed | lost | duplicated | hung | recovery |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
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
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n", f, r.requests, r.ok, r.accepted, r.client4xx, r.server5xx, r.failed, r.lost, r.duplicated, r.hung, rec)
	}
	fmt.Fprintf(&b, "\nInvariants checked after the load stopped and every 202 settled: every 2xx command has exactly one event (lost/duplicated above); every 202 reached a final status (lost); every order's event versions are 1..n (%d violations); no command ID has two events (%d). *failed* counts commands whose every attempt met a transport error or 5xx; *recovery* is the time from the fault's end to the next successful round trip.\n",
		len(res.versionErrors), res.duplicatedCommandIDs)
	return b.String()
}

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// freePortPair finds p with p and p+100 free (a broker's client and controller ports).
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		p := 20000 + rand.IntN(20000)
		a, errA := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		b, errB := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+100))
		if a != nil {
			a.Close()
		}
		if b != nil {
			b.Close()
		}
		if errA == nil && errB == nil {
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

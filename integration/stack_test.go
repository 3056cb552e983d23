package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/domain/database"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/libs/testenv"
	aggapp "github.com/answerback/answerback/services/aggregator/app"
	"github.com/answerback/answerback/services/gateway/server"
	projapp "github.com/answerback/answerback/services/projector/app"
)

// stack is the whole pipeline in this test process: aggregator, projector
// and gateways, on the test's Kafka and database, under a topic prefix of the
// test's own. Components can be stopped and started again.
type stack struct {
	t        testing.TB
	k        *testenv.Kafka
	pg       *testenv.Postgres
	prefix   string
	gateways []string // base URLs
	// key signs the tokens of requests; token is testTenant's, with every scope.
	key   *auth.DevKey
	token string

	// faults of the in-process projector
	faults projector.Faults

	mu      sync.Mutex
	procs   map[string]*component
	killers sync.Map // instance → *os.Process of aggregators run as processes
	// fencedRestarts counts in-process aggregators restarted after they
	// stopped fenced.
	fencedRestarts atomic.Int64
	// aggregatorOpts are the in-process aggregators' extra Kafka client options.
	aggregatorOpts []kgo.Opt
	// gatewayPool is the gateways' database pool: the test's, or one on a
	// role of their own behind the tenant wall (stackOptions.tenantWall).
	gatewayPool *pgxpool.Pool
}

type component struct {
	cancel context.CancelFunc
	done   chan struct{}
}

type stackOptions struct {
	gateways    int
	replyWait   time.Duration
	maxInFlight int
	// aggregatorOpts are added to the in-process aggregators' Kafka clients.
	aggregatorOpts []kgo.Opt
	// tenantWall runs the gateways on a PostgreSQL role of their own, behind
	// the tenant wall (database.GrantGateway, server.TenantWall).
	tenantWall bool
}

func startStack(t testing.TB, k *testenv.Kafka, opts stackOptions) *stack {
	t.Helper()
	if opts.gateways == 0 {
		opts.gateways = 2
	}
	if opts.replyWait == 0 {
		opts.replyWait = 10 * time.Second
	}
	s := &stack{t: t, k: k, pg: testenv.NewPostgres(t), prefix: k.Prefix + ".", procs: map[string]*component{}, aggregatorOpts: opts.aggregatorOpts}
	ctx := testenv.Context(t, time.Minute)
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.key, s.token = key, s.mint(key, testTenant)
	if err := aggapp.EnsureTopics(ctx, k.Seeds, s.prefix, 3); err != nil {
		t.Fatal(err)
	}
	s.startAggregator("agg-1")
	s.startProjector()
	s.gatewayPool = s.pg.Pool
	if opts.tenantWall {
		s.gatewayPool = s.walledPool(ctx)
	}
	for i := range opts.gateways {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.gateways = append(s.gateways, "http://"+ln.Addr().String())
		args := gatewayArgs(t, k, s.prefix, fmt.Sprintf("gw%d-%s", i+1, k.Prefix), key, "-reply-wait="+opts.replyWait.String())
		if opts.maxInFlight > 0 {
			args = append(args, fmt.Sprint("-max-in-flight=", opts.maxInFlight))
		}
		name := fmt.Sprintf("gateway-%d", i+1)
		s.launch(name, server.Binary(server.Embedded{Pool: s.gatewayPool, Listener: ln}), args, nil)
	}
	t.Cleanup(s.stopAll)
	return s
}

// walledPool creates a PostgreSQL role for the gateways, grants it what
// they need (database.GrantGateway), and returns a pool connected as it with
// the tenant wall; the role goes when the test ends.
func (s *stack) walledPool(ctx context.Context) *pgxpool.Pool {
	s.t.Helper()
	role := "gateway_" + strings.ReplaceAll(testenv.UniqueName("w"), "-", "_")
	if _, err := s.pg.Pool.Exec(ctx, "CREATE ROLE "+role+" LOGIN"); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		ctx := context.Background()
		_, _ = s.pg.Pool.Exec(ctx, "DROP OWNED BY "+role) // its grants in the test's database
		_, _ = s.pg.Pool.Exec(ctx, "DROP ROLE "+role)
	})
	if err := database.GrantGateway(ctx, s.pg.Pool, role); err != nil {
		s.t.Fatal(err)
	}
	dsn, err := url.Parse(s.pg.DSN)
	if err != nil {
		s.t.Fatal(err)
	}
	dsn.User = url.User(role)
	cfg, err := pgxpool.ParseConfig(dsn.String())
	if err != nil {
		s.t.Fatal(err)
	}
	server.TenantWall(cfg)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(pool.Close)
	return pool
}

// testTenant is the tenant of the stack's requests, unless a test says otherwise.
const testTenant = "acme"

// mint signs a token for tenant with scopes (every scope when none given).
func (s *stack) mint(key *auth.DevKey, tenant string, scopes ...string) string {
	s.t.Helper()
	if len(scopes) == 0 {
		scopes = auth.AllScopes
	}
	tok, err := key.Mint("integration", tenant, scopes, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// tokenFor is a token of tenant with scopes (every scope when none given).
func (s *stack) tokenFor(tenant string, scopes ...string) string {
	return s.mint(s.key, tenant, scopes...)
}

// startStackWithOrder starts a stack with the default catalog and an open
// order "o" (version 1).
func startStackWithOrder(t testing.TB, k *testenv.Kafka, opts stackOptions) *stack {
	t.Helper()
	s := startStack(t, k, opts)
	s.seedCatalog(defaultCatalog)
	s.mustSetUp(http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "o", "customerId": "c"})
	return s
}

// setUpWait is how long a set-up command may wait for its reply: a test's
// short reply wait is for the commands it tests, not for its fixtures, which
// may meet a projector still joining its group on a loaded machine.
const setUpWait = "wait=30"

// mustSetUp sends a fixture command through gateway 0, waiting up to
// setUpWait for its reply, and fails the test unless the status is want.
func (s *stack) mustSetUp(want int, method, path string, body any) response {
	s.t.Helper()
	r := s.callWith(0, method, path, body, map[string]string{"Prefer": setUpWait})
	if r.Status != want {
		s.t.Fatalf("set-up %s %s: status %d, want %d; body %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// gatewayArgs are the settings of a gateway under test: the test's Kafka,
// the instance's name, and the development key trusted as the token
// issuer through its key set file, as a deployment trusts its issuer's.
func gatewayArgs(t testing.TB, k *testenv.Kafka, prefix, instance string, key *auth.DevKey, extra ...string) []string {
	t.Helper()
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if _, err := key.WriteJWKS(jwks); err != nil {
		t.Fatal(err)
	}
	return append([]string{"-kafka-brokers=" + strings.Join(k.Seeds, ","), "-topic-prefix=" + prefix, "-instance-id=" + instance,
		"-auth-jwks-file=" + jwks, "-auth-issuer=" + auth.DevIssuer, "-auth-audience=" + auth.DevAudience}, extra...)
}

// launch runs a service binary in this process (service.Launch) under
// name; a failure fails the test, except one that retry says to start
// again after, as a supervisor would.
func (s *stack) launch(name string, b service.Binary, args []string, retry func(error) bool, kafkaOpts ...kgo.Opt) {
	s.run(name, func(ctx context.Context) {
		for {
			err := service.Launch(ctx, b, args, service.InProcess{Log: testLogger(s.t), KafkaOpts: kafkaOpts})
			if err != nil && ctx.Err() == nil && retry != nil && retry(err) {
				continue
			}
			stopped := ctx.Err() != nil && errors.Is(err, context.Canceled) // stopped by the stack
			if err != nil && !stopped {
				s.t.Errorf("%s: %v", name, err)
			}
			return
		}
	})
}

func (s *stack) run(name string, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &component{cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.procs[name] = c
	s.mu.Unlock()
	go func() { // owned by the stack: stop waits for it
		defer close(c.done)
		f(ctx)
	}()
}

func (s *stack) stop(name string) {
	s.mu.Lock()
	c := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if c != nil {
		c.cancel()
		<-c.done
	}
}

func (s *stack) stopAll() {
	s.mu.Lock()
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.stop(n)
	}
}

func (s *stack) startAggregator(instance string) { s.startAggregatorDrain(instance, 0) }

// startAggregatorDrain starts an in-process aggregator; a negative drain
// makes stopping it abort the transaction in hand, as a crash would. As a
// supervisor does, it restarts an instance that stopped because it was
// fenced.
func (s *stack) startAggregatorDrain(instance string, drain time.Duration) {
	args := []string{"-kafka-brokers=" + strings.Join(s.k.Seeds, ","), "-topic-prefix=" + s.prefix, "-instance-id=" + instance}
	s.launch("aggregator-"+instance, aggapp.Binary(aggapp.Embedded{ShutdownDrain: drain}), args, func(err error) bool {
		if errors.Is(err, aggregate.ErrProducerFenced) {
			s.fencedRestarts.Add(1)
			return true
		}
		return false
	}, s.aggregatorOpts...)
}

func (s *stack) startProjector() {
	args := []string{"-kafka-brokers=" + strings.Join(s.k.Seeds, ","), "-topic-prefix=" + s.prefix}
	s.launch("projector", projapp.Binary(projapp.Embedded{Pool: s.pg.Pool, Faults: &s.faults}), args, nil)
}

func (s *stack) topics(domain string) topics.Names { return topics.For(s.prefix, domain) }

// response is an HTTP answer, body read.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	return m
}

// httpClient records every response for the OpenAPI check in TestMain.
var httpClient = &http.Client{Timeout: 60 * time.Second, Transport: recordingTransport{http.DefaultTransport}}

// call sends a request to gateway i (modulo the number of gateways).
func (s *stack) call(i int, method, path string, body any) response {
	s.t.Helper()
	return s.callWith(i, method, path, body, nil)
}

// callWith is call with request headers.
func (s *stack) callWith(i int, method, path string, body any, headers map[string]string) response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.gateways[i%len(s.gateways)]+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k) // a test that sends no such header
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		s.t.Errorf("%s %s: %v", method, path, err)
		return response{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// mustCall is call that fails the test unless the status is want.
func (s *stack) mustCall(i int, want int, method, path string, body any) response {
	s.t.Helper()
	r := s.call(i, method, path, body)
	if r.Status != want {
		s.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.Status, want, r.Body)
	}
	return r
}

// seedCatalog upserts items through the pipeline.
func (s *stack) seedCatalog(items map[string]map[string]any) {
	s.t.Helper()
	for sku, item := range items {
		s.mustSetUp(http.StatusOK, http.MethodPut, "/v1/catalog/"+sku, item)
	}
}

// eventsOf returns testTenant's events of aggregate id on the domain's events
// topic, in topic order.
func (s *stack) eventsOf(domain, id string) []envelope.Event {
	s.t.Helper()
	var out []envelope.Event
	for _, r := range s.readTopic(s.topics(domain).Events) {
		if string(r.Key) != envelope.StreamKey(testTenant, id) {
			continue
		}
		ev, err := envelope.DecodeEvent(r)
		if err != nil {
			s.t.Errorf("undecodable event at %d: %v", r.Offset, err)
			continue
		}
		out = append(out, ev)
	}
	return out
}

// dlqRecords reads a dead-letter topic.
func (s *stack) dlqRecords(topic string) []*kgo.Record { return s.readTopic(topic) }

// readTopic reads topic from the start (read_committed) until it is quiet.
func (s *stack) readTopic(topic string) []*kgo.Record {
	s.t.Helper()
	cl := s.k.Client(s.t, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		if fetches.NumRecords() == 0 {
			return out
		}
		out = append(out, fetches.Records()...)
	}
}

func headerOf(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

var defaultCatalog = map[string]map[string]any{
	"apple":  {"name": "Apple", "unitPrice": 120, "stock": 100, "maxPerOrder": 1000, "active": true},
	"pear":   {"name": "Pear", "unitPrice": 90, "stock": 5, "maxPerOrder": 3, "active": true},
	"banana": {"name": "Banana", "unitPrice": 50, "stock": 100, "maxPerOrder": 10, "active": false},
}

func skus(items []any) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.(map[string]any)["sku"].(string))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func stringsReader(s string) io.Reader {
	if s == "" {
		return nil
	}
	return bytes.NewReader([]byte(s))
}

//go:build chaos

// Package chaos runs the services as separate OS processes — two gateways
// behind a load balancer, two aggregators, two projectors — against a real
// Apache Kafka (one broker, then a three-node cluster) and a real PostgreSQL
// that it starts itself, drives a steady load of order commands from many
// concurrent clients (many orders, and hot orders many clients write at
// once), injects faults one phase at a time, and then checks, as Jepsen's
// queue checkers do, that nothing was lost, duplicated or reordered:
//
//   - every command answered 2xx is applied, exactly once (one event carries
//     its command ID on the events topic), at the version it was answered;
//   - every aggregate's event versions are 1..n, no gap, no duplicate;
//   - every command answered 202 reaches a final status, and one applied has
//     its event at the version its status reports;
//   - no request hangs: each ends in 2xx, 202, 4xx, or 502/503 while a
//     dependency is down, within the client's bound;
//   - the system recovers by itself: the time from each fault's end to the
//     next round trip that starts and succeeds after it is measured, and
//     must stay under recoveryBound.
//
// Besides crashes, it pauses instances (pause_test.go): SIGSTOPped past their
// group session and transaction timeouts, they wake as zombies whose writes
// must not be read.
//
// Run it with `make chaos` (CHAOS_PHASE sets each phase's length,
// CHAOS_FAULTS picks faults by name); with CHAOS_REPORT set it writes the
// tables of results to that file.
package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/deploy/local/kafkalocal"
	"github.com/answerback/answerback/deploy/local/pglocal"
	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/testenv"
)

// recoveryBound is how long the system may take, after a fault ends, to
// answer a new command again.
const recoveryBound = 60 * time.Second

// fault is one phase of the run: inject breaks something at a random moment
// of the phase, recover mends it hold later (the stack's downFor when hold is
// 0); repeat times per phase. check, when set, runs once the system answered
// again after each repetition: it verifies the fault's aftermath.
type fault struct {
	name string
	// optIn: run only when CHAOS_FAULTS names it (a fault with an open
	// finding, kept out of the default run).
	optIn   bool
	repeat  int // 0 means once
	inject  func()
	recover func()
	hold    time.Duration
	check   func()
}

// stack is what a scenario runs: the infrastructure and the service processes.
type stack struct {
	t                                 *testing.T
	ctx                               context.Context
	broker                            *kafkalocal.Cluster
	pgDir                             string
	pgPort                            int
	pg                                *pglocal.Server
	gateways, aggregators, projectors []*proc
	extraAggregator, extraProjector   *proc
	downFor                           time.Duration
	admin                             *kadm.Client // on the stack's brokers, for the suite's own look-ups
	pgProxy                           *netProxy    // between the services and PostgreSQL
	cluster                           *cluster     // the load and its record
}

// scenario is one infrastructure setup and the faults injected into it.
type scenario struct {
	name       string
	kafkaNodes int
	faults     func(s *stack) []fault
}

var scenarios = []scenario{
	{name: "one Kafka broker", kafkaNodes: 1, faults: func(s *stack) []fault {
		t := s.t
		networkFaults := s.networkFaults()
		return []fault{
			{name: "SIGKILL gateway-1 ×2", repeat: 2, inject: s.kill(s.gateways[0]), recover: func() { s.gateways[0].start(t) }},
			{name: "SIGKILL aggregator-1 ×2", repeat: 2, inject: s.kill(s.aggregators[0]), recover: func() { s.aggregators[0].start(t) }},
			{name: "SIGKILL projector-1 ×2", repeat: 2, inject: s.kill(s.projectors[0]), recover: func() { s.projectors[0].start(t) }},
			// The woken aggregator may stop fenced (its supervisor restarts
			// it), never for another reason; a projector has no reason to stop.
			s.pauseFault("paused aggregator-1 (SIGSTOP past its session and transaction timeouts, SIGCONT)", s.aggregators[0],
				"orders-aggregator", "orders.snapshots", aggregate.ErrProducerFenced.Error()),
			s.pauseFault("paused projector-1 (SIGSTOP past its session timeout, SIGCONT)", s.projectors[0],
				"views-projector", "", ""),
			{name: "SIGKILL both aggregators", inject: func() { s.kill(s.aggregators[0])(); s.kill(s.aggregators[1])() },
				recover: func() { s.aggregators[0].start(t); s.aggregators[1].start(t) }},
			{name: "Kafka broker SIGKILL and restart", inject: func() { s.killBroker(1) }, recover: func() {
				if err := s.broker.Restart(s.ctx, 1); err != nil {
					t.Errorf("broker restart: %v", err)
				}
			}},
			{name: "PostgreSQL restart", inject: func() {
				if err := s.pg.Stop(s.ctx); err != nil {
					t.Errorf("stopping PostgreSQL: %v", err)
				}
				s.mustRefuse("PostgreSQL", fmt.Sprintf("127.0.0.1:%d", s.pgPort))
			}, recover: func() {
				pg, err := pglocal.Start(s.ctx, pglocal.Options{Dir: s.pgDir, Port: s.pgPort, Durable: true})
				if err != nil {
					t.Errorf("postgres restart: %v", err)
					return
				}
				s.pg = pg
			}},
			// Past the gateways' read and produce timeouts and the clients'
			// reply wait (3 s each): no request may outlive its bound.
			{name: "PostgreSQL stalled (SIGSTOP of the server and its backends, SIGCONT)", hold: max(s.downFor, 8*time.Second),
				inject: func() { s.stallPostgres(syscall.SIGSTOP) }, recover: func() { s.stallPostgres(syscall.SIGCONT) }},
			networkFaults[0], networkFaults[1], networkFaults[2],
			{name: "rebalance storm (instances join and leave)", inject: func() {
				for range 3 {
					s.extraAggregator.start(t)
					s.extraProjector.start(t)
					time.Sleep(s.downFor / 6)
					s.extraAggregator.stop()
					s.extraProjector.stop()
				}
			}, recover: func() {}},
		}
	}},
	{name: "three-node Kafka cluster (RF 3, min.insync.replicas 2)", kafkaNodes: 3, faults: func(s *stack) []fault {
		var killed []int
		killNodes := func(ids ...int) {
			killed = ids
			s.t.Logf("killing Kafka nodes %v", ids)
			for _, id := range ids {
				s.killBroker(id)
			}
		}
		restartKilled := func() {
			if err := s.broker.Restart(s.ctx, killed...); err != nil {
				s.t.Errorf("restart of nodes %v: %v", killed, err)
			}
		}
		return []fault{
			{name: "SIGKILL the leader of orders.commands/0 and restart it",
				inject: func() { killNodes(s.partitionLeader("orders.commands", 0)) }, recover: restartKilled},
			// The transaction and group coordinators move: every aggregator's
			// transactions and every group's offsets find a new leader.
			{name: "SIGKILL the node leading the most transaction-state and consumer-offsets partitions, restart it",
				inject: func() { killNodes(s.busiestCoordinator()) }, recover: restartKilled},
			{name: "one broker down for most of the phase (SIGKILL, restart at its end)", hold: 3 * s.downFor,
				inject: func() { killNodes(3) }, recover: restartKilled},
			// Below min.insync.replicas and the controllers' quorum: commands
			// must be refused (503 with Retry-After), and nothing acknowledged
			// before lost once the brokers return. Opt-in (CHAOS_FAULTS="two of
			// three"): it found a command applied twice, at the same version —
			// see docs/design/fault-tolerance.md, "Open".
			{name: "two of three brokers down (SIGKILL, restart)", optIn: true,
				inject: func() { killNodes(2, 3) }, recover: restartKilled},
		}
	}},
}

// busiestCoordinator is the node that leads the most partitions of
// __transaction_state and __consumer_offsets.
func (s *stack) busiestCoordinator() int {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	details, err := s.admin.ListTopics(ctx, "__transaction_state", "__consumer_offsets")
	if err != nil {
		s.t.Fatalf("metadata of the internal topics: %v", err)
	}
	led := map[int]int{}
	busiest := 1
	for _, d := range details {
		for _, p := range d.Partitions {
			led[int(p.Leader)]++
			if led[int(p.Leader)] > led[busiest] {
				busiest = int(p.Leader)
			}
		}
	}
	s.t.Logf("partitions of the coordinators' topics led per node: %v", led)
	return busiest
}

func TestChaos(t *testing.T) {
	for _, tool := range []string{"java", "mvn"} {
		if _, err := lookPath(tool); err != nil {
			testenv.Unavailable(t, "chaos suite: %s not on PATH", tool)
		}
	}
	phase := envDuration("CHAOS_PHASE", 20*time.Second)
	only := os.Getenv("CHAOS_FAULTS") // comma-separated substrings of fault names; empty: all
	var reports []string
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			reports = append(reports, runScenario(t, sc, phase, only))
		})
	}
	report := header(phase) + strings.Join(reports, "\n")
	t.Log("\n" + report)
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Errorf("writing the report: %v", err)
		}
	}
}

// runScenario starts the stack of sc, runs the baseline and every selected
// fault under load, checks the invariants and returns the report's section.
func runScenario(t *testing.T, sc scenario, phase time.Duration, only string) string {
	ctx := context.Background()
	// The services' logs stay behind when the run fails or CHAOS_KEEP_LOGS is set.
	work, err := os.MkdirTemp("", "answerback-chaos")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("CHAOS_KEEP_LOGS") == "" {
			_ = os.RemoveAll(work)
		}
	})
	cache := os.Getenv("KAFKA_JARS_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "answerback-kafka-cache")
	}
	s := &stack{t: t, ctx: ctx, pgDir: filepath.Join(work, "postgres"), pgPort: testenv.FreePort(t), downFor: phase / 4}
	s.broker, err = kafkalocal.Start(ctx, kafkalocal.Options{Dir: filepath.Join(work, "kafka"), CacheDir: cache, Nodes: sc.kafkaNodes, Port: testenv.FreeKafkaPorts(t, sc.kafkaNodes)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.broker.Stop() })
	adminClient, err := kgo.NewClient(kgo.SeedBrokers(s.broker.Seeds()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adminClient.Close)
	s.admin = kadm.NewClient(adminClient)
	s.pg, err = pglocal.Start(ctx, pglocal.Options{Dir: s.pgDir, Port: s.pgPort, Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.pg.Stop(context.Background()) })
	brokers := strings.Join(s.broker.Seeds(), ",")
	dsn := s.pg.DSN("postgres")
	// The services reach PostgreSQL through a proxy that network faults
	// act on; the suite's own look-ups do not.
	s.pgProxy = startProxy(t, "postgres", fmt.Sprintf("127.0.0.1:%d", s.pgPort))
	servicesDSN := proxiedDSN(dsn, s.pgProxy.Addr(), s.pgPort)
	t.Logf("Apache Kafka %s at %s, PostgreSQL at %s (the services' through %s)", s.broker.Version(), brokers, dsn, s.pgProxy.Addr())

	bin := buildServices(t)
	common := []string{"KAFKA_BROKERS=" + brokers, "DATABASE_URL=" + servicesDSN, "LOG_LEVEL=warn"}
	// The gateways trust a development key's JWKS file, as they would an
	// identity provider's.
	key, err := auth.LoadOrCreateDevKey(work)
	if err != nil {
		t.Fatal(err)
	}
	gatewayAuth, err := key.WriteJWKS(filepath.Join(work, "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := key.Mint("chaos", "chaos", auth.AllScopes, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newProc := func(name, svc string, env ...string) *proc {
		return newProcess(name, filepath.Join(bin, svc), append(append([]string{}, common...), env...), filepath.Join(work, name+".log"))
	}
	var gatewayAddrs []string
	for i := 1; i <= 2; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		gatewayAddrs = append(gatewayAddrs, addr)
		s.gateways = append(s.gateways, newProc(fmt.Sprintf("gateway-%d", i), "gateway",
			append([]string{"HTTP_ADDR=" + addr, fmt.Sprintf("INSTANCE_ID=chaos-gw%d", i), "REPLY_WAIT=3s"}, gatewayAuth...)...))
		s.aggregators = append(s.aggregators, newProc(fmt.Sprintf("aggregator-%d", i), "aggregator", fmt.Sprintf("INSTANCE_ID=chaos-agg%d", i)))
		s.projectors = append(s.projectors, newProc(fmt.Sprintf("projector-%d", i), "projector"))
	}
	s.extraAggregator = newProc("aggregator-3", "aggregator", "INSTANCE_ID=chaos-agg3")
	s.extraProjector = newProc("projector-3", "projector")
	all := append(append(append([]*proc{}, s.gateways...), s.aggregators...), s.projectors...)
	// Projectors first: they migrate the schema the gateways read.
	for _, p := range append(append(append([]*proc{}, s.projectors...), s.aggregators...), s.gateways...) {
		p.start(t)
	}
	t.Cleanup(func() {
		for _, p := range append(all, s.extraAggregator, s.extraProjector) {
			p.stop()
		}
		if t.Failed() || os.Getenv("CHAOS_KEEP_LOGS") != "" {
			t.Logf("service logs are in %s", work)
		}
		if t.Failed() {
			for _, p := range all {
				if b, err := os.ReadFile(p.Log); err == nil && len(b) > 0 {
					t.Logf("--- %s (last 2000 bytes)\n%s", p.Name, tail(b, 2000))
				}
			}
		}
	})
	lb := startBalancer(t, gatewayAddrs)
	c := newCluster(t, lb, token)
	c.brokers = brokers
	c.waitReady(90 * time.Second)
	c.seed()
	s.cluster = c
	db, err := pgxpool.New(ctx, dsn) // the suite's own look-ups: outcomes, the view
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)

	faults := append([]fault{{name: "none (baseline)"}}, sc.faults(s)...)
	c.setPhase(faults[0].name) // the load starts in the baseline phase
	load := c.startLoad(16)
	for _, f := range faults {
		named := only != "" && matchesAny(f.name, strings.Split(only, ","))
		if f.inject != nil && (only != "" && !named || f.optIn && !named) {
			continue
		}
		before := s.restarts()
		c.phase(f, phase, s.downFor)
		c.afterPhase(f, s.restarts()-before, db)
	}
	load.stop()
	c.settle(2 * time.Minute)
	return c.report(sc.name, c.check(db, s.admin))
}

// restarts counts the restarts of every service process, made by their
// supervisor after they exited with an error on their own.
func (s *stack) restarts() int64 {
	var n int64
	for _, p := range append(append(append([]*proc{s.extraAggregator, s.extraProjector}, s.gateways...), s.aggregators...), s.projectors...) {
		n += p.Restarts()
	}
	return n
}

// afterPhase counts the restarts of fault's phase — more than one per
// injection fails the run — and compares the view with the events as the
// phase ends, under load.
func (c *cluster) afterPhase(f fault, restarts int64, db *pgxpool.Pool) {
	c.mu.Lock()
	c.restarts[f.name] += restarts
	c.mu.Unlock()
	if restarts > int64(max(f.repeat, 1)) {
		c.t.Errorf("phase %q: %d services restarted by themselves, more than one per injection", f.name, restarts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	diffs, err := viewMismatches(ctx, strings.Split(c.brokers, ","), db, "")
	verdict := viewVerdict(diffs)
	if err != nil {
		verdict = "not compared: " + err.Error()
		c.t.Errorf("phase %q: comparing the view with the events: %v", f.name, err)
	}
	for _, d := range diffs {
		c.t.Errorf("phase %q: the view differs from the events: %s", f.name, d)
	}
	c.mu.Lock()
	c.viewChecks[f.name] = verdict
	c.mu.Unlock()
}

// kill returns the injection that SIGKILLs p, checked: its process is gone.
func (s *stack) kill(p *proc) func() {
	return func() {
		pid := p.Pid()
		p.kill()
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			s.t.Errorf("%s (pid %d) still runs after SIGKILL", p.Name, pid)
		}
	}
}

// killBroker SIGKILLs Kafka node id, checked: its port refuses connections.
func (s *stack) killBroker(id int) {
	if err := s.broker.Kill(id); err != nil {
		s.t.Errorf("killing Kafka node %d: %v", id, err)
	}
	s.mustRefuse(fmt.Sprintf("Kafka node %d", id), s.broker.Nodes()[id-1].Addr())
}

// mustRefuse checks that a fault took effect: addr refuses connections.
func (s *stack) mustRefuse(what, addr string) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		conn.Close()
		s.t.Errorf("fault not in effect: %s still accepts connections at %s", what, addr)
	}
}

// partitionLeader returns the node that leads topic's partition.
func (s *stack) partitionLeader(topic string, partition int32) int {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	details, err := s.admin.ListTopics(ctx, topic)
	if err != nil {
		s.t.Fatalf("metadata of %s: %v", topic, err)
	}
	p, ok := details[topic].Partitions[partition]
	if !ok {
		s.t.Fatalf("%s has no partition %d", topic, partition)
	}
	return int(p.Leader)
}

func matchesAny(name string, subs []string) bool {
	for _, s := range subs {
		if s != "" && strings.Contains(strings.ToLower(name), strings.ToLower(strings.TrimSpace(s))) {
			return true
		}
	}
	return false
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// randomDelay is a random moment within the first part of a slot.
func randomDelay(slot time.Duration) time.Duration {
	if slot <= 0 {
		return 0
	}
	return rand.N(slot)
}

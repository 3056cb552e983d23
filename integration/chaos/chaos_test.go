//go:build chaos

// Package chaos runs the services as separate OS processes — two gateways
// behind a load balancer, two aggregators, two projectors — against a real
// Apache Kafka broker and a real PostgreSQL that it starts itself, drives a
// steady load of order commands from many concurrent clients (many orders,
// and hot orders many clients write at once), injects faults one phase at a
// time, and then checks, as Jepsen's queue checkers do, that nothing was
// lost, duplicated or reordered:
//
//   - every command answered 2xx is applied, exactly once (one event carries
//     its command ID on the events topic);
//   - every aggregate's event versions are 1..n, no gap, no duplicate;
//   - every command answered 202 reaches a final status;
//   - no request hangs: each ends in 2xx, 202, 4xx, or 502/503 while a
//     dependency is down, within the client's bound;
//   - the system recovers by itself: the time from each fault's end to the
//     next successful round trip is measured.
//
// Run it with `make chaos` (CHAOS_PHASE sets each phase's length); with
// CHAOS_REPORT set it writes the table of results to that file.
package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/answerback/answerback/deploy/local/kafkalocal"
	"github.com/answerback/answerback/deploy/local/pglocal"
	"github.com/answerback/answerback/libs/testenv"
)

// fault is one phase of the run: inject breaks something at the start of
// the phase, recover mends it a few seconds later.
type fault struct {
	name    string
	inject  func()
	recover func()
}

func TestChaos(t *testing.T) {
	for _, tool := range []string{"java", "mvn"} {
		if _, err := lookPath(tool); err != nil {
			testenv.Unavailable(t, "chaos suite: %s not on PATH", tool)
		}
	}
	phase := envDuration("CHAOS_PHASE", 20*time.Second)
	downFor := phase / 4
	ctx := context.Background()
	// The services' logs stay behind when the run fails.
	work, err := os.MkdirTemp("", "answerback-chaos")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(work)
		}
	})
	cache := os.Getenv("KAFKA_JARS_CACHE")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "answerback-kafka-cache")
	}

	broker, err := kafkalocal.Start(ctx, kafkalocal.Options{Dir: filepath.Join(work, "kafka"), CacheDir: cache, Port: freePortPair(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.Stop() })
	pgDir := filepath.Join(work, "postgres")
	pgPort := freePort(t)
	pg, err := pglocal.Start(ctx, pglocal.Options{Dir: pgDir, Port: pgPort, Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	brokers := strings.Join(broker.Seeds(), ",")
	dsn := pg.DSN("postgres")
	t.Logf("Apache Kafka %s at %s, PostgreSQL at %s", broker.Version(), brokers, dsn)

	bin := buildServices(t)
	common := []string{"KAFKA_BROKERS=" + brokers, "DATABASE_URL=" + dsn, "LOG_LEVEL=warn"}
	newProc := func(name, svc string, env ...string) *proc {
		return &proc{name: name, bin: filepath.Join(bin, svc), env: append(append([]string{}, common...), env...), log: filepath.Join(work, name+".log")}
	}
	var gatewayAddrs []string
	var gateways, aggregators, projectors []*proc
	for i := 1; i <= 2; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		gatewayAddrs = append(gatewayAddrs, addr)
		gateways = append(gateways, newProc(fmt.Sprintf("gateway-%d", i), "gateway", "HTTP_ADDR="+addr, fmt.Sprintf("INSTANCE_ID=chaos-gw%d", i), "REPLY_WAIT=3s"))
		aggregators = append(aggregators, newProc(fmt.Sprintf("aggregator-%d", i), "aggregator", fmt.Sprintf("INSTANCE_ID=chaos-agg%d", i)))
		projectors = append(projectors, newProc(fmt.Sprintf("projector-%d", i), "projector"))
	}
	extraAggregator := newProc("aggregator-3", "aggregator", "INSTANCE_ID=chaos-agg3")
	extraProjector := newProc("projector-3", "projector")
	all := append(append(append([]*proc{}, gateways...), aggregators...), projectors...)
	// Projectors first: they migrate the schema the gateways read.
	for _, p := range append(append(projectors, aggregators...), gateways...) {
		p.start(t)
	}
	t.Cleanup(func() {
		for _, p := range append(all, extraAggregator, extraProjector) {
			p.stop()
		}
		if t.Failed() {
			t.Logf("service logs are in %s", work)
			for _, p := range all {
				if b, err := os.ReadFile(p.log); err == nil && len(b) > 0 {
					t.Logf("--- %s (last 2000 bytes)\n%s", p.name, tail(b, 2000))
				}
			}
		}
	})
	lb := startBalancer(t, gatewayAddrs)
	c := newCluster(t, lb)
	c.brokers = brokers
	c.waitReady(90 * time.Second)
	c.seed()

	faults := []fault{
		{name: "none (baseline)"},
		{name: "SIGKILL gateway-1", inject: gateways[0].kill, recover: func() { gateways[0].start(t) }},
		{name: "SIGKILL aggregator-1", inject: aggregators[0].kill, recover: func() { aggregators[0].start(t) }},
		{name: "SIGKILL projector-1", inject: projectors[0].kill, recover: func() { projectors[0].start(t) }},
		{name: "SIGKILL both aggregators", inject: func() { aggregators[0].kill(); aggregators[1].kill() },
			recover: func() { aggregators[0].start(t); aggregators[1].start(t) }},
		{name: "Kafka broker SIGKILL and restart", inject: func() { _ = broker.Kill(1) }, recover: func() {
			if err := broker.Restart(ctx, 1); err != nil {
				t.Errorf("broker restart: %v", err)
			}
		}},
		{name: "PostgreSQL restart", inject: func() { _ = pg.Stop(ctx) }, recover: func() {
			if _, err := pglocal.Start(ctx, pglocal.Options{Dir: pgDir, Port: pgPort, Durable: true}); err != nil {
				t.Errorf("postgres restart: %v", err)
			}
		}},
		{name: "rebalance storm (instances join and leave)", inject: func() {
			for range 3 {
				extraAggregator.start(t)
				extraProjector.start(t)
				time.Sleep(downFor / 6)
				extraAggregator.stop()
				extraProjector.stop()
			}
		}, recover: func() {}},
	}

	c.fault = faults[0].name // the load starts in the baseline phase
	load := c.startLoad(16)
	only := os.Getenv("CHAOS_FAULTS") // comma-separated substrings of fault names; empty: all
	for _, f := range faults {
		if f.inject != nil && only != "" && !matchesAny(f.name, strings.Split(only, ",")) {
			continue
		}
		c.phase(f, phase, downFor)
	}
	load.stop()
	c.settle(2 * time.Minute)
	results := c.check()
	report := c.report(results, phase)
	t.Log("\n" + report)
	if path := os.Getenv("CHAOS_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Errorf("writing the report: %v", err)
		}
	}
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

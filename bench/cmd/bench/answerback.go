package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/answerback/answerback/deploy/local/procs"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/testenv/ports"
)

// layout is how one Answerback deployment is laid out on the run's broker
// and database.
type layout struct {
	prefix     string // topic prefix ("" for the main series)
	database   string
	partitions int // of the commands, events and snapshots topics
	instances  int // aggregators and projectors each
	// root is the source tree the services are built from; "" is the
	// run's (config.root). name is the system's name; "" is Answerback.
	root, name string
}

var defaultLayout = layout{database: "answerback", partitions: 6, instances: 1}

// startAnswerback runs the product as it is deployed: projectors, aggregators
// and two gateways as separate processes on the run's broker and database,
// behind a round-robin load balancer (a process too); then seeds the
// catalog.
func startAnswerback(ctx context.Context, e *env, cfg config, l layout, log *slog.Logger) (*system, error) {
	bin, err := procs.Build(cmp.Or(l.root, cfg.root), filepath.Join(e.dir, "bin-"+l.database))
	if err != nil {
		return nil, err
	}
	dsn, err := e.database(ctx, l.database)
	if err != nil {
		return nil, err
	}
	common := []string{"KAFKA_BROKERS=" + strings.Join(e.brokers, ","), "DATABASE_URL=" + dsn, "LOG_LEVEL=warn",
		"TOPIC_PREFIX=" + l.prefix, fmt.Sprintf("PARTITIONS=%d", l.partitions)}
	var all []*procs.Proc
	pprofAddrs := map[string]string{}
	newProc := func(name string, env ...string) *procs.Proc {
		svc, _, _ := strings.Cut(name, "-")
		p := &procs.Proc{Name: name, Bin: filepath.Join(bin, svc), Env: append(append([]string{}, common...), env...), Log: filepath.Join(e.dir, l.database+"-"+name+".log"), RestartOnFailure: true}
		if port, err := ports.Free(); err == nil { // its profiles, for the report's profile step
			pprofAddrs[name] = fmt.Sprintf("127.0.0.1:%d", port)
			p.Env = append(p.Env, "METRICS_ADDR="+pprofAddrs[name], "PPROF=true")
		}
		all = append(all, p)
		return p
	}
	stopAll := func() {
		for i := len(all) - 1; i >= 0; i-- {
			all[i].Stop()
		}
	}
	// The gateways verify the bench's development tokens (one key for every
	// deployment of the run).
	authEnv, token, err := gatewayAuth(filepath.Join(e.dir, "auth"))
	if err != nil {
		return nil, fmt.Errorf("the gateways' development key: %w", err)
	}
	var gateways []string
	for i := 1; i <= l.instances; i++ {
		newProc(fmt.Sprintf("projector-%d", i))
		newProc(fmt.Sprintf("aggregator-%d", i), fmt.Sprintf("INSTANCE_ID=bench-agg%d", i))
	}
	for i := 1; i <= 2; i++ {
		port, err := ports.Free()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		gateways = append(gateways, addr)
		newProc(fmt.Sprintf("gateway-%d", i), append([]string{"HTTP_ADDR=" + addr, fmt.Sprintf("INSTANCE_ID=bench-gw%d", i), "REPLY_WAIT=10s"}, authEnv...)...)
	}
	for _, p := range all {
		if err := p.Start(); err != nil {
			stopAll()
			return nil, err
		}
	}
	lb, err := startChild(ctx, childSpec{Balance: gateways}) // a process of its own, as the others
	if err != nil {
		stopAll()
		return nil, err
	}
	sys := &system{name: cmp.Or(l.name, nameAnswerback), url: lb.hello.URL, token: token, stop: func() { lb.stop(); stopAll() },
		pprofAddrs: pprofAddrs, pgDatabase: l.database, pgPid: e.pg.Pid,
		stageSource: &stageSource{brokers: e.brokers, replyTopics: []string{topics.ReplyTopic("", "bench-gw1"), topics.ReplyTopic("", "bench-gw2")}}}
	sys.pids = func() map[string]int {
		m := map[string]int{"balancer": lb.pid}
		for _, p := range all {
			m[p.Name] = p.Pid()
		}
		return m
	}
	e.onBroker(sys)
	sys.createOrder = createOrderAt(sys.url, sys.token)
	if err := seedCatalog(ctx, sys.url, sys.token); err != nil {
		sys.stop()
		return nil, fmt.Errorf("seeding the catalog (logs in %s): %w", e.dir, err)
	}
	log.Info("Answerback up", "url", sys.url, "gateways", gateways)
	return sys, nil
}

// createOrderAt creates orders through the API at base, with token.
func createOrderAt(base, token string) func(ctx context.Context, id string) error {
	return func(ctx context.Context, id string) error {
		body, _ := json.Marshal(map[string]any{"id": id, "customerId": "bench"})
		return retrying(ctx, func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/orders", strings.NewReader(string(body)))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "create-"+id) // a retry after a 503 creates nothing twice
			authorize(req, token)
			return do(req, http.StatusCreated)
		})
	}
}

// seedCatalog puts skuCount items on sale through the API at base, with
// token: in the catalog of the token's tenant, the one the orders use.
func seedCatalog(ctx context.Context, base, token string) error {
	for i := range skuCount {
		body, _ := json.Marshal(map[string]any{"name": "Item " + skuName(i), "unitPrice": 100 + i, "stock": 1_000_000_000, "maxPerOrder": 1000, "active": true})
		err := retrying(ctx, func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v1/catalog/"+skuName(i), strings.NewReader(string(body)))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "seed-"+skuName(i))
			authorize(req, token)
			return do(req, http.StatusOK)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// retrying calls f until it succeeds or a minute has passed (the stack is
// still starting: topics being created answer 503).
func retrying(ctx context.Context, f func() error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// startBaseline runs Answerback as built from the commit cfg.baseline — a
// git worktree of the run's repository — beside the run's own, on the same
// broker and database server: a regression check in the same run.
func startBaseline(ctx context.Context, e *env, cfg config, log *slog.Logger) (*system, error) {
	rev, err := exec.CommandContext(ctx, "git", "-C", cfg.root, "rev-parse", "--short=12", cfg.baseline+"^{commit}").Output()
	if err != nil {
		return nil, fmt.Errorf("-baseline %q: not a commit of %s: %w", cfg.baseline, cfg.root, err)
	}
	dir := filepath.Join(e.dir, "baseline-src")
	if out, err := exec.CommandContext(ctx, "git", "-C", cfg.root, "worktree", "add", "--force", "--detach", dir, cfg.baseline).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("-baseline: git worktree add: %w\n%s", err, out)
	}
	removeTree := func() { _ = exec.Command("git", "-C", cfg.root, "worktree", "remove", "--force", dir).Run() }
	l := defaultLayout
	l.root, l.database, l.prefix, l.name = dir, "answerback_baseline", "baseline.", baselineName(strings.TrimSpace(string(rev)))
	sys, err := startAnswerback(ctx, e, cfg, l, log)
	if err != nil {
		removeTree()
		return nil, fmt.Errorf("the baseline %s: %w", cfg.baseline, err)
	}
	stop := sys.stop
	sys.stop = func() { stop(); removeTree() }
	sys.stageSource = nil // the stage probe is the run's own code's
	return sys, nil
}

// baselineName names Answerback built from commit rev.
func baselineName(rev string) string { return nameAnswerback + " at " + rev }

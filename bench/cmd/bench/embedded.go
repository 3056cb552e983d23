package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/answerback/answerback/deploy/local/procs"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/testenv/ports"
)

// startEmbedded runs the embedded default — `make run`'s devstack: kfake, the
// aggregator, the projector and two gateways behind a load balancer, all in
// one process — on the run's PostgreSQL, and seeds the bench's catalog (the
// devstack's own sample items stay on sale beside it). The embedded broker
// counts its requests on devstack's metrics endpoint.
func startEmbedded(ctx context.Context, e *env, cfg config, log *slog.Logger) (*system, error) {
	bin := filepath.Join(e.dir, "bin", "devstack")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./services/devstack")
	build.Dir = cfg.root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build devstack: %w\n%s", err, out)
	}
	dsn, err := e.database(ctx, "embedded")
	if err != nil {
		return nil, err
	}
	ports, err := ports.FreeN(5)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	dataDir := filepath.Join(e.dir, "devstack")
	p := &procs.Proc{Name: "devstack", Bin: bin, Log: filepath.Join(e.dir, "devstack.log"), Env: []string{
		"ANSWERBACK_DATA_DIR=" + dataDir,
		"ANSWERBACK_EMBEDDED_KAFKA_ADDR=" + addr(0),
		"DATABASE_URL=" + dsn,
		"HTTP_ADDR=" + addr(1),
		"GATEWAY_ADDRS=" + addr(2) + "," + addr(3),
		"METRICS_ADDR=" + addr(4),
		"KAFKA_BROKERS=", // the embedded broker, whatever the caller's environment says
	}}
	if err := p.Start(); err != nil {
		return nil, err
	}
	url := "http://" + addr(1)
	// Its gateways verify tokens of the development key it makes in its
	// data folder (its own sample catalog belongs to tenant "demo"; the
	// bench's, seeded below, to the bench's tenant).
	token, err := devstackToken(ctx, url, dataDir)
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w; the end of its log:\n%s", err, tail(p.Log, 20))
	}
	sys := &system{name: nameEmbedded, url: url, token: token, stop: p.Stop, createOrder: createOrderAt(url, token),
		stageSource: &stageSource{brokers: []string{addr(0)}, replyTopics: []string{topics.ReplyTopic("", "devstack-gw1"), topics.ReplyTopic("", "devstack-gw2")}}}
	sys.pids = func() map[string]int { return map[string]int{"devstack": p.Pid()} }
	sys.pgDatabase, sys.pgPid = "embedded", e.pg.Pid
	metrics := "http://" + addr(4) + "/metrics"
	sys.brokerRequests = func(ctx context.Context) (map[string]float64, error) {
		return promCounts(ctx, metrics, embeddedBrokerRequests, "api")
	}
	if err := seedCatalog(ctx, url, token); err != nil {
		p.Stop()
		return nil, fmt.Errorf("seeding the embedded default's catalog: %w; the end of its log:\n%s", err, tail(p.Log, 20))
	}
	log.Info("embedded default up", "url", url)
	return sys, nil
}

// tail returns the last n lines of the file at path, or why it cannot.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// embeddedBrokerRequests is the counter of requests devstack's embedded
// broker serves, by label api.
const embeddedBrokerRequests = "answerback_embedded_broker_requests_total"

// promCounts reads the Prometheus metrics at url and returns counter
// metric's values by the value of label.
func promCounts(ctx context.Context, url, metric, label string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	counts, err := parsePromCounter(string(body), metric, label)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return counts, nil
}

// parsePromCounter reads metric's samples from Prometheus' text format —
// lines such as `name{api="Produce"} 12` — by the value of label.
func parsePromCounter(text, metric, label string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		labels, ok := strings.CutPrefix(line, metric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(labels, "} ")
		if !ok {
			return nil, fmt.Errorf("malformed sample %q", line)
		}
		_, rest, ok := strings.Cut(","+labels, ","+label+`="`)
		if !ok {
			return nil, fmt.Errorf("sample %q has no label %s", line, label)
		}
		name, _, _ := strings.Cut(rest, `"`)
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q: %w", line, err)
		}
		out[name] += v
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s samples", metric)
	}
	return out, nil
}

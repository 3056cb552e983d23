package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"

	"github.com/answerback/answerback/deploy/local/procs"
)

// startEmbedded runs the embedded default — `make run`'s devstack: kfake, the
// aggregator, the projector and two gateways behind a load balancer, all in
// one process — on the run's PostgreSQL, and seeds the bench's catalog (the
// devstack's own sample items stay on sale beside it).
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
	var ports [5]int
	for i := range ports {
		if ports[i], err = procs.FreePort(); err != nil {
			return nil, err
		}
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	p := &procs.Proc{Name: "devstack", Bin: bin, Log: filepath.Join(e.dir, "devstack.log"), Env: []string{
		"ANSWERBACK_DATA_DIR=" + filepath.Join(e.dir, "devstack"),
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
	sys := &system{name: nameEmbedded, url: url, stop: p.Stop, createOrder: createOrderAt(url)}
	sys.pids = func() map[string]int { return map[string]int{"devstack": p.Pid()} }
	if err := seedCatalog(ctx, url); err != nil {
		p.Stop()
		return nil, fmt.Errorf("seeding the embedded default's catalog (log %s): %w", p.Log, err)
	}
	log.Info("embedded default up", "url", url)
	return sys, nil
}

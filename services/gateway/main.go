// Command gateway serves the REST API: it turns requests into commands and
// answers each with the reply derived by the read side.
//
// Configuration (environment, flags override): KAFKA_BROKERS, DATABASE_URL,
// TOPIC_PREFIX, HTTP_ADDR (default :8080), INSTANCE_ID (default
// "<host>-<random>": each instance has a reply topic of its own), REPLY_WAIT, RATE_LIMIT,
// METRICS_ADDR (Prometheus metrics at /metrics; default off).
//
// On SIGTERM it stops accepting connections, lets in-flight requests finish,
// and deletes its reply topic; a second signal exits at once.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/gateway/server"
)

func main() {
	log := service.Logger("gateway")
	f := service.NewFlags("gateway")
	kafka := f.Kafka()
	dsn := f.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
	addr := f.String("http-addr", "HTTP_ADDR", ":8080", "HTTP listen address")
	instance := f.String("instance-id", "INSTANCE_ID", service.Hostname()+"-"+randomSuffix(), "this instance's name (its reply topic is replies.<name>)")
	wait := f.Duration("reply-wait", "REPLY_WAIT", 5*time.Second, "how long a request waits for its reply before answering 202")
	rate := f.Int("rate-limit", "RATE_LIMIT", 2000, "most /v1 requests a second per tenant on this gateway; past it 429 (negative: no limit)")
	metrics := f.Metrics()
	f.ParseOrExit(os.Args[1:])
	brokers, prefix := kafka()
	ctx, cancel := service.SignalContext(log)
	defer cancel()
	waitMetrics, err := service.ServeMetrics(ctx, metrics(), log)
	if err != nil {
		log.Error("metrics address unusable", "err", err)
		os.Exit(2)
	}
	defer func() { cancel(); waitMetrics() }() // the server stops when ctx ends
	if err := run(ctx, brokers, *dsn, prefix, *addr, *instance, *wait, *rate, log); err != nil {
		log.Error("gateway failed", "err", err)
		os.Exit(1)
	}
	log.Info("gateway stopped")
}

func run(ctx context.Context, brokers []string, dsn, prefix, addr, instance string, wait time.Duration, rate int, log *slog.Logger) error {
	poolCfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return err
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgx defaults to max(4, CPUs) connections; every request reads the
		// view or records a key, so a busy gateway needs more.
		poolCfg.MaxConns = 32
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	gw, err := server.New(ctx, server.Config{
		InstanceID: instance, Brokers: brokers, TopicPrefix: prefix, Pool: pool,
		DefaultWait: wait, MaxWait: max(wait, 30*time.Second), RateLimit: rate, Logger: log,
		ClientOpts: []kgo.Opt{service.KafkaClientLogger("gateway")},
	})
	if err != nil {
		return err
	}
	return server.Serve(ctx, gw, addr)
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

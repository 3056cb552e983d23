// Command devstack is the embedded default behind `make run`: the whole
// pipeline on this machine in one process, no Docker — two gateway instances
// (8081, 8082) behind a round-robin load balancer (8080), one aggregator and
// one projector, with a seeded catalog.
//
//   - Kafka: franz-go's in-process kfake broker on 127.0.0.1:9092 (so outside
//     tools such as kcat, the ops CLI or a downstream consumer can reach it),
//     persisted under the data folder so a restart keeps what was written —
//     unless KAFKA_BROKERS names a real cluster.
//   - PostgreSQL: a private cluster started from the machine's server binaries
//     under the data folder — unless DATABASE_URL names a server.
//
// Ctrl-C (SIGINT) or SIGTERM stops everything cleanly; a second signal exits at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/answerback/answerback/deploy/local/pglocal"
	"github.com/answerback/answerback/libs/pipeline/service"
)

// config is devstack's configuration: environment variables, overridden by flags.
type config struct {
	dataDir      string
	kafkaAddr    string
	httpAddr     string
	metricsAddr  string // Prometheus metrics of every component; "" off
	gatewayAddrs []string
	// out receives the welcome text (standard output).
	out io.Writer
	// ready, when set, receives the load balancer's base URL once the catalog is seeded (tests).
	ready        chan<- string
	kafkaBrokers string
	databaseURL  string
	pgPort       int
}

func loadConfig(args []string) (config, error) {
	c := config{
		dataDir:      envOr("ANSWERBACK_DATA_DIR", ".data"),
		kafkaAddr:    envOr("ANSWERBACK_EMBEDDED_KAFKA_ADDR", "127.0.0.1:9092"),
		kafkaBrokers: os.Getenv("KAFKA_BROKERS"),
		databaseURL:  os.Getenv("DATABASE_URL"),
		pgPort:       15433,
		httpAddr:     envOr("HTTP_ADDR", "127.0.0.1:8080"),
		metricsAddr:  envOr("METRICS_ADDR", "127.0.0.1:9464"),
		out:          os.Stdout,
	}
	gateways := envOr("GATEWAY_ADDRS", "127.0.0.1:8081,127.0.0.1:8082")
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.StringVar(&c.dataDir, "data", c.dataDir, "folder for the embedded broker's log and the private PostgreSQL cluster (env ANSWERBACK_DATA_DIR)")
	fs.StringVar(&c.kafkaAddr, "kafka-addr", c.kafkaAddr, "listen address of the embedded broker (env ANSWERBACK_EMBEDDED_KAFKA_ADDR)")
	fs.StringVar(&c.kafkaBrokers, "kafka-brokers", c.kafkaBrokers, "use this Kafka instead of the embedded one (env KAFKA_BROKERS)")
	fs.StringVar(&c.databaseURL, "database-url", c.databaseURL, "use this PostgreSQL instead of a private cluster (env DATABASE_URL)")
	fs.IntVar(&c.pgPort, "pg-port", c.pgPort, "port of the private PostgreSQL cluster")
	fs.StringVar(&c.httpAddr, "http-addr", c.httpAddr, "the load balancer's listen address (env HTTP_ADDR)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", c.metricsAddr, "serve Prometheus metrics at /metrics here; empty: off (env METRICS_ADDR)")
	fs.StringVar(&gateways, "gateway-addrs", gateways, "listen addresses of the gateway instances, comma-separated (env GATEWAY_ADDRS)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.gatewayAddrs = service.List(gateways)
	if len(c.gatewayAddrs) == 0 {
		return c, errors.New("--gateway-addrs: at least one gateway is needed")
	}
	host, port, err := net.SplitHostPort(c.kafkaAddr)
	if err != nil || host != "127.0.0.1" {
		return c, fmt.Errorf("--kafka-addr %q: want 127.0.0.1:<port> (the embedded broker listens on loopback only)", c.kafkaAddr)
	}
	if _, err := strconv.Atoi(port); err != nil {
		return c, fmt.Errorf("--kafka-addr %q: bad port", c.kafkaAddr)
	}
	return c, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := loadConfig(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { // owner: main; a second signal after the first exits at once
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		log.Warn("second signal: exiting at once")
		os.Exit(1)
	}()
	stopTracing := service.Tracing(ctx, "answerback-devstack", log)
	err = run(ctx, cfg, log)
	stopTracing()
	if err != nil {
		log.Error("devstack failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	metricsCtx, stopMetrics := context.WithCancel(ctx)
	defer stopMetrics()
	waitMetrics, err := service.ServeMetrics(metricsCtx, service.Admin{Addr: cfg.metricsAddr}, log)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", cfg.metricsAddr, err)
	}
	defer func() { stopMetrics(); waitMetrics() }()
	seeds := cfg.kafkaBrokers
	if seeds == "" {
		port, _ := strconv.Atoi(cfg.kafkaAddr[strings.LastIndexByte(cfg.kafkaAddr, ':')+1:])
		dir := filepath.Join(cfg.dataDir, "kafka")
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir),
			kfake.DefaultNumPartitions(6))
		if err != nil {
			return fmt.Errorf("embedded Kafka on %s: %w", cfg.kafkaAddr, err)
		}
		countRequests(cluster)
		defer func() {
			cluster.Close()
			log.Info("embedded Kafka stopped", "data", dir)
		}()
		seeds = strings.Join(cluster.ListenAddrs(), ",")
		log.Info("embedded Kafka (kfake) started", "addr", seeds, "data", dir)
	} else {
		log.Info("using Kafka from KAFKA_BROKERS", "brokers", seeds)
	}

	dsn := cfg.databaseURL
	if dsn == "" {
		start := time.Now()
		pg, err := pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(cfg.dataDir, "postgres"), Port: cfg.pgPort, Durable: true, Install: true})
		if err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := pg.Stop(stopCtx); err != nil {
				log.Error("stopping PostgreSQL", "err", err)
				return
			}
			log.Info("PostgreSQL stopped")
		}()
		dsn = pg.DSN("postgres")
		log.Info("private PostgreSQL started", "port", pg.Port(), "log", pg.LogPath(), "took", time.Since(start).Round(time.Millisecond))
	} else {
		log.Info("using PostgreSQL from DATABASE_URL")
	}

	return runPipeline(ctx, cfg, service.List(seeds), dsn, log)
}

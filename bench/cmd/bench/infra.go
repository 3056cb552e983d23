package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/deploy/local/kafkalocal"
	"github.com/answerback/answerback/deploy/local/pglocal"
	"github.com/answerback/answerback/libs/testenv/ports"
)

// env is the infrastructure every system of the run shares. In a system's
// child process (child.go) broker is nil: the child reaches the broker
// through brokers only, and pg is the parent's server, found again.
type env struct {
	dir          string
	broker       *kafkalocal.Cluster
	pg           *pglocal.Server
	pgDir        string // pg's folder: where a child finds it again
	brokers      []string
	kafkaVersion string
	// databases are those created through database, in order.
	databases []string
}

func startInfra(ctx context.Context, cfg config, log *slog.Logger) (*env, error) {
	dir, err := os.MkdirTemp("", "answerback-bench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir}
	cache := cfg.cache
	if cache == "" {
		cache = filepath.Join(cfg.root, ".cache", "kafka")
	}
	port, err := ports.FreeKafka(1)
	if err != nil {
		return nil, err
	}
	jmxPort, err := ports.Free()
	if err != nil {
		return nil, err
	}
	// The broker as production runs it: the JVM's default JIT (warmed up
	// before the first series, warmBroker), JMX for its request counts.
	e.broker, err = kafkalocal.Start(ctx, kafkalocal.Options{Dir: filepath.Join(dir, "kafka"), CacheDir: cache, Port: port, HeapMB: 1024,
		FullJIT: true, JMXPort: jmxPort})
	if err != nil {
		return nil, err
	}
	e.brokers, e.kafkaVersion = e.broker.Seeds(), e.broker.Version()
	pgPort, err := ports.Free()
	if err != nil {
		e.stop()
		return nil, err
	}
	e.pgDir = filepath.Join(dir, "postgres")
	e.pg, err = pglocal.Start(ctx, pglocal.Options{Dir: e.pgDir, Port: pgPort, Durable: true})
	if err != nil {
		e.stop()
		return nil, err
	}
	log.Info("infrastructure up", "kafka", e.kafkaVersion, "brokers", e.brokers, "postgres", pgPort, "dir", dir)
	return e, nil
}

// database creates database name and returns its connection string.
func (e *env) database(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, e.pg.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	e.databases = append(e.databases, name)
	return e.pg.DSN(name), nil
}

// onBroker marks sys as a system on the run's Apache Kafka broker: the
// broker's CPU time counts as the cost of component "kafka", and its own
// request counts (JMX) as sys's broker requests.
func (e *env) onBroker(sys *system) {
	pids := sys.pids
	sys.pids = func() map[string]int {
		m := map[string]int{}
		if pids != nil {
			maps.Copy(m, pids())
		}
		m["kafka"] = e.broker.Nodes()[0].Pid()
		return m
	}
	sys.brokerRequests = e.broker.RequestCounts
}

// pool creates database name and opens a pool of at most maxConns
// connections to it (0: pgx's default).
func (e *env) pool(ctx context.Context, name string, maxConns int32) (*pgxpool.Pool, error) {
	dsn, err := e.database(ctx, name)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// commitLatency times n one-row transactions on PostgreSQL one after the
// other and returns their median: the machine's fsync latency, which moves
// every system's figures and varies on a shared host.
func (e *env) commitLatency(ctx context.Context, n int) (time.Duration, error) {
	pool, err := e.pool(ctx, fmt.Sprintf("fsync_probe_%d", time.Now().UnixNano()), 1)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE probe (i int)`); err != nil {
		return 0, err
	}
	took := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := pool.Exec(ctx, `INSERT INTO probe VALUES ($1)`, i); err != nil {
			return 0, err
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took[len(took)/2], nil
}

func (e *env) stop() {
	if e.broker != nil {
		_ = e.broker.Stop()
	}
	if e.pg != nil {
		_ = e.pg.Stop(context.Background())
	}
	_ = os.RemoveAll(e.dir)
}

// javaVersion is the first line of `java -version`: the JVM the broker
// runs on.
func javaVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "java", "-version").CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// describeMachine names the CPU, its cores and the memory.
func describeMachine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
		}
	}
	return fmt.Sprintf("%s, %d cores%s, %s/%s", model, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH)
}

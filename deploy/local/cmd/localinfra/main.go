// Command localinfra starts and stops the real infrastructure the project's
// tests, benchmarks and development runs use on a machine without Docker: an
// Apache Kafka broker (or a three-node cluster) from Maven Central's jars and
// a private PostgreSQL cluster from the machine's server binaries.
//
//	localinfra up   [--dir D] [--kafka-port P] [--kafka-nodes 1|3] [--pg-port P] [--env-file F]
//	localinfra down [--dir D]
//	localinfra jars
//
// "up" leaves both running after it exits and writes KAFKA_BROKERS and
// DATABASE_URL to the env file (shell syntax); "down" stops them. Data and
// logs stay under --dir (kafka/node*/logs, postgres/postgres.log).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/answerback/answerback/deploy/local/kafkalocal"
	"github.com/answerback/answerback/deploy/local/pglocal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "localinfra:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: localinfra up|down|jars [flags]")
	}
	fs := flag.NewFlagSet("localinfra "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", ".cache/infra", "folder for the brokers' and the database's data and logs")
	cache := fs.String("cache", ".cache/kafka", "folder for the Kafka jars (shared)")
	version := fs.String("kafka-version", kafkalocal.DefaultVersion, "Apache Kafka release")
	kafkaPort := fs.Int("kafka-port", 9092, "client port of the first broker")
	nodes := fs.Int("kafka-nodes", 1, "1 broker, or a 3-node cluster (RF 3, min.insync.replicas=2)")
	pgPort := fs.Int("pg-port", 15432, "PostgreSQL port")
	envFile := fs.String("env-file", "", "write KAFKA_BROKERS and DATABASE_URL here (shell syntax)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	kafkaDir := filepath.Join(*dir, "kafka")
	pgDir := filepath.Join(*dir, "postgres")

	switch args[0] {
	case "jars":
		start := time.Now()
		libs, err := kafkalocal.EnsureJars(ctx, *cache, *version, os.Stderr)
		if err != nil {
			return err
		}
		fmt.Printf("Kafka %s jars in %s (%s)\n", *version, libs, time.Since(start).Round(time.Millisecond))
		return nil

	case "up":
		start := time.Now()
		cluster, err := kafkalocal.Start(ctx, kafkalocal.Options{
			Dir: kafkaDir, CacheDir: *cache, Version: *version, Nodes: *nodes, Port: *kafkaPort, Detach: true,
		})
		if err != nil {
			return err
		}
		fmt.Printf("Apache Kafka %s (KRaft, %d node(s)) at %s — logs in %s (%s)\n",
			cluster.Version(), *nodes, strings.Join(cluster.Seeds(), ","), kafkaDir, time.Since(start).Round(time.Millisecond))
		pgStart := time.Now()
		pg, err := pglocal.Start(ctx, pglocal.Options{Dir: pgDir, Port: *pgPort, Install: true})
		if err != nil {
			_ = cluster.Stop()
			return err
		}
		fmt.Printf("PostgreSQL (%s) at 127.0.0.1:%d — log %s (%s)\n", pg.BinDir(), pg.Port(), pg.LogPath(), time.Since(pgStart).Round(time.Millisecond))
		env := fmt.Sprintf("KAFKA_BROKERS=%s\nDATABASE_URL=%s\nANSWERBACK_INFRA_DIR=%s\n",
			strings.Join(cluster.Seeds(), ","), pg.DSN("postgres"), mustAbs(*dir))
		if *envFile != "" {
			if err := os.WriteFile(*envFile, []byte(env), 0o644); err != nil {
				return err
			}
		}
		fmt.Print(env)
		return nil

	case "down":
		kerr := kafkalocal.StopDir(kafkaDir)
		perr := pglocal.StopDir(ctx, pgDir)
		if err := errors.Join(kerr, perr); err != nil {
			return fmt.Errorf("stopping: %w", err)
		}
		fmt.Println("Kafka and PostgreSQL stopped; data kept in", *dir)
		return nil
	}
	return fmt.Errorf("unknown command %q: want up, down or jars", args[0])
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

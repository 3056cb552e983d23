// Package service holds what every Answerback binary does the same way:
// configuration from environment variables with flags as override, a
// structured logger, and signal handling (the first SIGINT/SIGTERM cancels
// the context for a graceful shutdown, a second one exits at once).
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
)

// Flags wraps a FlagSet whose defaults come from environment variables.
type Flags struct{ *flag.FlagSet }

// NewFlags returns a flag set for the named binary.
func NewFlags(name string) Flags { return Flags{flag.NewFlagSet(name, flag.ContinueOnError)} }

// String defines a string flag whose default is $env, else def.
func (f Flags) String(name, env, def, usage string) *string {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		def = v
	}
	return f.FlagSet.String(name, def, usage+" (env "+env+")")
}

// Duration defines a duration flag whose default is $env, else def. A
// malformed $env exits 2, as a malformed flag does.
func (f Flags) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		def = mustParseEnv(env, v, time.ParseDuration)
	}
	return f.FlagSet.Duration(name, def, usage+" (env "+env+")")
}

// Int defines an int flag whose default is $env, else def. A malformed $env
// exits 2, as a malformed flag does.
func (f Flags) Int(name, env string, def int, usage string) *int {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		def = mustParseEnv(env, v, strconv.Atoi)
	}
	return f.FlagSet.Int(name, def, usage+" (env "+env+")")
}

// Bool defines a bool flag whose default is $env, else def. A malformed $env
// exits 2, as a malformed flag does.
func (f Flags) Bool(name, env string, def bool, usage string) *bool {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		def = mustParseEnv(env, v, strconv.ParseBool)
	}
	return f.FlagSet.Bool(name, def, usage+" (env "+env+")")
}

func mustParseEnv[T any](env, v string, parse func(string) (T, error)) T {
	t, err := parse(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "invalid value %q for environment variable %s: %v\n", v, env, err)
		os.Exit(2)
	}
	return t
}

// List splits a comma-separated value, dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Logger returns a JSON logger on stderr at the level named by LOG_LEVEL (default info).
func Logger(name string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(os.Getenv("LOG_LEVEL")))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", name)
}

// SignalContext is canceled by the first SIGINT or SIGTERM; a second one
// exits the process at once with status 1.
func SignalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { // owned by the process: lives until exit
		<-sigs
		log.Info("signal received: shutting down (send another to exit at once)")
		cancel()
		<-sigs
		log.Warn("second signal: exiting at once")
		os.Exit(1)
	}()
	return ctx, cancel
}

// Hostname is the machine's name, or "local".
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "local"
	}
	return h
}

// Kafka defines the flags every service reads for Kafka: -kafka-brokers
// (KAFKA_BROKERS) and -topic-prefix (TOPIC_PREFIX). Call the returned
// function after Parse for the seed list and the prefix.
func (f Flags) Kafka() func() (brokers []string, prefix string) {
	brokers := f.String("kafka-brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "Kafka seed brokers, comma-separated")
	prefix := f.String("topic-prefix", "TOPIC_PREFIX", "", "prefix of every topic name")
	return func() ([]string, string) { return List(*brokers), *prefix }
}

// ParseOrExit parses args; -h exits 0 after the usage, a bad flag exits 2.
func (f Flags) ParseOrExit(args []string) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
}

// KafkaClientLogger returns the franz-go client option that logs through a
// JSON logger of its own at the level named by KAFKA_LOG_LEVEL (default warn):
// the client's own account of rebalances, transactions and retries.
func KafkaClientLogger(name string) kgo.Opt {
	level := slog.LevelWarn
	_ = level.UnmarshalText([]byte(os.Getenv("KAFKA_LOG_LEVEL")))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", name, "component", "kafka-client")
	return kgo.WithLogger(kslog.New(log))
}

package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Binary describes a service binary for Main.
type Binary struct {
	// Name names the binary: its flags, its logs ("service"), its Kafka
	// client's logs and its traces ("answerback-<Name>").
	Name string
	// Setup defines the binary's own flags on s, after the common ones, and
	// returns the function that runs the service once they are parsed.
	Setup func(s *Setup) Run
}

// Setup is what a binary's Setup function may change before parsing.
type Setup struct {
	Flags
	// HealthAddr, when the binary sets it, is the address `<binary>
	// healthcheck` probes (the gateway serves /healthz on its HTTP
	// address); by default the metrics address, METRICS_ADDR.
	HealthAddr *string
}

// Run runs a service until ctx ends, then shuts it down and returns nil. An
// error wrapping ErrUsage is a setting the service cannot use (exit 2); any
// other is a failure (exit 1).
type Run func(ctx context.Context, p Process) error

// Process is what Main hands a service's Run: the settings every service
// reads the same way.
type Process struct {
	Log         *slog.Logger
	Brokers     []string
	TopicPrefix string
	// KafkaOpts are the options of every Kafka client the service creates:
	// its client logger (KAFKA_LOG_LEVEL) and the connection's security.
	KafkaOpts []kgo.Opt
}

// ErrUsage marks a setting that a service cannot use: Main exits 2 on it,
// as on a malformed flag.
var ErrUsage = errors.New("unusable setting")

// Usage wraps err as an unusable setting (ErrUsage).
func Usage(err error) error { return fmt.Errorf("%w: %w", ErrUsage, err) }

// Main runs a service binary the one way every Answerback binary runs:
//
//   - settings: the common flags — Kafka (KAFKA_BROKERS, TOPIC_PREFIX), its
//     security (KAFKA_TLS*, KAFKA_SASL_*), the metrics address (METRICS_ADDR,
//     PPROF) — then the binary's own, each from the environment with a flag
//     as override; `<binary> healthcheck` probes a running instance and
//     exits;
//   - a JSON logger at LOG_LEVEL;
//   - signals: the first SIGINT or SIGTERM cancels the service's context, a
//     second exits at once;
//   - metrics and /healthz served while the service runs, tracing exported
//     when OTEL_EXPORTER_OTLP_ENDPOINT is set;
//   - shutdown in order: the service returns, then the metrics server stops,
//     then the traces are flushed;
//   - exit codes: 0 after a clean stop, 1 when the service failed, 2 for a
//     setting it cannot use.
//
// It does not return.
func Main(b Binary) {
	os.Exit(run(b, os.Args[1:]))
}

// run is Main up to the exit code.
func run(b Binary, args []string) (code int) {
	log := Logger(b.Name)
	s := &Setup{Flags: NewFlags(b.Name)}
	kafka := s.Kafka()
	kafkaSecurity := s.KafkaSecurity(log)
	metrics := s.Metrics()
	service := b.Setup(s)
	s.ParseOrExit(args)
	health := metrics().Addr
	if s.HealthAddr != nil {
		health = *s.HealthAddr
	}
	s.HealthcheckOrExit(health)
	securityOpts, err := kafkaSecurity()
	if err != nil {
		log.Error("Kafka security settings unusable", "err", err)
		return 2
	}
	brokers, prefix := kafka()
	ctx, cancel := SignalContext(log)
	defer cancel()
	defer Tracing(ctx, "answerback-"+b.Name, log)() // flushed last
	waitMetrics, err := ServeMetrics(ctx, metrics(), log)
	if err != nil {
		log.Error("metrics address unusable", "err", err)
		return 2
	}
	defer func() { cancel(); waitMetrics() }() // the server stops when ctx ends
	err = service(ctx, Process{Log: log, Brokers: brokers, TopicPrefix: prefix,
		KafkaOpts: append([]kgo.Opt{KafkaClientLogger(b.Name)}, securityOpts...)})
	switch {
	case errors.Is(err, ErrUsage):
		log.Error(b.Name+": setting unusable", "err", err)
		return 2
	case err != nil:
		log.Error(b.Name+" failed", "err", err)
		return 1
	}
	log.Info(b.Name + " stopped")
	return 0
}

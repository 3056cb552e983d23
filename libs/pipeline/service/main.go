package service

import (
	"context"
	"errors"
	"flag"
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
	s, service, settings, err := settle(b, args, log)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil && !errors.Is(err, errSecurity):
		return 2 // the flag package said what is wrong
	}
	health := s.metrics().Addr
	if s.HealthAddr != nil {
		health = *s.HealthAddr
	}
	s.HealthcheckOrExit(health)
	if err != nil {
		log.Error("Kafka security settings unusable", "err", err)
		return 2
	}
	ctx, cancel := SignalContext(log)
	defer cancel()
	defer Tracing(ctx, "answerback-"+b.Name, log)() // flushed last
	waitMetrics, err := ServeMetrics(ctx, s.metrics(), log)
	if err != nil {
		log.Error("metrics address unusable", "err", err)
		return 2
	}
	defer func() { cancel(); waitMetrics() }() // the server stops when ctx ends
	err = service(ctx, settings)
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

// InProcess is what a composition root that runs a service in its own
// process (devstack, the integration tests) hands Launch besides the flags.
type InProcess struct {
	// Log is the service's logger; by default Logger(b.Name).
	Log *slog.Logger
	// KafkaOpts are added to the Kafka options of the settings (a test's
	// hooks into the service's clients).
	KafkaOpts []kgo.Opt
}

// Launch runs a service binary inside this process until ctx ends, with the
// same settings as Main — the flags in args, defaulting to the environment —
// and returns what its Run returns; a setting it cannot use is an error
// wrapping ErrUsage. Unlike Main it leaves signals, metrics, tracing and
// exiting to its caller, which owns the process.
func Launch(ctx context.Context, b Binary, args []string, in InProcess) error {
	log := in.Log
	if log == nil {
		log = Logger(b.Name)
	}
	s, service, settings, err := settle(b, args, log)
	if err != nil {
		return Usage(fmt.Errorf("%s: %w", b.Name, err))
	}
	if s.NArg() > 0 {
		return Usage(fmt.Errorf("%s: unexpected arguments %q", b.Name, s.Args()))
	}
	settings.KafkaOpts = append(settings.KafkaOpts, in.KafkaOpts...)
	return service(ctx, settings)
}

// errSecurity marks Kafka security settings that settle could not use.
var errSecurity = errors.New("Kafka security settings unusable")

// settled is a binary's Setup after its flags were parsed.
type settled struct {
	*Setup
	metrics func() Admin
}

// settle defines the common flags and the binary's own, parses args, and
// returns the service with its settings. The error is the flag package's
// (flag.ErrHelp for -h), or wraps errSecurity.
func settle(b Binary, args []string, log *slog.Logger) (settled, Run, Process, error) {
	s := settled{Setup: &Setup{Flags: NewFlags(b.Name)}}
	kafka := s.Kafka()
	kafkaSecurity := s.KafkaSecurity(log)
	s.metrics = s.Metrics()
	service := b.Setup(s.Setup)
	if err := s.Parse(args); err != nil {
		return s, nil, Process{}, err
	}
	brokers, prefix := kafka()
	p := Process{Log: log, Brokers: brokers, TopicPrefix: prefix, KafkaOpts: []kgo.Opt{KafkaClientLogger(b.Name)}}
	securityOpts, err := kafkaSecurity()
	if err != nil {
		return s, service, p, fmt.Errorf("%w: %w", errSecurity, err)
	}
	p.KafkaOpts = append(p.KafkaOpts, securityOpts...)
	return s, service, p, nil
}

// Command projector runs the read side: it keeps the PostgreSQL views exactly
// once and sends each completed command's reply to the gateway waiting for it.
//
// Configuration (environment, flags override): KAFKA_BROKERS, METRICS_ADDR, DATABASE_URL, TOPIC_PREFIX,
// the Kafka connection's security (KAFKA_TLS*, KAFKA_SASL_*: see service.KafkaSecurityConfig).
// PostgreSQL TLS is set in DATABASE_URL (sslmode=verify-full&sslrootcert=...).
//
// `projector healthcheck` probes a running instance's /healthz on
// METRICS_ADDR (the image's HEALTHCHECK).
package main

import (
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/projector/app"
)

func main() {
	log := service.Logger("projector")
	f := service.NewFlags("projector")
	kafka := f.Kafka()
	kafkaSecurity := f.KafkaSecurity(log)
	dsn := f.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
	metrics := f.Metrics()
	f.ParseOrExit(os.Args[1:])
	f.HealthcheckOrExit(metrics().Addr)
	brokers, prefix := kafka()
	kafkaOpts, err := kafkaSecurity()
	if err != nil {
		log.Error("kafka security settings unusable", "err", err)
		os.Exit(2)
	}
	ctx, cancel := service.SignalContext(log)
	defer cancel()
	defer service.Tracing(ctx, "answerback-projector", log)()
	waitMetrics, err := service.ServeMetrics(ctx, metrics(), log)
	if err != nil {
		log.Error("metrics address unusable", "err", err)
		os.Exit(2)
	}
	defer func() { cancel(); waitMetrics() }() // the server stops when ctx ends
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		log.Error("bad DATABASE_URL", "err", err)
		os.Exit(2)
	}
	defer pool.Close()
	if err := app.Run(ctx, app.Config{Brokers: brokers, TopicPrefix: prefix, Pool: pool, Logger: log, ClientOpts: append([]kgo.Opt{service.KafkaClientLogger("projector")}, kafkaOpts...)}); err != nil {
		log.Error("projector failed", "err", err)
		os.Exit(1)
	}
	log.Info("projector stopped")
}

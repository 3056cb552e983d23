// Command salesdaily is an example downstream service: it consumes
// orders.events and catalog.events on its own consumer group
// (<prefix>sales-daily) and keeps daily sales per tenant and SKU in
// PostgreSQL (daily_sales), exactly once, restartable at any moment.
//
// Configuration (environment, flags override): KAFKA_BROKERS, TOPIC_PREFIX,
// DATABASE_URL, METRICS_ADDR (Prometheus metrics and /healthz; off when empty), DLQ_TOPIC (optional: where records that are not valid events
// go; the topic must exist; by default they are only logged and counted),
// the Kafka connection's security (KAFKA_TLS*, KAFKA_SASL_*: see
// service.KafkaSecurityConfig). PostgreSQL TLS is set in DATABASE_URL
// (sslmode=verify-full&sslrootcert=...).
//
// `salesdaily healthcheck` probes a running instance's /healthz on
// METRICS_ADDR (the image's HEALTHCHECK).
package main

import (
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/salesdaily/app"
)

func main() {
	log := service.Logger(app.Name)
	f := service.NewFlags(app.Name)
	kafka := f.Kafka()
	kafkaSecurity := f.KafkaSecurity(log)
	dsn := f.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
	dlq := f.String("dlq-topic", "DLQ_TOPIC", "", "topic for records that are not valid events (empty: log and count only)")
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
	defer service.Tracing(ctx, "answerback-salesdaily", log)()
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
	err = app.Run(ctx, app.Config{
		Brokers: brokers, TopicPrefix: prefix, Pool: pool, DLQTopic: *dlq, Logger: log,
		ClientOpts: append([]kgo.Opt{service.KafkaClientLogger(app.Name)}, kafkaOpts...),
	})
	if err != nil {
		log.Error("salesdaily failed", "err", err)
		os.Exit(1)
	}
	log.Info("salesdaily stopped")
}

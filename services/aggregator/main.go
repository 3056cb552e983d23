// Command aggregator runs the command side: the single writer of every order
// and catalog item whose commands' partitions it owns.
//
// Configuration (environment, flags override): KAFKA_BROKERS, METRICS_ADDR, TOPIC_PREFIX,
// the Kafka connection's security (KAFKA_TLS*, KAFKA_SASL_*: see service.KafkaSecurityConfig),
// INSTANCE_ID (default: the host name; names it in logs), PARTITIONS (of the
// topics it creates when missing; default 6), TRANSACTION_SLOTS (transactions
// in flight at once across its partitions; default 1, -1: no bound).
//
// It exits 1 when a partition's transactional producer is fenced (the
// partition's new owner fenced a zombie, or the broker timed a transaction
// out): run it under a supervisor that restarts it (Kubernetes, systemd); the
// restart rejoins the group and takes its partitions afresh.
//
// `aggregator healthcheck` probes a running instance's /healthz on
// METRICS_ADDR (the image's HEALTHCHECK).
package main

import (
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/aggregator/app"
)

func main() {
	log := service.Logger("aggregator")
	f := service.NewFlags("aggregator")
	kafka := f.Kafka()
	kafkaSecurity := f.KafkaSecurity(log)
	instance := f.String("instance-id", "INSTANCE_ID", service.Hostname(), "this instance's stable name")
	partitions := f.Int("partitions", "PARTITIONS", 6, "partitions of the topics created when missing (commands and snapshots must agree)")
	slots := f.Int("transaction-slots", "TRANSACTION_SLOTS", 1, "transactions in flight at once across the owned partitions (-1: no bound); a partition waiting for a slot gathers more commands into its transaction")
	metrics := f.Metrics()
	f.ParseOrExit(os.Args[1:])
	f.HealthcheckOrExit(metrics().Addr)
	if *partitions < 1 || *partitions > 10_000 {
		log.Error("partitions out of range", "partitions", *partitions, "want", "1..10000")
		os.Exit(2)
	}
	brokers, prefix := kafka()
	kafkaOpts, err := kafkaSecurity()
	if err != nil {
		log.Error("kafka security settings unusable", "err", err)
		os.Exit(2)
	}
	ctx, cancel := service.SignalContext(log)
	defer cancel()
	defer service.Tracing(ctx, "answerback-aggregator", log)()
	waitMetrics, err := service.ServeMetrics(ctx, metrics(), log)
	if err != nil {
		log.Error("metrics address unusable", "err", err)
		os.Exit(2)
	}
	defer func() { cancel(); waitMetrics() }() // the server stops when ctx ends
	if err := app.Run(ctx, app.Config{Brokers: brokers, TopicPrefix: prefix, InstanceID: *instance, Partitions: int32(*partitions), TransactionSlots: *slots, Logger: log, ClientOpts: append([]kgo.Opt{service.KafkaClientLogger("aggregator")}, kafkaOpts...)}); err != nil {
		log.Error("aggregator failed", "err", err)
		os.Exit(1)
	}
	log.Info("aggregator stopped")
}

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
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/aggregator/app"
)

func main() { service.Main(app.Binary(app.Embedded{})) }

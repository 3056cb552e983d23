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
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/salesdaily/app"
)

func main() { service.Main(app.Binary(app.Embedded{})) }

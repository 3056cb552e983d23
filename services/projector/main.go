// Command projector runs the read side: it keeps the PostgreSQL views exactly
// once and sends each completed command's reply to the gateway waiting for it.
//
// Configuration (environment, flags override): KAFKA_BROKERS, METRICS_ADDR, DATABASE_URL, TOPIC_PREFIX,
// OUTCOME_RETENTION (how long recorded outcomes are kept; default 168h),
// the Kafka connection's security (KAFKA_TLS*, KAFKA_SASL_*: see service.KafkaSecurityConfig).
// PostgreSQL TLS is set in DATABASE_URL (sslmode=verify-full&sslrootcert=...).
//
// `projector healthcheck` probes a running instance's /healthz on
// METRICS_ADDR (the image's HEALTHCHECK).
package main

import (
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/projector/app"
)

func main() { service.Main(app.Binary(app.Embedded{})) }

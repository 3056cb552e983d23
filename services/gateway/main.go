// Command gateway serves the REST API: it turns requests into commands and
// answers each with the reply derived by the read side.
//
// Configuration (environment, flags override): KAFKA_BROKERS, DATABASE_URL,
// TOPIC_PREFIX, HTTP_ADDR (default :8080), INSTANCE_ID (default
// "<host>-<random>": each instance has a reply topic of its own), REPLY_WAIT, READ_TIMEOUT, MAX_IN_FLIGHT, RATE_LIMIT,
// METRICS_ADDR (Prometheus metrics at /metrics; default off).
//
// Authentication (required): AUTH_JWKS_FILE or AUTH_JWKS_URL (the issuer's
// public keys), AUTH_ISSUER, AUTH_AUDIENCE; optional AUTH_ALGORITHMS
// (comma-separated allow-list), AUTH_TENANT_CLAIM (default "tenant").
//
// Kafka TLS and SASL: KAFKA_TLS*, KAFKA_SASL_* (see service.KafkaSecurityConfig);
// PostgreSQL TLS: sslmode, sslrootcert, sslcert and sslkey in DATABASE_URL.
//
// On SIGTERM it stops accepting connections, lets in-flight requests finish,
// and deletes its reply topic; a second signal exits at once.
//
// `gateway healthcheck` probes a running instance's /healthz on HTTP_ADDR
// (the image's HEALTHCHECK).
package main

import (
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/gateway/server"
)

func main() { service.Main(server.Binary(server.Embedded{})) }

// Package integration holds black-box tests that run against real
// infrastructure: Apache Kafka started from its jars (KAFKA_BROKERS), the
// embedded kfake broker, and PostgreSQL (DATABASE_URL). `make test` starts
// what they need; see libs/testenv for how a test obtains it.
package integration

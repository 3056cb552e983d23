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
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/services/projector/app"
)

func main() {
	service.Main(service.Binary{Name: "projector", Setup: func(s *service.Setup) service.Run {
		dsn := s.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
		return func(ctx context.Context, p service.Process) error {
			pool, err := pgxpool.New(ctx, *dsn)
			if err != nil {
				return service.Usage(err)
			}
			defer pool.Close()
			return app.Run(ctx, app.Config{Brokers: p.Brokers, TopicPrefix: p.TopicPrefix, Pool: pool, Logger: p.Log, ClientOpts: p.KafkaOpts})
		}
	}})
}

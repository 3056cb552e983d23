package app

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/pipeline/service"
)

// Embedded is what a process that runs salesdaily in-process
// (service.Launch) may set besides its flags; the binary sets nothing.
type Embedded struct {
	// Pool, when set, is the database to use instead of DATABASE_URL's.
	Pool *pgxpool.Pool
}

// Binary is the salesdaily binary: DATABASE_URL, DLQ_TOPIC, and its Run.
func Binary(e Embedded) service.Binary {
	return service.Binary{Name: Name, Setup: func(s *service.Setup) service.Run {
		dsn := s.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
		dlq := s.String("dlq-topic", "DLQ_TOPIC", "", "topic for records that are not valid events (empty: log and count only)")
		return func(ctx context.Context, p service.Process) error {
			pool, release, err := service.Database(ctx, e.Pool, *dsn)
			if err != nil {
				return err
			}
			defer release()
			return Run(ctx, Config{Brokers: p.Brokers, TopicPrefix: p.TopicPrefix, Pool: pool, DLQTopic: *dlq, Logger: p.Log, ClientOpts: p.KafkaOpts})
		}
	}}
}

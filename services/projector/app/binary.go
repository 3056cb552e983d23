package app

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/libs/projector"
)

// Embedded is what a process that runs the projector in-process
// (service.Launch) may set besides its flags; the binary sets nothing.
type Embedded struct {
	// Pool, when set, is the database to use instead of DATABASE_URL's.
	Pool *pgxpool.Pool
	// Faults injects failures, for tests.
	Faults *projector.Faults
}

// Binary is the projector binary: DATABASE_URL, OUTCOME_RETENTION (default
// 7 days, at least 24 h), and its Run.
func Binary(e Embedded) service.Binary {
	return service.Binary{Name: "projector", Setup: func(s *service.Setup) service.Run {
		dsn := s.String("database-url", "DATABASE_URL", "", "PostgreSQL connection string")
		retention := s.Duration("outcome-retention", "OUTCOME_RETENTION", projector.DefaultOutcomeRetention, "how long a command's recorded outcome is kept (its status, the gateways' fallback); older ones are pruned")
		return func(ctx context.Context, p service.Process) error {
			if *retention < 24*time.Hour {
				return service.Usage(fmt.Errorf("outcome-retention %s: want at least 24h, the aggregators' idempotency window", *retention))
			}
			pool, release, err := service.Database(ctx, e.Pool, *dsn)
			if err != nil {
				return err
			}
			defer release()
			return Run(ctx, Config{Brokers: p.Brokers, TopicPrefix: p.TopicPrefix, Pool: pool, Logger: p.Log, ClientOpts: p.KafkaOpts, Faults: e.Faults, OutcomeRetention: *retention})
		}
	}}
}

// Package app runs the reference domain's read model: the catalog and order
// views in PostgreSQL, and the replies derived from them.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/projector"
)

// Config configures the projector.
type Config struct {
	Brokers     []string
	TopicPrefix string
	Pool        *pgxpool.Pool
	Logger      *slog.Logger
	ClientOpts  []kgo.Opt
	// OutcomeRetention: see projector.Config.
	OutcomeRetention time.Duration
	// Faults injects failures, for tests; nil in production.
	Faults *projector.Faults
}

// Run migrates the view's schema and projects until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := view.Migrate(ctx, cfg.Pool); err != nil {
		return fmt.Errorf("projector: migrations: %w", err)
	}
	rt, err := projector.New(view.Projection(cfg.TopicPrefix), projector.Config{
		Brokers: cfg.Brokers, Pool: cfg.Pool, Group: cfg.TopicPrefix + "views-projector", Logger: cfg.Logger, ClientOpts: cfg.ClientOpts, Faults: cfg.Faults, OutcomeRetention: cfg.OutcomeRetention,
	})
	if err != nil {
		return err
	}
	return rt.Run(ctx)
}

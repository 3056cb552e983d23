package service

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Database is the service's PostgreSQL pool: the caller's, when a process
// that launches the service in-process shares one (release then does
// nothing), else a pool on dsn (DATABASE_URL; empty, the PG* environment
// variables) with configure applied to its config, closed by release. A
// malformed dsn is an unusable setting (ErrUsage).
func Database(ctx context.Context, shared *pgxpool.Pool, dsn string, configure ...func(*pgxpool.Config)) (pool *pgxpool.Pool, release func(), err error) {
	if shared != nil {
		return shared, func() {}, nil
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, Usage(err)
	}
	for _, c := range configure {
		c(cfg)
	}
	if pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, nil, err
	}
	return pool, pool.Close, nil
}

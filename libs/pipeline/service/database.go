package service

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Database is the service's PostgreSQL pool: the caller's, when a process
// that launches the service in-process shares one (release then does
// nothing), else a pool on dsn (DATABASE_URL; empty, the PG* environment
// variables), closed by release. A malformed dsn is an unusable setting
// (ErrUsage).
func Database(ctx context.Context, shared *pgxpool.Pool, dsn string) (pool *pgxpool.Pool, release func(), err error) {
	if shared != nil {
		return shared, func() {}, nil
	}
	if pool, err = pgxpool.New(ctx, dsn); err != nil {
		return nil, nil, Usage(err)
	}
	return pool, pool.Close, nil
}

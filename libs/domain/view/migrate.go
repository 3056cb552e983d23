package view

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the pg_advisory_xact_lock key that serializes Migrate
// across processes ("answerback.view" in ASCII, truncated to 8 bytes).
const migrationLockKey int64 = 0x616e737765726276

// migration is one embedded SQL file, NNNN_name.sql, NNNN its version.
type migration struct {
	version int
	name    string
	sql     string
}

// Migrate brings the view's schema up to date: it applies the embedded
// migrations not yet recorded in schema_migrations, in version order, each in
// its own transaction together with its record. Concurrent callers (several
// processes starting at once) are serialized by a transaction-scoped advisory
// lock, so each migration runs exactly once. Calling it again is a no-op.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrateUpTo(ctx, pool, math.MaxInt)
}

// migrateUpTo is Migrate stopping after version last (tests of a migration).
func migrateUpTo(ctx context.Context, pool *pgxpool.Pool, last int) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.version > last {
			break
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return apply(ctx, tx, m) }); err != nil {
			return fmt.Errorf("view: migration %s: %w", m.name, err)
		}
	}
	return nil
}

func apply(ctx context.Context, tx pgx.Tx, m migration) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    int         PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var done bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", m.version).Scan(&done); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	if done {
		return nil
	}
	// Without arguments, pgx uses the simple protocol: the file may hold many statements.
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())", m.version); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

// migrations returns the embedded migrations sorted by version.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("view: migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		prefix, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("view: migration %s: name must be NNNN_name.sql", base)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("view: migration %s: %w", base, err)
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("view: migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

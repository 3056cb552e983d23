package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// RebuildConfig configures Rebuild.
type RebuildConfig struct {
	Brokers []string
	// Pool is the live view's database; its search_path's first schema
	// holds the live view.
	Pool *pgxpool.Pool
	// Migrate creates the view's tables in the schema first on the given
	// pool's search_path (the shadow's), as the service does at start.
	Migrate func(ctx context.Context, pool *pgxpool.Pool) error
	// Shadow is the schema the view is built in; default
	// "<projection>_rebuild". The live view, once replaced, goes to
	// "<Shadow>_retired" and is dropped.
	Shadow string
	// SwapWithin: the swap starts once fewer records than this are left to
	// catch up with the live projector; default 1,000. The live view's reads
	// and writes wait for the swap, which applies them.
	SwapWithin int64
	// LockTimeout bounds the time spent trying to lock the live view's
	// tables for the swap (and the retired ones to drop them); default 30s.
	// Each try waits less than the server's deadlock_timeout and gives way
	// when it runs out, so that a reader or the live projector caught in a
	// lock cycle with the swap is never the one PostgreSQL aborts.
	LockTimeout time.Duration
	// BatchSize bounds the records of one transaction on the shadow; default 500.
	BatchSize int
	// Progress, when set, learns the records left (total, when a catch-up
	// pass starts) and done (after each batch).
	Progress   func(left, done int64)
	Logger     *slog.Logger
	ClientOpts []kgo.Opt
}

// RebuildStats are what a rebuild did.
type RebuildStats struct {
	Resumed     bool          `json:"resumed"`     // a shadow from an interrupted rebuild was carried on
	Records     int64         `json:"records"`     // records applied to the shadow
	Skipped     int64         `json:"skipped"`     // events refused for good, left out
	Passes      int           `json:"passes"`      // catch-up passes before the swap
	Tables      []string      `json:"tables"`      // the view's tables swapped in
	SwapLocked  time.Duration `json:"swapLocked"`  // how long the live view's reads and writes waited
	SwapRecords int64         `json:"swapRecords"` // records applied while they waited
}

// Rebuild builds the projection's view again from the start of its event
// topics, in a shadow schema, while the live view keeps serving and the live
// projector keeps running; then it swaps the shadow in, in one transaction,
// and drops the old view.
//
// The shadow's progress is stored in its own projector_offsets: a rebuild
// interrupted at any point is resumed by calling Rebuild again. Passes catch
// the shadow up with the offsets the live projector stored, until fewer
// than SwapWithin records are left. The swap then locks the live view's
// tables (the live projector and the readers wait), catches the shadow up to
// exactly the live projector's stored offsets, moves the live tables to the
// retired schema and the shadow's into the live schema, and commits: the
// waiting statements then run on the new tables, and the live projector
// goes on from its offsets, which the shadow has reached. Command outcomes,
// the change log and the live projector's offsets are the runtime's, not
// the view's, and stay.
//
// A table the new view no longer has stays in the live schema.
func Rebuild(ctx context.Context, p Projection, cfg RebuildConfig) (RebuildStats, error) {
	var stats RebuildStats
	if cfg.Shadow == "" {
		cfg.Shadow = p.Name + "_rebuild"
	}
	if cfg.SwapWithin <= 0 {
		cfg.SwapWithin = 1000
	}
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	retired := cfg.Shadow + "_retired"
	var live string
	if err := cfg.Pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		return stats, fmt.Errorf("rebuild: the live schema: %w", err)
	}
	// A retired view left behind is the end of a rebuild that swapped and
	// was stopped before it cleaned up.
	if err := dropSchema(ctx, cfg, retired); err != nil {
		return stats, fmt.Errorf("rebuild: dropping %s: %w", retired, err)
	}
	if err := cfg.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, cfg.Shadow).Scan(&stats.Resumed); err != nil {
		return stats, fmt.Errorf("rebuild: %w", err)
	}
	if _, err := cfg.Pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+ident(cfg.Shadow)); err != nil {
		return stats, fmt.Errorf("rebuild: creating %s: %w", cfg.Shadow, err)
	}
	shadowCfg := cfg.Pool.Config().Copy()
	shadowCfg.ConnConfig.RuntimeParams["search_path"] = cfg.Shadow
	shadow, err := pgxpool.NewWithConfig(ctx, shadowCfg)
	if err != nil {
		return stats, fmt.Errorf("rebuild: %w", err)
	}
	defer shadow.Close()
	if err := cfg.Migrate(ctx, shadow); err != nil {
		return stats, fmt.Errorf("rebuild: the shadow's schema: %w", err)
	}
	if err := EnsureSchema(ctx, shadow); err != nil {
		return stats, fmt.Errorf("rebuild: %w", err)
	}
	replay := func(ctx context.Context, ranges []Range) error {
		var left, done int64
		for _, r := range ranges {
			left += r.To - r.From
		}
		if cfg.Progress != nil {
			cfg.Progress(left, 0)
		}
		st, err := Replay(ctx, p, ReplayConfig{
			Brokers: cfg.Brokers, Pool: shadow, Tracked: true, BatchSize: cfg.BatchSize, Logger: cfg.Logger, ClientOpts: cfg.ClientOpts,
			Progress: func(n int64) {
				done += n
				if cfg.Progress != nil {
					cfg.Progress(left, done)
				}
			},
		}, ranges)
		stats.Records += st.Records
		stats.Skipped += st.Skipped
		return err
	}
	for {
		ranges, left, err := shadowBehind(ctx, p, cfg.Pool, shadow)
		if err != nil {
			return stats, err
		}
		if left < cfg.SwapWithin {
			break
		}
		stats.Passes++
		if err := replay(ctx, ranges); err != nil {
			return stats, err
		}
	}
	tryLock, err := lockTry(ctx, cfg.Pool)
	if err != nil {
		return stats, err
	}
	if err := untilLocked(ctx, cfg.LockTimeout, func() error {
		return swap(ctx, p, cfg, live, retired, shadow, tryLock, replay, &stats)
	}); err != nil {
		return stats, fmt.Errorf("rebuild: swap: %w", err)
	}
	for _, schema := range []string{retired, cfg.Shadow} {
		if err := dropSchema(ctx, cfg, schema); err != nil {
			return stats, fmt.Errorf("rebuild: swapped, but dropping %s failed (run the rebuild again to finish): %w", schema, err)
		}
	}
	return stats, nil
}

// dropSchema drops schema and what it holds. Statements that waited for the
// swap may still hold locks on the retired tables (taken before they found
// the tables moved): the drop gives way to them as the swap does.
func dropSchema(ctx context.Context, cfg RebuildConfig, schema string) error {
	tryLock, err := lockTry(ctx, cfg.Pool)
	if err != nil {
		return err
	}
	return untilLocked(ctx, cfg.LockTimeout, func() error {
		return pgx.BeginFunc(ctx, cfg.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, tryLock.Milliseconds())); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS `+ident(schema)+` CASCADE`)
			return err
		})
	})
}

// lockTry is how long one try waits for a lock: half the server's
// deadlock_timeout, so that the try gives way before PostgreSQL looks for a
// lock cycle and aborts whoever is in it.
func lockTry(ctx context.Context, pool *pgxpool.Pool) (time.Duration, error) {
	var ms int64
	if err := pool.QueryRow(ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'deadlock_timeout'`).Scan(&ms); err != nil {
		return 0, fmt.Errorf("rebuild: deadlock_timeout: %w", err)
	}
	return max(time.Duration(ms)*time.Millisecond/2, 10*time.Millisecond), nil
}

// untilLocked runs try until it does not fail for a lock, or budget is spent.
func untilLocked(ctx context.Context, budget time.Duration, try func() error) error {
	deadline := time.Now().Add(budget)
	for attempt := 1; ; attempt++ {
		err := try()
		if !retryable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(min(attempt, 10)) * 20 * time.Millisecond):
		}
	}
}

// retryable tells a lock timeout or a deadlock, which another try may not meet.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "55P03" || pgErr.Code == "40P01")
}

// swap replaces the live view with the shadow in one transaction.
func swap(ctx context.Context, p Projection, cfg RebuildConfig, live, retired string, shadow *pgxpool.Pool, tryLock time.Duration,
	replay func(context.Context, []Range) error, stats *RebuildStats) error {
	tables, err := viewTables(ctx, cfg.Pool, cfg.Shadow)
	if err != nil {
		return err
	}
	tx, err := cfg.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var liveTables []string
	if err := tx.QueryRow(ctx, `SELECT coalesce(array_agg(tablename::text ORDER BY tablename), '{}') FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2)`,
		live, tables).Scan(&liveTables); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, tryLock.Milliseconds())); err != nil {
		return err
	}
	locked := time.Now()
	if len(liveTables) > 0 {
		qualified := make([]string, len(liveTables))
		for i, t := range liveTables {
			qualified[i] = ident(live) + "." + ident(t)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(qualified, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
			return err
		}
	}
	// The live projector waits now: catch up with exactly its offsets.
	ranges, _, err := shadowBehind(ctx, p, tx, shadow)
	if err != nil {
		return err
	}
	before := stats.Records
	if err := replay(ctx, ranges); err != nil {
		return err
	}
	stats.SwapRecords = stats.Records - before
	if ranges, left, err := shadowBehind(ctx, p, tx, shadow); err != nil || left != 0 {
		return errors.Join(err, fmt.Errorf("the shadow did not reach the live offsets: %d records left in %v", left, ranges))
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA `+ident(retired)); err != nil {
		return err
	}
	for _, t := range tables {
		if slices.Contains(liveTables, t) {
			// Whom the live table grants what (the gateways' role, say)
			// the new one grants too.
			if err := copyGrants(ctx, tx, ident(live)+"."+ident(t), ident(cfg.Shadow)+"."+ident(t)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `ALTER TABLE `+ident(live)+`.`+ident(t)+` SET SCHEMA `+ident(retired)); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+ident(cfg.Shadow)+`.`+ident(t)+` SET SCHEMA `+ident(live)); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	stats.SwapLocked = time.Since(locked)
	stats.Tables = tables
	return nil
}

// copyGrants grants on table to what from grants, but to its owner (who
// keeps every privilege anyway).
func copyGrants(ctx context.Context, tx pgx.Tx, from, to string) error {
	rows, err := tx.Query(ctx, `
		SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(a.grantee::regrole::text) END, a.privilege_type
		FROM pg_class c, aclexplode(c.relacl) a
		WHERE c.oid = $1::regclass AND a.grantee <> c.relowner`, from)
	if err != nil {
		return fmt.Errorf("rebuild: the grants on %s: %w", from, err)
	}
	grants, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var g [2]string
		return g, r.Scan(&g[0], &g[1])
	})
	if err != nil {
		return fmt.Errorf("rebuild: the grants on %s: %w", from, err)
	}
	for _, g := range grants {
		if _, err := tx.Exec(ctx, `GRANT `+g[1]+` ON `+to+` TO `+g[0]); err != nil {
			return fmt.Errorf("rebuild: granting %s on %s to %s: %w", g[1], to, g[0], err)
		}
	}
	return nil
}

// viewTables are the view's tables: the shadow's, but for the runtime's own.
func viewTables(ctx context.Context, pool *pgxpool.Pool, shadow string) ([]string, error) {
	var tables []string
	err := pool.QueryRow(ctx, `
		SELECT coalesce(array_agg(tablename::text ORDER BY tablename), '{}') FROM pg_tables
		WHERE schemaname = $1 AND tablename NOT IN ('projector_offsets', 'command_outcomes', 'view_changes')`, shadow).Scan(&tables)
	if err != nil {
		return nil, fmt.Errorf("rebuild: the view's tables: %w", err)
	}
	return tables, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// shadowBehind returns the ranges of the event topics between the shadow's
// stored offsets and the live projector's, and the records in them.
func shadowBehind(ctx context.Context, p Projection, live, shadow querier) ([]Range, int64, error) {
	liveOffsets, err := StoredOffsets(ctx, live, p.Name)
	if err != nil {
		return nil, 0, err
	}
	shadowOffsets, err := StoredOffsets(ctx, shadow, p.Name)
	if err != nil {
		return nil, 0, err
	}
	var ranges []Range
	var left int64
	for _, o := range liveOffsets {
		if _, ok := p.Topics[o.Topic]; !ok {
			continue // outcomes: recorded by the live projector, not part of the view
		}
		from := int64(0)
		for _, s := range shadowOffsets {
			if s.Topic == o.Topic && s.Partition == o.Partition {
				from = s.Next
			}
		}
		if from < o.Next {
			ranges = append(ranges, Range{Topic: o.Topic, Partition: o.Partition, From: from, To: o.Next})
			left += o.Next - from
		}
	}
	return ranges, left, nil
}

// Offset is a projection's stored offset of one partition: the next record
// to apply.
type Offset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Next      int64  `json:"next"`
}

// StoredOffsets returns the offsets stored for projection in q's
// projector_offsets, by topic and partition.
func StoredOffsets(ctx context.Context, q querier, projection string) ([]Offset, error) {
	rows, err := q.Query(ctx, `SELECT topic, partition, next_offset FROM projector_offsets WHERE projection = $1 ORDER BY topic, partition`, projection)
	if err != nil {
		return nil, fmt.Errorf("stored offsets of %s: %w", projection, err)
	}
	offsets, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Offset])
	if err != nil {
		return nil, fmt.Errorf("stored offsets of %s: %w", projection, err)
	}
	return offsets, nil
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

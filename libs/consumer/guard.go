package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// schema is the Guard's table: per consumer, topic, tenant and aggregate,
// the version of the last event applied. Two tenants' aggregates of the same
// ID are two rows. The empty tenant is that of records from before tenants
// (a bare key and no ce_tenant).
//
// A table from before tenants (primary key consumer, topic, aggregate_id) is
// upgraded in place: its rows get the empty tenant and the primary key takes
// the tenant. Every statement is idempotent, so EnsureSchema may run at every
// start.
var schema = `
CREATE TABLE IF NOT EXISTS consumer_versions (
	consumer     text   NOT NULL,
	topic        text   NOT NULL,
	tenant       text   NOT NULL DEFAULT '',
	aggregate_id text   NOT NULL,
	version      bigint NOT NULL,
	PRIMARY KEY (consumer, topic, tenant, aggregate_id)
);
ALTER TABLE consumer_versions ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT '';
` + primaryKey

// primaryKey makes consumer_versions' primary key (consumer, topic, tenant,
// aggregate_id) when it is anything else, as on a table from before tenants.
var primaryKey = PrimaryKeySQL("consumer_versions", "consumer", "topic", "tenant", "aggregate_id")

// schemaLockKey serialises EnsureSchema across processes ("consumer" in ASCII).
const schemaLockKey int64 = 0x636f6e73756d6572

// EnsureSchema creates the Guard's table, consumer_versions, when missing,
// and upgrades one from before tenants: its rows, recorded before events
// carried a tenant, get the empty tenant: that of records with a bare key and
// no ce_tenant, which they keep guarding. Concurrent callers serialise on an
// advisory lock; calling it again is a no-op.
func EnsureSchema(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}) error {
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockKey); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		return fmt.Errorf("consumer: schema: %w", err)
	}
	return nil
}

// Guard makes a handler's effects exactly once although delivery is at least
// once. It records, per consumer, topic, tenant and aggregate (Meta.Tenant
// and Meta.AggregateID: the record key), the version of the last event
// applied (table consumer_versions, see EnsureSchema), inside the
// handler's own transaction: the effects and the version commit together or
// not at all. An event at or below the recorded version was applied before
// (a record delivered again after a crash or a rebalance, before its offset
// was committed) and is skipped.
//
// It relies on the events of an aggregate arriving in version order, as the
// Runner delivers them. A Guard is a value and safe for concurrent use.
type Guard struct {
	// Consumer names the read model the versions belong to; two read models
	// in one database need two names. Renaming it applies everything again.
	Consumer string
}

// Verdict is what Guard.Apply decided for one event.
type Verdict struct {
	// New: the event's version is above the recorded one, and is now
	// recorded in the transaction. Apply the event in the same transaction.
	// When false, the event was applied before: change nothing.
	New bool
	// Previous is the version recorded before (0: none).
	Previous int64
	// Missed is, for a new event, the number of versions between Previous
	// and the event's that were never applied: a gap, e.g. a poison record
	// skipped, or a consumer that started after the aggregate's first event.
	// The event is applied anyway; the handler should log the gap.
	Missed int64
}

// Apply decides, inside tx, whether the event m is new for g's consumer and,
// if so, records its version. The aggregate is m's tenant and aggregate ID
// together: the same ID in two tenants is two aggregates, guarded apart
// (m.Tenant may be "", for records from before tenants). It locks the
// aggregate's row until tx ends, so
// two instances that handle the same event at once (overlapping owners of a
// partition) apply it once: the second waits and then finds it recorded.
// Previous (and so Missed) may read 0 when two transactions record an
// aggregate's first event at the same time; New is exact.
//
// Events whose version is not positive are refused with an error (Decode
// never yields one).
func (g Guard) Apply(ctx context.Context, tx pgx.Tx, m Meta) (Verdict, error) {
	if g.Consumer == "" {
		return Verdict{}, errors.New("consumer: Guard.Consumer is empty")
	}
	if m.Version < 1 || m.AggregateID == "" {
		return Verdict{}, fmt.Errorf("consumer: %s/%d/%d has no aggregate ID and version", m.Topic, m.Partition, m.Offset)
	}
	var v Verdict
	err := tx.QueryRow(ctx, `
		WITH previous AS (
			SELECT version FROM consumer_versions
			WHERE consumer = $1 AND topic = $2 AND tenant = $3 AND aggregate_id = $4
			FOR UPDATE
		), recorded AS (
			INSERT INTO consumer_versions AS v (consumer, topic, tenant, aggregate_id, version) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (consumer, topic, tenant, aggregate_id) DO UPDATE SET version = EXCLUDED.version
			WHERE v.version < EXCLUDED.version
			RETURNING 1
		)
		SELECT coalesce((SELECT version FROM previous), 0), EXISTS (SELECT 1 FROM recorded)`,
		g.Consumer, m.Topic, m.Tenant, m.AggregateID, m.Version).Scan(&v.Previous, &v.New)
	if err != nil {
		return Verdict{}, fmt.Errorf("consumer: recording %s@%d: %w", envelope.StreamKey(m.Tenant, m.AggregateID), m.Version, err)
	}
	if v.New && m.Version > v.Previous+1 {
		v.Missed = m.Version - v.Previous - 1
	}
	return v, nil
}

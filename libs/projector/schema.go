package projector

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/requestreply"
)

// schema is the runtime's own state: stored offsets per projection and
// partition, the outcome of every applied command with its reply, and the
// change log.
const schema = `
CREATE TABLE IF NOT EXISTS projector_offsets (
	projection  text   NOT NULL,
	topic       text   NOT NULL,
	partition   int    NOT NULL,
	next_offset bigint NOT NULL,
	PRIMARY KEY (projection, topic, partition)
);
CREATE TABLE IF NOT EXISTS command_outcomes (
	command_id   text        PRIMARY KEY,
	topic        text        NOT NULL,
	aggregate_id text        NOT NULL,
	version      bigint      NOT NULL,
	outcome      text        NOT NULL,
	reply        json        NOT NULL, -- json, not jsonb: the stored reply is returned byte for byte
	tenant       text        NOT NULL DEFAULT '',
	applied_at   timestamptz NOT NULL DEFAULT now()
);
-- Outcomes are pruned by age (Config.OutcomeRetention).
CREATE INDEX IF NOT EXISTS command_outcomes_applied_at ON command_outcomes (applied_at);
-- The change log: every applied event, for live views that resume
-- (projector.Changes); kept ChangeRetention.
CREATE TABLE IF NOT EXISTS view_changes (
	topic        text        NOT NULL,
	aggregate_id text        NOT NULL,
	version      bigint      NOT NULL,
	type         text        NOT NULL,
	data         jsonb       NOT NULL,
	at           timestamptz NOT NULL,
	PRIMARY KEY (topic, aggregate_id, version)
);
CREATE INDEX IF NOT EXISTS view_changes_at ON view_changes (at);
-- The tenant wall (see the view's migration 0004_tenant_wall.sql): a role
-- that does not own these tables sees only the outcomes and changes of the
-- tenant named in answerback.tenant; the change log names its aggregates by
-- stream key, "<tenant>/<id>".
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = 'command_outcomes' AND policyname = 'tenant_wall') THEN
		ALTER TABLE command_outcomes ENABLE ROW LEVEL SECURITY;
		CREATE POLICY tenant_wall ON command_outcomes
			USING (tenant = current_setting('answerback.tenant', true))
			WITH CHECK (tenant = current_setting('answerback.tenant', true));
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = 'view_changes' AND policyname = 'tenant_wall') THEN
		ALTER TABLE view_changes ENABLE ROW LEVEL SECURITY;
		CREATE POLICY tenant_wall ON view_changes
			USING (split_part(aggregate_id, '/', 1) = current_setting('answerback.tenant', true))
			WITH CHECK (split_part(aggregate_id, '/', 1) = current_setting('answerback.tenant', true));
	END IF;
END
$$;`

// EnsureSchema creates the runtime's tables when missing; concurrent callers
// serialise on an advisory lock.
func EnsureSchema(ctx context.Context, db interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("projector schema: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7243001)`); err != nil {
		return fmt.Errorf("projector schema: %w", err)
	}
	if _, err := tx.Exec(ctx, schema); err != nil {
		return fmt.Errorf("projector schema: %w", err)
	}
	return tx.Commit(ctx)
}

// ErrNoOutcome reports a command with no recorded outcome (yet): the same
// error as requestreply's, so that either test holds.
var ErrNoOutcome = requestreply.ErrNoOutcome

// OutcomeStore reads the recorded outcomes from DB (a pool, a connection or
// a transaction): requestreply.Client's fallback when a reply is lost, and
// the command status any gateway answers.
type OutcomeStore struct {
	DB interface {
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

// Outcome returns the recorded outcome of tenant's command commandID, or
// ErrNoOutcome (also when the command is another tenant's).
func (s OutcomeStore) Outcome(ctx context.Context, tenant, commandID string) (requestreply.Outcome, error) {
	o := requestreply.Outcome{CommandID: commandID}
	var outcome string
	err := s.DB.QueryRow(ctx, `SELECT aggregate_id, version, outcome, reply, applied_at FROM command_outcomes WHERE command_id = $1 AND tenant = $2`, commandID, tenant).
		Scan(&o.AggregateID, &o.Version, &outcome, &o.Reply, &o.DecidedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrNoOutcome
	}
	if err != nil {
		return o, fmt.Errorf("looking up the outcome of %s: %w", commandID, err)
	}
	o.Outcome = envelope.Outcome(outcome)
	return o, nil
}

// Package database is the reference deployment's PostgreSQL database as a
// whole: the view's schema (view), the projector's (projector), and the
// gateway's own tables — idempotency keys and pending marks — brought up to
// date together (MigrateAll); and the grants of a gateway that runs on a
// role of its own behind the tenant wall (GrantGateway), which the gateway
// and `abctl db grant-gateway` share.
package database

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/projector"
)

// GatewaySchema is the gateway's own state, shared by every instance:
// idempotency keys (kept at least 24 h) and commands answered 202, so that
// any instance can tell "pending" from "unknown".
const GatewaySchema = `
CREATE TABLE IF NOT EXISTS idempotency_keys (
	tenant       text        NOT NULL,
	key          text        NOT NULL,
	fingerprint  text        NOT NULL,
	command_id   text        NOT NULL,
	aggregate_id text        NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant, key)
);
CREATE TABLE IF NOT EXISTS pending_commands (
	command_id   text        PRIMARY KEY,
	aggregate_id text        NOT NULL,
	tenant       text        NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
CREATE INDEX IF NOT EXISTS pending_commands_created_at ON pending_commands (created_at);`

// EnsureGatewaySchema creates the gateway's own tables when missing.
func EnsureGatewaySchema(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7243002)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, GatewaySchema)
		return err
	})
}

// gatewayReads and gatewayWrites are the tables a gateway uses.
var (
	gatewayReads  = []string{"schema_migrations", "catalog_items", "orders", "order_lines", "sku_reservations", "command_outcomes", "view_changes"}
	gatewayWrites = []string{"idempotency_keys", "pending_commands"}
)

// GrantGateway prepares the database for gateways that connect as role, a
// role of their own that does not own the tables, so that the tenant wall
// applies to them: on pool, connected as the tables' owner, it brings every
// schema the gateway uses up to date (the gateway's role may not), and
// grants role reading the view, the outcomes and the change log, and
// writing the gateway's own idempotency keys and pending marks. Creating
// role, with LOGIN and a password, is the database administrator's (or
// CloudNativePG's managed roles). Granting again is a no-op.
func GrantGateway(ctx context.Context, pool *pgxpool.Pool, role string) error {
	if err := MigrateAll(ctx, pool); err != nil {
		return err
	}
	r := pgx.Identifier{role}.Sanitize()
	tables := func(names []string) string {
		ids := make([]string, len(names))
		for i, n := range names {
			ids[i] = pgx.Identifier{n}.Sanitize()
		}
		return strings.Join(ids, ", ")
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var schema string
		if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return err
		}
		for _, stmt := range []string{
			`GRANT USAGE ON SCHEMA ` + pgx.Identifier{schema}.Sanitize() + ` TO ` + r,
			`GRANT SELECT ON ` + tables(gatewayReads) + ` TO ` + r,
			`GRANT SELECT, INSERT, UPDATE, DELETE ON ` + tables(gatewayWrites) + ` TO ` + r,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("granting the gateway's role %s: %w", role, err)
			}
		}
		return nil
	})
}

// MigrateAll brings the view's, the projector's and the gateway's own schema
// up to date (each idempotent, serialised by advisory locks).
func MigrateAll(ctx context.Context, pool *pgxpool.Pool) error {
	if err := view.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("view migrations: %w", err)
	}
	if err := projector.EnsureSchema(ctx, pool); err != nil {
		return err
	}
	if err := EnsureGatewaySchema(ctx, pool); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	return nil
}

// OwnsSchema reports whether pool's role may bring the schema up to date:
// the view does not exist yet, or the role owns it (or is a member of its
// owner, as a superuser is). A gateway on a role of its own (GrantGateway)
// does not, and leaves the schema to its owner.
func OwnsSchema(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var owns bool
	err := pool.QueryRow(ctx, `
		SELECT to_regclass('orders') IS NULL
		    OR pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = to_regclass('orders')), 'USAGE')`).Scan(&owns)
	return owns, err
}

package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/services/gateway/auth"
)

// The tenant wall is PostgreSQL's row-level security beside every query's
// own tenant filter: on a role of its own that does not own the tables
// (GrantGateway), a gateway sees and writes only the rows of the tenant its
// connection names in the setting TenantSetting — the view's, the recorded
// outcomes' and the change log's (view migration 0004, projector's schema).
// TenantWall sets it from each request's token. On the tables' owner the
// wall does not apply, and the queries' filters alone keep tenants apart.

// TenantSetting is the PostgreSQL setting that names the tenant whose rows a
// connection may see.
const TenantSetting = "answerback.tenant"

type tenantKey struct{}

// WithTenant returns ctx naming tenant for the wall (TenantWall): what a
// request reads on its tenant's behalf carries its principal already;
// background work names the tenant it works for with this.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// tenantOfContext is the tenant ctx names: WithTenant's, else the request's
// principal's, else "" (no tenant: the wall shows nothing).
func tenantOfContext(ctx context.Context) string {
	if t, ok := ctx.Value(tenantKey{}).(string); ok {
		return t
	}
	if p, ok := ctx.Value(principalKey{}).(auth.Principal); ok {
		return p.Tenant
	}
	return ""
}

// TenantWall makes pool name, in TenantSetting, the tenant of the context
// each connection is acquired with (tenantOfContext), before the
// connection is used: one round trip when the connection's tenant changes,
// none when it stays. Call it on the pool's config before creating it; it
// keeps a PrepareConn already set.
func TenantWall(cfg *pgxpool.Config) {
	prev := cfg.PrepareConn
	cfg.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		if prev != nil {
			if ok, err := prev(ctx, conn); !ok || err != nil {
				return ok, err
			}
		}
		tenant := tenantOfContext(ctx)
		data := conn.PgConn().CustomData()
		if current, ok := data[TenantSetting].(string); ok && current == tenant {
			return true, nil
		}
		if _, err := conn.Exec(ctx, "SELECT set_config('"+TenantSetting+"', $1, false)", tenant); err != nil {
			return false, fmt.Errorf("naming the tenant on a connection: %w", err) // the connection is dropped
		}
		data[TenantSetting] = tenant
		return true, nil
	}
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
	if err := migrateAll(ctx, pool); err != nil {
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

// migrateAll brings the view's, the projector's and the gateway's own schema
// up to date (each idempotent, serialised by advisory locks).
func migrateAll(ctx context.Context, pool *pgxpool.Pool) error {
	if err := view.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("view migrations: %w", err)
	}
	if err := projector.EnsureSchema(ctx, pool); err != nil {
		return err
	}
	if err := ensureGatewaySchema(ctx, pool); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	return nil
}

// ownsSchema reports whether pool's role may bring the schema up to date:
// the view does not exist yet, or the role owns it (or is a member of its
// owner, as a superuser is). A gateway on a role of its own (GrantGateway)
// does not, and leaves the schema to its owner.
func ownsSchema(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var owns bool
	err := pool.QueryRow(ctx, `
		SELECT to_regclass('orders') IS NULL
		    OR pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = to_regclass('orders')), 'USAGE')`).Scan(&owns)
	return owns, err
}

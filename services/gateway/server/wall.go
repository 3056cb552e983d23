package server

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/auth"
)

// The tenant wall is PostgreSQL's row-level security beside every query's
// own tenant filter: on a role of its own that does not own the tables
// (database.GrantGateway), a gateway sees and writes only the rows of the tenant its
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

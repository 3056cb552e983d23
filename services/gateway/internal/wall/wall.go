// Package wall is the tenant wall: PostgreSQL's row-level security beside
// every query's own tenant filter. On a role of its own that does not own
// the tables (database.GrantGateway), a gateway sees and writes only the
// rows of the tenant its connection names in the setting Setting — the
// view's, the recorded outcomes' and the change log's (view migration 0004,
// the projector's schema). Pool sets it from the tenant each connection is
// acquired for (WithTenant). On the tables' owner the wall does not apply,
// and the queries' filters alone keep tenants apart.
package wall

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Setting is the PostgreSQL setting that names the tenant whose rows a
// connection may see.
const Setting = "answerback.tenant"

type tenantKey struct{}

// WithTenant returns ctx naming tenant for the wall: the gateway names a
// request's tenant when it authenticates the request; background work
// names the tenant it works for.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// tenantOf is the tenant ctx names, or "" (no tenant: the wall shows
// nothing).
func tenantOf(ctx context.Context) string {
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
}

// Pool makes a pool name, in Setting, the tenant of the context each
// connection is acquired with (WithTenant), before the
// connection is used: one round trip when the connection's tenant changes,
// none when it stays. Call it on the pool's config before creating it; it
// keeps a PrepareConn already set.
func Pool(cfg *pgxpool.Config) {
	prev := cfg.PrepareConn
	cfg.PrepareConn = func(ctx context.Context, conn *pgx.Conn) (bool, error) {
		if prev != nil {
			if ok, err := prev(ctx, conn); !ok || err != nil {
				return ok, err
			}
		}
		tenant := tenantOf(ctx)
		data := conn.PgConn().CustomData()
		if current, ok := data[Setting].(string); ok && current == tenant {
			return true, nil
		}
		if _, err := conn.Exec(ctx, "SELECT set_config('"+Setting+"', $1, false)", tenant); err != nil {
			return false, fmt.Errorf("naming the tenant on a connection: %w", err) // the connection is dropped
		}
		data[Setting] = tenant
		return true, nil
	}
}

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/libs/testenv"
	"github.com/answerback/answerback/services/gateway/server"
)

// TestTenantsKeptApart runs two tenants on one stack. Another tenant's order
// and command are "not found" on every route — never 403, never a hint —
// while that tenant may use the same order ID and SKUs for its own, which
// never meet; and every route refuses a missing, expired or foreign token,
// or one without its scope, before anything runs.
func TestTenantsKeptApart(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		checkTenantsKeptApart(t, startStackWithOrder(t, k, stackOptions{}))
	})
}

// checkTenantsKeptApart is TestTenantsKeptApart on stack s.
func checkTenantsKeptApart(t *testing.T, s *stack) {
	t.Helper()
	s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 2})
	async := s.callWith(0, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1}, map[string]string{"Prefer": "respond-async"})
	if async.Status != http.StatusAccepted {
		t.Fatalf("respond-async: %d %s", async.Status, async.Body)
	}
	acmeCommand := async.json(t)["commandId"].(string)

	globex := s.tokenFor("globex")
	as := func(token string, i int, method, path string, body any) response {
		t.Helper()
		return s.callWith(i, method, path, body, map[string]string{"Authorization": "Bearer " + token})
	}
	// globex has a catalog of its own with the same SKU, so that its
	// commands on acme's order reach the aggregate.
	if r := as(globex, 0, http.MethodPut, "/v1/catalog/apple", map[string]any{"name": "Globex apple", "unitPrice": 999, "stock": 1, "maxPerOrder": 1, "active": true}); r.Status != http.StatusOK {
		t.Fatalf("globex's catalog: %d %s", r.Status, r.Body)
	}

	// Acme's order and command, seen by globex: 404 on every route, on both gateways.
	for i := range 2 {
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/v1/orders/o"},
			{http.MethodGet, "/v1/orders/o?minVersion=1"},
			{http.MethodGet, "/v1/orders/o/valid-items"},
			{http.MethodGet, "/v1/orders/o/stream"},
			{http.MethodPost, "/v1/orders/o/items"},
			{http.MethodDelete, "/v1/orders/o/items/apple"},
			{http.MethodPost, "/v1/orders/o/submit"},
			{http.MethodPost, "/v1/orders/o/cancel"},
			{http.MethodGet, "/v1/commands/" + acmeCommand},
		} {
			var body any
			if strings.HasSuffix(c.path, "/items") {
				body = map[string]any{"sku": "apple", "quantity": 1}
			}
			r := s.callWith(i, c.method, c.path, body, map[string]string{"Authorization": "Bearer " + globex, "Prefer": "wait=2"})
			if r.Status != http.StatusNotFound {
				t.Errorf("globex %s %s on gateway %d: %d %s, want 404", c.method, c.path, i+1, r.Status, r.Body)
			}
			if strings.Contains(string(r.Body), "acme") || strings.Contains(string(r.Body), "customer") {
				t.Errorf("globex %s %s: the 404 hints at acme's order: %s", c.method, c.path, r.Body)
			}
		}
	}

	// The same ID is globex's own order: created, priced from globex's catalog.
	if r := as(globex, 1, http.MethodPost, "/v1/orders", map[string]any{"id": "o", "customerId": "g-1"}); r.Status != http.StatusCreated {
		t.Fatalf("globex creates its own o: %d %s", r.Status, r.Body)
	}
	r := as(globex, 0, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
	if r.Status != http.StatusOK {
		t.Fatalf("globex adds to its o: %d %s", r.Status, r.Body)
	}
	order := r.json(t)["order"].(map[string]any)
	if order["customerId"] != "g-1" || order["total"] != float64(999) {
		t.Errorf("globex's o: %v, want customer g-1 and total 999 (its own price)", order)
	}
	acme := s.mustCall(1, http.StatusOK, http.MethodGet, "/v1/orders/o?minVersion=3", nil).json(t)["order"].(map[string]any)
	if acme["customerId"] == "g-1" || acme["total"] != float64(360) {
		t.Errorf("acme's o after globex's: %v, want its own customer and total 360", acme)
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(s.mustCall(0, http.StatusOK, http.MethodGet, "/v1/catalog", nil).Body, &list); err != nil {
		t.Fatal(err)
	}
	for _, it := range list.Items {
		if it["name"] == "Globex apple" {
			t.Errorf("acme's catalog lists globex's item: %v", it)
		}
	}
	if events := s.eventsOf("orders", "o"); len(events) != 3 {
		t.Errorf("acme's o has %d events, want 3: globex's commands must not touch it", len(events))
	}
}

// TestEveryRouteRefusesBadTokens: on the whole stack, every /v1 route answers
// 401 to a missing, expired or foreign token and 403 to one without the
// route's scope; a good token of another tenant is the 404 above.
func TestEveryRouteRefusesBadTokens(t *testing.T) {
	t.Parallel()
	s := startStackWithOrder(t, testenv.EmbeddedKafka(t), stackOptions{gateways: 1})
	foreign, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := s.key.Mint("x", testTenant, auth.AllScopes, -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{
		"no token":       "",
		"expired":        "Bearer " + expired,
		"foreign signer": "Bearer " + s.mint(foreign, testTenant),
		"not a JWT":      "Bearer not-a-token",
		"basic":          "Basic YWNtZTpwdw==",
	}
	routes := []struct {
		method, path, scope string
		body                any
	}{
		{http.MethodPost, "/v1/orders", auth.ScopeOrdersWrite, map[string]any{"customerId": "c"}},
		{http.MethodGet, "/v1/orders/o", auth.ScopeOrdersRead, nil},
		{http.MethodGet, "/v1/orders/o/valid-items", auth.ScopeOrdersRead, nil},
		{http.MethodGet, "/v1/orders/o/stream", auth.ScopeOrdersRead, nil},
		{http.MethodPost, "/v1/orders/o/items", auth.ScopeOrdersWrite, map[string]any{"sku": "apple", "quantity": 1}},
		{http.MethodDelete, "/v1/orders/o/items/apple", auth.ScopeOrdersWrite, nil},
		{http.MethodPost, "/v1/orders/o/submit", auth.ScopeOrdersWrite, nil},
		{http.MethodPost, "/v1/orders/o/cancel", auth.ScopeOrdersWrite, nil},
		{http.MethodGet, "/v1/commands/c-1", "", nil},
		{http.MethodGet, "/v1/catalog", auth.ScopeOrdersRead, nil},
		{http.MethodPut, "/v1/catalog/apple", auth.ScopeCatalogAdmin, map[string]any{"stock": 1}},
	}
	for _, rt := range routes {
		for name, header := range tokens {
			h := map[string]string{"Authorization": header}
			r := s.callWith(0, rt.method, rt.path, rt.body, h)
			if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s, %s: %d %q, want 401 with a Bearer challenge", rt.method, rt.path, name, r.Status, r.Header.Get("WWW-Authenticate"))
			}
		}
		if rt.scope == "" {
			continue // every scope may read a command's status
		}
		for _, other := range auth.AllScopes {
			if other == rt.scope || rt.path == "/v1/catalog" && other == auth.ScopeCatalogAdmin {
				continue
			}
			r := s.callWith(0, rt.method, rt.path, rt.body, map[string]string{"Authorization": "Bearer " + s.tokenFor(testTenant, other)})
			if r.Status != http.StatusForbidden || !strings.Contains(r.Header.Get("WWW-Authenticate"), "insufficient_scope") {
				t.Errorf("%s %s with only %s: %d, want 403 insufficient_scope", rt.method, rt.path, other, r.Status)
			}
		}
	}
	// What the matrix refused changed nothing: o is still at version 1.
	if events := s.eventsOf("orders", "o"); len(events) != 1 {
		t.Errorf("o has %d events after the refused requests, want 1", len(events))
	}
}

// TestTenantWall runs the gateways on a PostgreSQL role of their own, behind
// row-level security (abctl db grant-gateway; server.TenantWall). Every
// route still serves each tenant its own data and nothing of another's —
// TestTenantsKeptApart's walk, and a live view fed by a change — so every
// read names its tenant to the database. And the wall holds by itself: on
// that role, queries with no tenant filter at all see only the rows of the
// tenant the connection names, and nothing when it names none.
func TestTenantWall(t *testing.T) {
	t.Parallel()
	s := startStackWithOrder(t, testenv.EmbeddedKafka(t), stackOptions{tenantWall: true})
	checkTenantsKeptApart(t, s)

	events, closeStream := stream(t, s.gateways[1], s.token, "o", "")
	defer closeStream()
	if ev := next(t, events, 5*time.Second); ev.event != "snapshot" || ev.id != "3" {
		t.Fatalf("first event %+v, want the snapshot at version 3", ev)
	}
	s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "pear", "quantity": 1})
	if ev := next(t, events, 5*time.Second); ev.event != "item-added" || ev.id != "4" || !strings.Contains(string(ev.data.Order), "pear") {
		t.Fatalf("event %+v, want item-added at version 4 holding pear", ev)
	}

	ctx := testenv.Context(t, time.Minute)
	conn, err := s.gatewayPool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tenants := func(query string) []string {
		t.Helper()
		rows, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return got
	}
	queries := []string{
		`SELECT DISTINCT tenant FROM orders ORDER BY 1`,
		`SELECT DISTINCT tenant FROM order_lines ORDER BY 1`,
		`SELECT DISTINCT tenant FROM catalog_items ORDER BY 1`,
		`SELECT DISTINCT tenant FROM command_outcomes ORDER BY 1`,
		`SELECT DISTINCT split_part(aggregate_id, '/', 1) FROM view_changes ORDER BY 1`,
	}
	for _, tenant := range []string{"", testTenant, "globex"} {
		if _, err := conn.Exec(ctx, `SELECT set_config('answerback.tenant', $1, false)`, tenant); err != nil {
			t.Fatal(err)
		}
		for _, q := range queries {
			got := tenants(q)
			want := []string{tenant}
			if tenant == "" {
				want = nil
			}
			if !slices.Equal(got, want) {
				t.Errorf("behind the wall as %q, %s: %v, want %v", tenant, q, got, want)
			}
		}
	}
	conn.Release()

	// A rebuild swaps in new tables: they keep the gateways' grants and the
	// wall, and the gateways go on.
	if _, err := projector.Rebuild(ctx, view.Projection(s.prefix), projector.RebuildConfig{
		Brokers: s.k.Seeds, Pool: s.pg.Pool, Migrate: view.Migrate, SwapWithin: 1,
	}); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	order := s.mustCall(1, http.StatusOK, http.MethodGet, "/v1/orders/o", nil).json(t)
	if order["version"] != float64(4) {
		t.Errorf("acme's o after the rebuild: version %v, want 4", order["version"])
	}
	s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "pear", "quantity": 1})
	if got := s.callWith(0, http.MethodGet, "/v1/orders/o", nil, map[string]string{"Authorization": "Bearer " + s.tokenFor("globex")}).json(t); got["order"].(map[string]any)["customerId"] != "g-1" {
		t.Errorf("globex's o after the rebuild: %v", got)
	}

	// Both tenants' rows are there: the owner sees them all.
	var owners []string
	rows, err := s.pg.Pool.Query(ctx, `SELECT DISTINCT tenant FROM orders ORDER BY 1`)
	if err == nil {
		owners, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || !slices.Equal(owners, []string{testTenant, "globex"}) {
		t.Errorf("the owner sees the orders of %v (%v), want both tenants'", owners, err)
	}
}

// BenchmarkTenantWall prints what the wall costs a gateway's read of an
// order (view.GetOrder): on the owner's role (no wall), behind the wall
// with every read for the same tenant (the connection keeps it), and with
// the tenant changing at every read (one set_config round trip more).
func BenchmarkTenantWall(b *testing.B) {
	s := startStackWithOrder(b, testenv.EmbeddedKafka(b), stackOptions{tenantWall: true})
	s.mustCall(1, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
	walled := s.gatewayPool
	read := func(b *testing.B, pool *pgxpool.Pool, tenant func(i int) string) {
		for i := 0; b.Loop(); i++ {
			ctx := server.WithTenant(context.Background(), tenant(i))
			if _, _, err := view.GetOrder(ctx, pool, tenant(i), "o"); err != nil && !errors.Is(err, view.ErrNotFound) {
				b.Fatal(err)
			}
		}
	}
	b.Run("owner", func(b *testing.B) { read(b, s.pg.Pool, func(int) string { return testTenant }) })
	b.Run("wall-same-tenant", func(b *testing.B) { read(b, walled, func(int) string { return testTenant }) })
	b.Run("wall-tenant-changes", func(b *testing.B) {
		read(b, walled, func(i int) string { return []string{testTenant, "globex"}[i%2] })
	})
}

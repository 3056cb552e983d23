package server

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/answerback/answerback/libs/auth"
)

// testAuth is a development key and its verifier, for gateways in tests.
type testAuth struct {
	t   testing.TB
	key *auth.DevKey
	v   *auth.Verifier
	dir string // holds the key's file
}

func newTestAuth(t testing.TB) testAuth {
	t.Helper()
	dir := t.TempDir()
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := key.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	return testAuth{t, key, v, dir}
}

// forged signs claims with the trusted key under alg (the key's own bytes
// serve as the HMAC secret for HS256): what an attacker or a misconfigured
// issuer could send. Claims default to a good token's, overridden by set.
func (a testAuth) forged(alg jwa.SignatureAlgorithm, set map[string]any) string {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dir, auth.DevKeyFile))
	if err != nil {
		a.t.Fatal(err)
	}
	key, err := jwk.ParseKey(b)
	if err != nil {
		a.t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{"iss": auth.DevIssuer, "aud": auth.DevAudience, "tenant": "acme",
		"scope": strings.Join(auth.AllScopes, " "), "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix()}
	maps.Copy(claims, set)
	tb := jwt.New()
	for k, v := range claims {
		_ = tb.Set(k, v)
	}
	var signingKey any = key
	if alg.IsSymmetric() {
		signingKey = b
	}
	kid, _ := key.KeyID()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, kid)
	signed, err := jwt.Sign(tb, jwt.WithKey(alg, signingKey, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		a.t.Fatal(err)
	}
	return string(signed)
}

// token mints a token for tenant with scopes (all of them when none given).
func (a testAuth) token(tenant string, scopes ...string) string {
	a.t.Helper()
	if len(scopes) == 0 {
		scopes = auth.AllScopes
	}
	tok, err := a.key.Mint("test", tenant, scopes, time.Hour)
	if err != nil {
		a.t.Fatal(err)
	}
	return tok
}

// authorize sets req's bearer token.
func (a testAuth) authorize(req *http.Request, tenant string, scopes ...string) *http.Request {
	req.Header.Set("Authorization", "Bearer "+a.token(tenant, scopes...))
	return req
}

// TestEveryV1RouteNeedsToken walks the router: every /v1 route answers a
// request without a token, or with a refused one, 401 with a Bearer
// challenge and a problem, before anything else runs; and one with a valid
// token but none of the route's scopes 403 insufficient_scope.
func TestEveryV1RouteNeedsToken(t *testing.T) {
	a := newTestAuth(t)
	// A pool that never connects: a request past authentication fails at
	// its first read with 503, touching nothing.
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	gw := &Gateway{cfg: Config{Auth: a.v, Pool: pool, ProduceTimeout: time.Second}, log: slog.New(slog.DiscardHandler)}
	routes := gw.routes()
	// The forger's tokens are good unless a claim is changed: each case
	// below is refused for its one fault.
	if _, err := a.v.Verify(context.Background(), a.forged(jwa.EdDSA(), nil)); err != nil {
		t.Fatalf("an unaltered forged token is refused: %v", err)
	}
	other := newTestAuth(t) // another issuer's key: a signature the gateway cannot verify
	var n int
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, "/v1/") {
			return nil
		}
		n++
		path := strings.NewReplacer("{id}", "o-1", "{sku}", "apple", "{commandId}", "c-1").Replace(route)
		for name, header := range map[string]string{
			"expired":         "Bearer " + a.forged(jwa.EdDSA(), map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}),
			"not yet valid":   "Bearer " + a.forged(jwa.EdDSA(), map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}),
			"wrong audience":  "Bearer " + a.forged(jwa.EdDSA(), map[string]any{"aud": "someone-else"}),
			"wrong issuer":    "Bearer " + a.forged(jwa.EdDSA(), map[string]any{"iss": "https://evil.example"}),
			"wrong algorithm": "Bearer " + a.forged(jwa.HS256(), nil),
			"no tenant":       "Bearer " + a.forged(jwa.EdDSA(), map[string]any{"tenant": ""}),
			"no token":        "",
			"not bearer":      "Basic dXNlcjpwYXNz",
			"empty bearer":    "Bearer ",
			"garbage":         "Bearer x.y.z",
			"foreign issuer":  "Bearer " + other.token("acme"),
			"unsigned (none)": "Bearer eyJhbGciOiJub25lIn0.eyJ0ZW5hbnQiOiJhY21lIn0.",
		} {
			req := httptest.NewRequest(method, path, strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			rec := httptest.NewRecorder()
			routes.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") ||
				rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %s, %s: %d %q, want 401 with a Bearer challenge", method, route, name, rec.Code, rec.Header().Get("WWW-Authenticate"))
			}
		}
		// A token with a scope of this API, but not one this route takes.
		for _, scope := range auth.AllScopes {
			req := a.authorize(httptest.NewRequest(method, path, strings.NewReader(`{}`)), "acme", scope)
			rec := httptest.NewRecorder()
			routes.ServeHTTP(rec, req)
			if rec.Code == http.StatusForbidden != !routeTakes(method, route, scope) {
				t.Errorf("%s %s with only %s: %d", method, route, scope, rec.Code)
			}
			if rec.Code == http.StatusForbidden && !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("%s %s: 403 without insufficient_scope", method, route)
			}
		}
		return nil
	})
	if err != nil || n < 11 {
		t.Fatalf("walked %d /v1 routes (%v)", n, err)
	}
}

// routeTakes is the scope table of docs/design/security.md ("Scopes").
func routeTakes(method, route, scope string) bool {
	switch {
	case route == "/v1/commands/{commandId}":
		return true
	case route == "/v1/catalog" && method == http.MethodGet:
		return scope == auth.ScopeOrdersRead || scope == auth.ScopeCatalogAdmin
	case strings.HasPrefix(route, "/v1/catalog"):
		return scope == auth.ScopeCatalogAdmin
	case method == http.MethodGet:
		return scope == auth.ScopeOrdersRead
	}
	return scope == auth.ScopeOrdersWrite
}

// TestStreamTakesAccessTokenParameter: the live view's route (and only it)
// takes the token as access_token, for browsers' EventSource.
func TestStreamTakesAccessTokenParameter(t *testing.T) {
	a := newTestAuth(t)
	routes := (&Gateway{cfg: Config{Auth: a.v}}).routes()
	tok := a.token("acme")
	rec := httptest.NewRecorder()
	routes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/orders/a%20b?access_token="+tok, nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("GET /v1/orders/{id} with access_token: %d, want 401 (a token in a URL is taken on the stream only)", rec.Code)
	}
	rec = httptest.NewRecorder()
	routes.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/orders/a%20b/stream?access_token="+tok, nil))
	if rec.Code != http.StatusBadRequest { // past authentication: the ID is refused
		t.Fatalf("stream with access_token: %d, want 400 for the bad ID", rec.Code)
	}
}

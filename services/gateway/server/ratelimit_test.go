package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Past its rate, a tenant's requests are answered 429 with Retry-After and
// a problem; the health endpoints are not limited.
func TestRateLimitPerTenant(t *testing.T) {
	a := newTestAuth(t)
	routes := (&Gateway{cfg: Config{RateLimit: 3, Auth: a.v}}).routes()
	statusAs := func(tenant, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		routes.ServeHTTP(rec, a.authorize(httptest.NewRequest(http.MethodGet, path, nil), tenant))
		return rec
	}
	status := func(path string) *httptest.ResponseRecorder { return statusAs("acme", path) }
	for i := range 3 { // an ID the gateway refuses before it reads anything
		if rec := status("/v1/orders/a%20b"); rec.Code != http.StatusBadRequest {
			t.Fatalf("request %d: %d, want 400 (under the limit)", i+1, rec.Code)
		}
	}
	rec := status("/v1/orders/a%20b")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("over the limit: %d, Retry-After %q, %s; want a 429 problem with Retry-After", rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Content-Type"))
	}
	if rec := statusAs("globex", "/v1/orders/a%20b"); rec.Code != http.StatusBadRequest {
		t.Errorf("another tenant while acme is limited: %d, want 400 (its own budget)", rec.Code)
	}
	if rec := status("/healthz"); rec.Code != http.StatusNoContent {
		t.Errorf("/healthz over the limit: %d, want 204", rec.Code)
	}
}

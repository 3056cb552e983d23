package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHTTPMetricsByRoutePattern: a request is counted under its route
// pattern and status, never its raw path; an unrouted one as "unmatched".
func TestHTTPMetricsByRoutePattern(t *testing.T) {
	a := newTestAuth(t)
	routes := (&Gateway{cfg: Config{Auth: a.v}}).routes()
	count := func(route, method, status string) float64 {
		return testutil.ToFloat64(httpRequests.WithLabelValues(route, method, status))
	}
	health0, missing0, odd0 := count("/healthz", "GET", "204"), count("unmatched", "GET", "404"), count("unmatched", "other", "405")
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/healthz", nil),
		httptest.NewRequest(http.MethodGet, "/healthz", nil),
		httptest.NewRequest(http.MethodGet, "/no/such/thing-42", nil),
		a.authorize(httptest.NewRequest("BREW", "/v1/orders/o-1", nil), "acme"),
	} {
		routes.ServeHTTP(httptest.NewRecorder(), req)
	}
	if got := count("/healthz", "GET", "204") - health0; got != 2 {
		t.Errorf("/healthz 204 rose by %v, want 2", got)
	}
	if got := count("unmatched", "GET", "404") - missing0; got != 1 {
		t.Errorf("unmatched 404 rose by %v, want 1", got)
	}
	if got := count("unmatched", "other", "405") - odd0; got != 1 {
		t.Errorf("BREW /v1/orders/o-1 not counted as unmatched, method other, 405: rose by %v", got)
	}
	if n := testutil.CollectAndCount(httpDuration, "answerback_http_request_duration_seconds"); n == 0 {
		t.Error("no request durations")
	}
	before := testutil.ToFloat64(commandRequests.WithLabelValues(commandTimeout))
	countCommand(commandTimeout)
	if got := testutil.ToFloat64(commandRequests.WithLabelValues(commandTimeout)) - before; got != 1 {
		t.Errorf("timeouts rose by %v, want 1", got)
	}
}

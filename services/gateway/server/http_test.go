package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMethodNotAllowedListsAllow: a 405 names the methods the path serves.
func TestMethodNotAllowedListsAllow(t *testing.T) {
	t.Parallel()
	routes := (&Gateway{}).routes()
	for path, want := range map[string]string{
		"/v1/catalog":            "GET",
		"/v1/orders/o-1":         "GET",
		"/v1/orders/o-1/items/x": "DELETE",
		"/v1/orders":             "POST",
	} {
		rec := httptest.NewRecorder()
		routes.ServeHTTP(rec, httptest.NewRequest("TRACE", path, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("TRACE %s: %d, want 405", path, rec.Code)
		}
		if got := rec.Header().Get("Allow"); got != want {
			t.Errorf("TRACE %s: Allow %q, want %q", path, got, want)
		}
	}
}

// TestMalformedIdempotencyKeyRefused: a key that is present but empty,
// repeated, too long or not visible ASCII is a 400 before anything runs.
func TestMalformedIdempotencyKeyRefused(t *testing.T) {
	t.Parallel()
	routes := (&Gateway{}).routes()
	for name, keys := range map[string][]string{
		"empty":     {""},
		"repeated":  {"a", "b"},
		"too long":  {strings.Repeat("k", 256)},
		"space":     {"a b"},
		"non-ASCII": {"clé"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(`{"customerId":"c"}`))
		req.Header.Set("Content-Type", "application/json")
		for _, k := range keys {
			req.Header.Add("Idempotency-Key", k)
		}
		rec := httptest.NewRecorder()
		routes.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid Idempotency-Key") {
			t.Errorf("%s key: %d %s, want 400 invalid Idempotency-Key", name, rec.Code, rec.Body)
		}
	}
}

// TestDecodeBodyTakesIntegralNumbers: 344.0 and 3.44e2 are the integer 344
// (JSON Schema counts them as integers); 344.5 and 1e30 are refused.
func TestDecodeBodyTakesIntegralNumbers(t *testing.T) {
	t.Parallel()
	type body struct {
		Quantity int64 `json:"quantity"`
	}
	for in, want := range map[string]int64{`{"quantity":344}`: 344, `{"quantity":344.0}`: 344, `{"quantity":3.44e2}`: 344, `{"quantity":-2E0}`: -2} {
		var b body
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(in))
		req.Header.Set("Content-Type", "application/json")
		if _, ok := decodeBody(rec, req, &b); !ok || b.Quantity != want {
			t.Errorf("%s: %d (%d %s), want %d", in, b.Quantity, rec.Code, rec.Body, want)
		}
	}
	for _, in := range []string{`{"quantity":344.5}`, `{"quantity":1e30}`, `{"quantity":"3"}`, `{"quantity":3,"x":1}`, `{"quantity":null}`, `null`} {
		var b body
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(in))
		req.Header.Set("Content-Type", "application/json")
		if _, ok := decodeBody(rec, req, &b); ok || rec.Code != http.StatusBadRequest {
			t.Errorf("%s: accepted or %d, want 400", in, rec.Code)
		}
	}
}

// TestParseIfMatch: quoted, weak and bare versions, "*" and absent; garbage refused.
func TestParseIfMatch(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{`"3"`: 3, `W/"3"`: 3, `3`: 3, `*`: -1, "absent": -1} {
		h := http.Header{}
		if in != "absent" {
			h.Set("If-Match", in)
		}
		got, err := parseIfMatch(h)
		if err != nil || got != want {
			t.Errorf("If-Match %q: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{`"a"`, `"-1"`, `"3", "4"`, `W/""`, `x`, ``} {
		if _, err := parseIfMatch(http.Header{"If-Match": {in}}); err == nil {
			t.Errorf("If-Match %q accepted", in)
		}
	}
}

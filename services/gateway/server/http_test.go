package server

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMethodNotAllowedListsAllow: a 405 names the methods the path serves.
func TestMethodNotAllowedListsAllow(t *testing.T) {
	t.Parallel()
	a := newTestAuth(t)
	routes := (&Gateway{cfg: Config{Auth: a.v}}).routes()
	for path, want := range map[string]string{
		"/v1/catalog":            "GET",
		"/v1/orders/o-1":         "GET",
		"/v1/orders/o-1/items/x": "DELETE",
		"/v1/orders":             "POST",
	} {
		rec := httptest.NewRecorder()
		routes.ServeHTTP(rec, a.authorize(httptest.NewRequest("TRACE", path, nil), "acme"))
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
	a := newTestAuth(t)
	routes := (&Gateway{cfg: Config{Auth: a.v}}).routes()
	for name, keys := range map[string][]string{
		"empty":     {""},
		"repeated":  {"a", "b"},
		"too long":  {strings.Repeat("k", 256)},
		"space":     {"a b"},
		"non-ASCII": {"clé"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(`{"customerId":"c"}`))
		req.Header.Set("Content-Type", "application/json")
		a.authorize(req, "acme")
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

// TestHostileBodies: JSON nested deeper than the decoder allows and bodies
// over the limit are refused with 400 and 413, and nothing panics.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	wide := `{"a":"` + strings.Repeat("x", maxBody) + `"}`
	for name, tc := range map[string]struct {
		body string
		want int
	}{
		"nested 20000 deep": {`{"quantity":` + deep + `}`, http.StatusBadRequest},
		"over the limit":    {wide, http.StatusRequestEntityTooLarge},
		"two values":        {`{"quantity":1}{"quantity":2}`, http.StatusBadRequest},
	} {
		var v struct{ Quantity any }
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		if _, ok := decodeBody(rec, req, &v); ok || rec.Code != tc.want {
			t.Errorf("%s: accepted or %d, want %d", name, rec.Code, tc.want)
		}
	}
}

// TestSlowClientIsCut: a client that sends its headers slower than the read
// header timeout loses its connection; the server does not wait for it.
func TestSlowClientIsCut(t *testing.T) {
	t.Parallel()
	srv := newHTTPServer(http.NotFoundHandler(), time.Second)
	srv.ReadHeaderTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }() // ends at Close below
	defer srv.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST /v1/orders HTTP/1.1\r\nHost: x\r\n")); err != nil { // and never the end of the headers
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // only so a broken server cannot hang the test
	rest, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the connection was not closed by the server: %v", err)
	}
	if len(rest) > 0 && !strings.HasPrefix(string(rest), "HTTP/1.1 408") {
		t.Fatalf("answer to a stalled request: %q", rest)
	}
}

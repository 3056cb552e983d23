package server

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleServed: / is the console's page; every file it loads — and
// every module those import — is served with its media type; a browser
// revalidates with the ETag; other methods are 405 and paths the console
// does not have stay the API's 404 problem.
func TestConsoleServed(t *testing.T) {
	t.Parallel()
	a := newTestAuth(t)
	routes := (&Gateway{cfg: Config{Auth: a.v}}).routes()
	get := func(method, path string, header ...string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		routes.ServeHTTP(rec, req)
		return rec
	}

	page := get(http.MethodGet, "/")
	if page.Code != http.StatusOK || !strings.HasPrefix(page.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", page.Code, page.Header().Get("Content-Type"))
	}
	if csp := page.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q", csp)
	}

	// Follow every reference: src= and href= in the page, imports in modules.
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]*)"|from '\./([^']+)'`)
	want := map[string]string{".js": "text/javascript", ".css": "text/css"}
	seen := map[string]bool{}
	queue := []string{page.Body.String()}
	for len(queue) > 0 {
		body := queue[0]
		queue = queue[1:]
		for _, m := range refs.FindAllStringSubmatch(body, -1) {
			path := m[1]
			if path == "" {
				path = "/" + m[2]
			}
			if seen[path] || path == "/openapi.json" {
				continue
			}
			seen[path] = true
			rec := get(http.MethodGet, path)
			ext := path[strings.LastIndex(path, "."):]
			if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), want[ext]) {
				t.Errorf("GET %s: %d %q, want 200 %s", path, rec.Code, rec.Header().Get("Content-Type"), want[ext])
				continue
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("GET %s: no X-Content-Type-Options: nosniff", path)
			}
			queue = append(queue, rec.Body.String())
		}
	}
	for _, path := range []string{"/console.js", "/api.js", "/live.js", "/console.css"} {
		if !seen[path] {
			t.Errorf("%s is not loaded by the page or its modules", path)
		}
	}

	etag := page.Header().Get("ETag")
	if rec := get(http.MethodGet, "/", "If-None-Match", etag); etag == "" || rec.Code != http.StatusNotModified {
		t.Errorf("GET / with If-None-Match %s: %d, want 304", etag, rec.Code)
	}
	if rec := get(http.MethodHead, "/console.js"); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD /console.js: %d with %d bytes", rec.Code, rec.Body.Len())
	}
	if rec := get(http.MethodPost, "/"); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow %q, want 405 GET, HEAD", rec.Code, rec.Header().Get("Allow"))
	}
	for _, path := range []string{"/nowhere", "/console", "/index.html", "/v1/console.js", "/console/console.js"} {
		rec := get(http.MethodGet, path, "Authorization", "Bearer "+a.token("acme"))
		if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: %d %q, want the 404 problem", path, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
}

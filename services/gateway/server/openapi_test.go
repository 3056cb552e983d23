package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

type spec struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

// TestOpenAPIMatchesRouter: the document is OpenAPI 3.1, every route the
// router serves is documented — but the web console's files (console.go) —
// and every documented operation is served.
func TestOpenAPIMatchesRouter(t *testing.T) {
	t.Parallel()
	var doc spec
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	served := map[string]bool{}
	err := chi.Walk((&Gateway{}).routes(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if _, ok := consoleRoutes[route]; ok {
			return nil // the web console's static files: not part of the API
		}
		route = strings.TrimSuffix(route, "/*")
		op := strings.ToLower(method) + " " + route
		served[op] = true
		if _, ok := doc.Paths[route][strings.ToLower(method)]; !ok {
			t.Errorf("%s is served but not in openapi.json", op)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			if !served[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which the router does not serve", method, path)
			}
		}
	}
}

// TestRoutePattern maps request paths to documented patterns.
func TestRoutePattern(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/v1/orders/o-1/items":       "/v1/orders/{id}/items",
		"/v1/orders/o-1/items/apple": "/v1/orders/{id}/items/{sku}",
		"/v1/commands/abc":           "/v1/commands/{commandId}",
	} {
		method := http.MethodPost
		if strings.Count(path, "/") == 5 {
			method = http.MethodDelete
		}
		if strings.HasPrefix(path, "/v1/commands") {
			method = http.MethodGet
		}
		if got, ok := RoutePattern(method, path); !ok || got != want {
			t.Errorf("RoutePattern(%s %s) = %q, %v; want %q", method, path, got, ok, want)
		}
	}
	if _, ok := RoutePattern(http.MethodGet, "/nowhere"); ok {
		t.Error("RoutePattern matched /nowhere")
	}
}

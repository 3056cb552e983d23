package server

import (
	_ "embed"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// openAPI is the OpenAPI 3.1 description of the HTTP API, served at
// /openapi.json. Tests keep it true: every route the router serves is in it,
// and every status a response of the integration tests carried is documented.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document.
func OpenAPI() []byte { return openAPI }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// RoutePattern returns the route pattern (e.g. /v1/orders/{id}) that serves
// method and path, and false when none does.
func RoutePattern(method, path string) (string, bool) {
	rctx := chi.NewRouteContext()
	if !patternRouter.Match(rctx, method, path) {
		return "", false
	}
	return rctx.RoutePattern(), true
}

// patternRouter has the gateway's routes, for RoutePattern; its handlers are never called.
var patternRouter = (&Gateway{}).routes()

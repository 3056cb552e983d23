package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/problem"
	"github.com/answerback/answerback/services/gateway/internal/idempotency"
)

// maxBody bounds request bodies; larger ones are answered 413.
const maxBody = 64 << 10

// lookupTimeout bounds one PostgreSQL read or write done after a request's
// wait is over (the recorded-outcome fallback, the pending mark), so that no
// request outlives its bound by more than this.
const lookupTimeout = time.Second

func (g *Gateway) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(traceHTTP)  // tracing.go: the server span, around everything else
	r.Use(instrument) // metrics.go: outermost, so that a recovered panic counts as its 500
	r.Use(middleware.Recoverer)
	r.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Answerback-Gateway", g.cfg.InstanceID)
			next.ServeHTTP(w, req)
		})
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	r.Get("/readyz", g.ready)
	r.Get("/openapi.json", serveOpenAPI)
	mountConsole(r) // the web console at / (console.go); not part of the API
	r.Route("/v1", func(r chi.Router) {
		// Who first (auth.go), then how much (the tenant's rate), then what.
		r.Use(g.authenticate)
		if g.cfg.RateLimit > 0 {
			r.Use(rateLimit(g.cfg.RateLimit))
		}
		r.Use(requireWellFormedKey)
		write, read := requireScope(auth.ScopeOrdersWrite), requireScope(auth.ScopeOrdersRead)
		r.With(write).Post("/orders", g.createOrder)
		r.With(read).Get("/orders/{id}", g.getOrder)
		r.With(read).Get("/orders/{id}/valid-items", g.validItems)
		r.With(read).Get("/orders/{id}/stream", g.streamOrder)
		r.With(write).Post("/orders/{id}/items", g.addItem)
		r.With(write).Delete("/orders/{id}/items/{sku}", g.removeItem)
		r.With(write).Post("/orders/{id}/submit", g.orderCommand(orders.CommandSubmit))
		r.With(write).Post("/orders/{id}/cancel", g.orderCommand(orders.CommandCancel))
		// A command's status is for whoever may send or read commands.
		r.With(requireScope(auth.AllScopes...)).Get("/commands/{commandId}", g.commandStatus)
		// Who reads orders reads the catalog their lines name.
		r.With(requireScope(auth.ScopeOrdersRead, auth.ScopeCatalogAdmin)).Get("/catalog", g.listCatalog)
		r.With(requireScope(auth.ScopeCatalogAdmin)).Put("/catalog/{sku}", g.upsertCatalogItem)
	})
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeProblem(w, &envelope.Problem{Type: "not-found", Title: "no such resource"})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", strings.Join(allowedMethods(r, req.URL.Path), ", "))
		writeProblem(w, &envelope.Problem{Type: "method-not-allowed", Title: "method not allowed"})
	})
	return r
}

// allowedMethods lists the methods router serves on path, for the Allow
// header of a 405 (RFC 9110 §15.5.6).
func allowedMethods(router chi.Routes, path string) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if router.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// requireWellFormedKey answers 400 to a request whose Idempotency-Key is
// present but empty, repeated, or not 1 to 255 visible ASCII characters: a
// client that meant to send a key must not have its command run unprotected.
func requireWellFormedKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if keys := r.Header.Values("Idempotency-Key"); len(keys) > 1 || len(keys) == 1 && !idempotency.ValidKey(keys[0]) {
			writeProblem(w, &envelope.Problem{Type: "malformed", Title: "invalid Idempotency-Key",
				Detail: "send one Idempotency-Key of 1 to 255 visible ASCII characters"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := g.cfg.Pool.Ping(ctx); err != nil {
		writeProblem(w, &envelope.Problem{Type: "not-ready", Title: "database unavailable"})
		return
	}
	if err := g.rr.Kafka().Ping(ctx); err != nil {
		writeProblem(w, &envelope.Problem{Type: "not-ready", Title: "Kafka unavailable"})
		return
	}
	if err := g.commandTopicsExist(ctx); err != nil {
		writeProblem(w, &envelope.Problem{Type: "not-ready", Title: "command topics unavailable",
			Detail: err.Error() + ": run `abctl topics ensure` or start an aggregator, which creates them"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// commandTopicsExist reports whether the broker has every topic this gateway
// publishes commands to, with its partitions led. Until then a command could
// only be answered 503, so the gateway is not ready: a load balancer sends it
// no traffic while the topics are still being created (the aggregator or
// `abctl topics ensure` creates them, maybe after the gateway started).
func (g *Gateway) commandTopicsExist(ctx context.Context) error {
	want := []string{g.orders.Commands, g.catalog.Commands}
	meta, err := kadm.NewClient(g.rr.Kafka()).Metadata(ctx, want...)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for _, name := range want {
		t, ok := meta.Topics[name]
		switch {
		case !ok:
			return fmt.Errorf("topic %s: not in the metadata", name)
		case t.Err != nil:
			return fmt.Errorf("topic %s: %w", name, t.Err)
		case len(t.Partitions) == 0:
			return fmt.Errorf("topic %s: no partitions", name)
		}
		for _, p := range t.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return fmt.Errorf("topic %s partition %d: no leader", name, p.Partition)
			}
		}
	}
	return nil
}

// decodeBody reads a JSON request body into v and returns it normalized
// (integral numbers as integers): 415 for another media type, 413 when too
// large, 400 when malformed, with a null, or with unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) (json.RawMessage, bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeProblem(w, &envelope.Problem{Type: "unsupported-media-type", Title: "send application/json"})
		return nil, false
	}
	// Two steps: into generic JSON first, where integral numbers written with
	// a fraction or an exponent (344.0, 3.44e2) become plain integers — JSON
	// Schema counts them as integers, and some clients' JSON writers emit
	// them — then strictly into v.
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeProblem(w, &envelope.Problem{Type: "too-large", Title: "request body too large",
				Detail: fmt.Sprintf("at most %d bytes", maxBody)})
			return nil, false
		}
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body", Detail: err.Error()})
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body", Detail: "trailing data after the JSON value"})
		return nil, false
	}
	if path, found := findNull(generic, "$"); found {
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body",
			Detail: path + " is null: leave a member out instead"})
		return nil, false
	}
	normalized, _ := json.Marshal(integralNumbers(generic)) // generic came from JSON: it encodes
	strict := json.NewDecoder(bytes.NewReader(normalized))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body", Detail: err.Error()})
		return nil, false
	}
	return normalized, true
}

// findNull returns the JSON path of the first null in v, if any: no field of
// this API is nullable, and Go would read a null as "leave the field as is".
func findNull(v any, path string) (string, bool) {
	switch x := v.(type) {
	case nil:
		return path, true
	case map[string]any:
		for k, e := range x {
			if p, found := findNull(e, path+"."+k); found {
				return p, true
			}
		}
	case []any:
		for i, e := range x {
			if p, found := findNull(e, path+"["+strconv.Itoa(i)+"]"); found {
				return p, true
			}
		}
	}
	return "", false
}

// integralNumbers rewrites, within v (decoded with UseNumber), every number
// that is a whole value in int64's range into its plain integer form.
func integralNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = integralNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = integralNumbers(e)
		}
	case json.Number:
		if !strings.ContainsAny(string(x), ".eE") {
			return x
		}
		f, ok := new(big.Float).SetString(string(x))
		if ok && f.IsInt() {
			if i, acc := f.Int64(); acc == big.Exact {
				return json.Number(strconv.FormatInt(i, 10))
			}
		}
	}
	return v
}

// validID accepts aggregate IDs and SKUs: 1 to 100 bytes of letters, digits, '-', '_', '.', ':'.
func validID(id string) bool {
	if id == "" || len(id) > 100 {
		return false
	}
	for _, c := range id {
		letterOrDigit := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !letterOrDigit && !strings.ContainsRune("-_.:", c) {
			return false
		}
	}
	return true
}

// pathID reads the URL parameter name and answers 400 when it is not a valid ID.
func pathID(w http.ResponseWriter, r *http.Request, name, what string) (string, bool) {
	id := chi.URLParam(r, name)
	// chi matches the escaped path when the request has one: "o%3A1" is "o:1".
	if unescaped, err := url.PathUnescape(id); err == nil {
		id = unescaped
	}
	if !validID(id) {
		badID(w, what, id)
		return "", false
	}
	return id, true
}

func badID(w http.ResponseWriter, what, id string) {
	writeProblem(w, &envelope.Problem{Type: "malformed", Title: "invalid " + what,
		Detail: fmt.Sprintf("%q: want 1 to 100 letters, digits, '-', '_', '.' or ':'", id)})
}

// internal logs err once, here at the edge, and answers 500 without details.
func (g *Gateway) internal(w http.ResponseWriter, what string, err error) {
	g.log.Error("internal error", "during", what, "err", err)
	writeProblem(w, &envelope.Problem{Type: "internal", Title: "internal error"})
}

// writeProblem answers p with the status the problem table gives its type
// (libs/pipeline/problem): one status per type, wherever it is raised.
func writeProblem(w http.ResponseWriter, p *envelope.Problem) {
	p.Status = problem.Status(p.Type)
	w.Header().Set("Content-Type", envelope.ProblemJSON)
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", envelope.ContentTypeJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

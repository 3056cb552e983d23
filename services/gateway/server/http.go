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
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/problems"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/requestreply"
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
		writeProblem(w, &envelope.Problem{Type: "not-found", Title: "no such resource", Status: http.StatusNotFound})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Allow", strings.Join(allowedMethods(r, req.URL.Path), ", "))
		writeProblem(w, &envelope.Problem{Type: "method-not-allowed", Title: "method not allowed", Status: http.StatusMethodNotAllowed})
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
		if keys := r.Header.Values("Idempotency-Key"); len(keys) > 1 || len(keys) == 1 && !validKey(keys[0]) {
			writeProblem(w, &envelope.Problem{Type: "malformed", Title: "invalid Idempotency-Key", Status: http.StatusBadRequest,
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
		writeProblem(w, &envelope.Problem{Type: "not-ready", Title: "database unavailable", Status: http.StatusServiceUnavailable})
		return
	}
	if err := g.rr.Kafka().Ping(ctx); err != nil {
		writeProblem(w, &envelope.Problem{Type: "not-ready", Title: "Kafka unavailable", Status: http.StatusServiceUnavailable})
		return
	}
	if err := g.commandTopicsExist(ctx); err != nil {
		writeProblem(w, &envelope.Problem{Type: "not-ready", Title: "command topics unavailable", Status: http.StatusServiceUnavailable,
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
		writeProblem(w, &envelope.Problem{Type: "unsupported-media-type", Title: "send application/json", Status: http.StatusUnsupportedMediaType})
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
			writeProblem(w, &envelope.Problem{Type: "too-large", Title: "request body too large", Status: http.StatusRequestEntityTooLarge,
				Detail: fmt.Sprintf("at most %d bytes", maxBody)})
			return nil, false
		}
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body", Status: http.StatusBadRequest, Detail: err.Error()})
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body", Status: http.StatusBadRequest, Detail: "trailing data after the JSON value"})
		return nil, false
	}
	if path, found := findNull(generic, "$"); found {
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body", Status: http.StatusBadRequest,
			Detail: path + " is null: leave a member out instead"})
		return nil, false
	}
	normalized, _ := json.Marshal(integralNumbers(generic)) // generic came from JSON: it encodes
	strict := json.NewDecoder(bytes.NewReader(normalized))
	strict.DisallowUnknownFields()
	if err := strict.Decode(v); err != nil {
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed JSON body", Status: http.StatusBadRequest, Detail: err.Error()})
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
	writeProblem(w, &envelope.Problem{Type: "malformed", Title: "invalid " + what, Status: http.StatusBadRequest,
		Detail: fmt.Sprintf("%q: want 1 to 100 letters, digits, '-', '_', '.' or ':'", id)})
}

func (g *Gateway) createOrder(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID string `json:"id"`
		orders.Create
	}
	if _, ok := decodeBody(w, r, &body); !ok {
		return
	}
	if body.ID == "" {
		body.ID = uuid.NewString()
		if key := r.Header.Get("Idempotency-Key"); key != "" {
			body.ID = derivedID(tenantOf(r), key) // a retried create reaches the same order
		}
	}
	if !validID(body.ID) {
		badID(w, "order ID", body.ID)
		return
	}
	data, _ := json.Marshal(body.Create)
	g.send(w, r, g.orders.Commands, orders.CommandCreate, body.ID, data, http.StatusCreated)
}

func (g *Gateway) addItem(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id", "order ID")
	if !ok {
		return
	}
	var body orders.AddItem
	if _, ok := decodeBody(w, r, &body); !ok {
		return
	}
	// The order aggregate does not know the catalog: an unknown SKU is refused
	// here, from the catalog view, before any command is produced.
	exists, err := g.catalogHas(r.Context(), tenantOf(r), body.SKU)
	if err != nil {
		g.unavailable(w, "catalog lookup", err)
		return
	}
	if !exists {
		writeProblem(w, &envelope.Problem{Type: problems.UnknownSKU, Title: "unknown SKU", Status: problems.HTTPStatus(problems.UnknownSKU),
			Detail: fmt.Sprintf("%q is not in the catalog", body.SKU)})
		return
	}
	data, _ := json.Marshal(body)
	g.send(w, r, g.orders.Commands, orders.CommandAddItem, id, data, http.StatusOK)
}

// catalogHas reports whether tenant's catalog view has sku: from memory
// when it had it before (knownSKUs), else from PostgreSQL.
func (g *Gateway) catalogHas(ctx context.Context, tenant, sku string) (bool, error) {
	key := tenant + "/" + sku
	if g.knownSKUs.Has(key) {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.ProduceTimeout)
	defer cancel()
	exists, err := view.CatalogItemExists(ctx, g.cfg.Pool, tenant, sku)
	if exists {
		g.knownSKUs.Add(key, time.Now())
	}
	return exists, err
}

func (g *Gateway) removeItem(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id", "order ID")
	if !ok {
		return
	}
	data, _ := json.Marshal(orders.RemoveItem{SKU: chi.URLParam(r, "sku")})
	g.send(w, r, g.orders.Commands, orders.CommandRemoveItem, id, data, http.StatusOK)
}

func (g *Gateway) orderCommand(commandType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r, "id", "order ID")
		if !ok {
			return
		}
		g.send(w, r, g.orders.Commands, commandType, id, json.RawMessage(`{}`), http.StatusOK)
	}
}

func (g *Gateway) upsertCatalogItem(w http.ResponseWriter, r *http.Request) {
	sku, ok := pathID(w, r, "sku", "SKU")
	if !ok {
		return
	}
	// The client's members go on as sent (normalized), not re-encoded from
	// the struct: the catalog needs to tell a missing price from a zero one.
	data, ok := decodeBody(w, r, &catalog.Upsert{})
	if !ok {
		return
	}
	g.send(w, r, g.catalog.Commands, catalog.CommandUpsert, sku, data, http.StatusOK)
}

// send produces a command and answers with its outcome. The waiter is
// registered before the produce, so no reply can slip past it.
//
// Headers honoured: Idempotency-Key (a retry returns the first outcome),
// If-Match (optimistic concurrency), Prefer: wait=N and respond-async.
func (g *Gateway) send(w http.ResponseWriter, r *http.Request, topic, commandType, aggregateID string, data json.RawMessage, okStatus int) {
	release, ok := g.acquireWaiter(w)
	if !ok {
		return
	}
	defer release()
	prefs := parsePrefer(r.Header, g.cfg.DefaultWait, g.cfg.MaxWait)
	if len(prefs.applied) > 0 {
		w.Header().Set("Preference-Applied", strings.Join(prefs.applied, ", "))
	}
	expected, err := parseIfMatch(r.Header)
	if err != nil {
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed If-Match", Status: http.StatusBadRequest, Detail: err.Error()})
		return
	}
	tenant := tenantOf(r)
	cmd := envelope.Command{
		Meta: envelope.Meta{
			CommandID:       uuid.NewString(),
			AggregateID:     aggregateID,
			Tenant:          tenant,
			IdempotencyKey:  r.Header.Get("Idempotency-Key"),
			ExpectedVersion: expected,
		},
		Type: commandType,
		Data: data,
	}
	// Recording the key and producing share one budget, so that no request
	// outlives ProduceTimeout + its wait + one lookup.
	produceBy := time.Now().Add(g.cfg.ProduceTimeout)
	if key := cmd.IdempotencyKey; key != "" { // well-formed: requireWellFormedKey checked it
		reserveCtx, cancel := context.WithDeadline(r.Context(), produceBy)
		print := fingerprint(r.Method, r.URL.Path, r.Header.Get("If-Match"), aggregateID, data)
		first, err := g.reserveKey(reserveCtx, tenant, key, print, cmd.CommandID, aggregateID)
		cancel()
		switch {
		case errors.Is(err, errKeyReused):
			writeProblem(w, &envelope.Problem{Type: "idempotency-key-reused", Title: "this Idempotency-Key was used for another request",
				Status: http.StatusUnprocessableEntity, Detail: "a key identifies one request: send a new key for a new request"})
			return
		case err != nil:
			countCommand(commandUnavailable)
			g.unavailable(w, "idempotency key", err)
			return
		}
		// A retry is produced again under the first command's ID: if the
		// first never reached Kafka this one is decided; if it did, the
		// aggregate answers "duplicate" and emits nothing.
		cmd.CommandID = first
	}
	wait := prefs.wait
	if prefs.async {
		wait = 0 // answer 202 once Kafka acknowledged the command
	}
	res, err := g.rr.Send(r.Context(), requestreply.Request{Topic: topic, Command: cmd, Wait: wait, ProduceBy: produceBy})
	switch {
	case err == nil:
		g.writeReply(w, res.Reply, aggregateID, okStatus)
	case errors.Is(err, requestreply.ErrPending):
		if prefs.async {
			countCommand(commandAccepted)
		} else {
			countCommand(commandTimeout)
		}
		cmd.CommandID = res.CommandID
		g.accepted(w, cmd)
	case errors.Is(err, requestreply.ErrUnavailable):
		countCommand(commandUnavailable)
		w.Header().Set("Retry-After", "1")
		writeProblem(w, &envelope.Problem{Type: "unavailable", Title: "Kafka did not acknowledge the command in time; retry shortly",
			Status: http.StatusServiceUnavailable, CommandID: res.CommandID,
			Detail: "the command may still be applied: retry with the same Idempotency-Key to be sure it is applied once"})
	case r.Context().Err() != nil:
		countCommand(commandAbandoned) // the client went away
	default:
		countCommand(commandFailed)
		g.internal(w, "produce", err)
	}
}

// accepted answers 202: the command is in the pipeline, its outcome will be at Location.
func (g *Gateway) accepted(w http.ResponseWriter, cmd envelope.Command) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	g.markPending(ctx, cmd)
	w.Header().Set("Location", "/v1/commands/"+cmd.CommandID)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusAccepted, map[string]string{"commandId": cmd.CommandID, "status": "pending"})
}

// unavailable answers 503 when a dependency does not answer in time.
func (g *Gateway) unavailable(w http.ResponseWriter, what string, err error) {
	g.log.Warn("dependency unavailable", "during", what, "err", err)
	w.Header().Set("Retry-After", "1")
	writeProblem(w, &envelope.Problem{Type: "unavailable", Title: "a dependency is unavailable; retry shortly", Status: http.StatusServiceUnavailable})
}

func (g *Gateway) writeReply(w http.ResponseWriter, reply envelope.Reply, aggregateID string, okStatus int) {
	countCommand(string(reply.Outcome))
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(reply.Version, 10)))
	if reply.Outcome == envelope.Rejected {
		var p envelope.Problem
		if err := json.Unmarshal(reply.Body, &p); err != nil {
			g.internal(w, "rejection", err)
			return
		}
		p.Status = problems.HTTPStatus(p.Type)
		writeProblem(w, &p)
		return
	}
	if okStatus == http.StatusCreated {
		w.Header().Set("Location", "/v1/orders/"+aggregateID)
	}
	w.Header().Set("Content-Type", envelope.ContentTypeJSON)
	w.WriteHeader(okStatus)
	_, _ = w.Write(reply.Body)
}

// acquireWaiter takes one of the gateway's MaxInFlight waiting slots — held
// by a command waiting for its reply or a read waiting for a version — or
// answers 503 overloaded with Retry-After at once.
func (g *Gateway) acquireWaiter(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case g.inFlight <- struct{}{}:
		return func() { <-g.inFlight }, true
	default:
		w.Header().Set("Retry-After", "1")
		writeProblem(w, &envelope.Problem{Type: "overloaded", Title: "too many requests waiting on this gateway; retry shortly",
			Status: http.StatusServiceUnavailable})
		return nil, false
	}
}

func (g *Gateway) getOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id", "order ID")
	if !ok {
		return
	}
	minVersion := int64(0)
	if q := r.URL.Query(); q.Has("minVersion") { // present but empty is malformed too
		n, err := strconv.ParseInt(q.Get("minVersion"), 10, 64)
		if err != nil || n < 0 {
			writeProblem(w, &envelope.Problem{Type: "malformed", Title: "minVersion must be a non-negative integer", Status: http.StatusBadRequest})
			return
		}
		minVersion = n
	}
	if minVersion > 0 {
		release, ok := g.acquireWaiter(w)
		if !ok {
			return
		}
		defer release()
	}
	prefs := parsePrefer(r.Header, g.cfg.DefaultWait, g.cfg.MaxWait)
	if len(prefs.applied) > 0 && minVersion > 0 {
		w.Header().Set("Preference-Applied", strings.Join(prefs.applied, ", "))
	}
	ctx, cancel := context.WithTimeout(r.Context(), prefs.wait)
	defer cancel()
	for {
		body, version, err := view.GetOrder(context.WithoutCancel(ctx), g.cfg.Pool, tenantOf(r), id)
		switch {
		case errors.Is(err, view.ErrNotFound) && minVersion == 0:
			writeProblem(w, &envelope.Problem{Type: problems.OrderNotFound, Title: "order not found", Status: http.StatusNotFound})
			return
		case err != nil && !errors.Is(err, view.ErrNotFound):
			g.unavailable(w, "order view", err)
			return
		case err == nil && version >= minVersion:
			w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(version, 10)))
			w.Header().Set("Content-Type", envelope.ContentTypeJSON)
			_, _ = w.Write(body)
			return
		}
		select {
		case <-ctx.Done():
			if errors.Is(err, view.ErrNotFound) { // still no such order (of this tenant): not a version to wait for
				writeProblem(w, &envelope.Problem{Type: problems.OrderNotFound, Title: "order not found", Status: http.StatusNotFound})
				return
			}
			writeProblem(w, &envelope.Problem{Type: "version-not-reached", Title: "the view has not reached that version yet", Status: http.StatusGatewayTimeout})
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (g *Gateway) commandStatus(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "commandId")
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ProduceTimeout)
	defer cancel()
	st, err := g.rr.Status(ctx, tenantOf(r), id)
	if err != nil {
		g.unavailable(w, "command status", err)
		return
	}
	if outcome := st.Outcome; outcome != nil {
		w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(outcome.Version, 10)))
		status := map[string]any{
			"commandId": id, "status": outcome.Outcome, "aggregateId": outcome.AggregateID,
			"version": outcome.Version, "decidedAt": outcome.DecidedAt,
		}
		if outcome.Outcome == envelope.Rejected {
			var p envelope.Problem
			if json.Unmarshal(outcome.Reply, &p) == nil {
				p.Status = problems.HTTPStatus(p.Type)
			}
			status["problem"] = p
		} else {
			status["reply"] = outcome.Reply
		}
		writeJSON(w, http.StatusOK, status)
		return
	}
	pending := st.SentHere
	if !pending {
		if pending, err = g.isPending(ctx, tenantOf(r), id); err != nil {
			g.unavailable(w, "command status", err)
			return
		}
	}
	if !pending {
		writeProblem(w, &envelope.Problem{Type: "command-not-found", Title: "unknown command", Status: http.StatusNotFound})
		return
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusOK, map[string]string{"commandId": id, "status": "pending"})
}

// validItems pages through an order's valid items, when its reply or view
// could not list them all (moreValidItems).
func (g *Gateway) validItems(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id", "order ID")
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := view.MaxValidItems
	if q.Has("limit") { // present but empty is malformed too
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > view.MaxValidItems {
			writeProblem(w, &envelope.Problem{Type: "malformed", Title: fmt.Sprintf("limit must be an integer from 1 to %d", view.MaxValidItems), Status: http.StatusBadRequest})
			return
		}
		limit = n
	}
	after := q.Get("after")
	if !utf8.ValidString(after) || strings.ContainsRune(after, 0) { // no SKU has them; PostgreSQL refuses them
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "after must be a SKU: UTF-8 text without NUL", Status: http.StatusBadRequest})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ProduceTimeout)
	defer cancel()
	body, err := view.ValidItemsPage(ctx, g.cfg.Pool, tenantOf(r), id, after, limit)
	switch {
	case errors.Is(err, view.ErrNotFound):
		writeProblem(w, &envelope.Problem{Type: problems.OrderNotFound, Title: "order not found", Status: http.StatusNotFound})
	case err != nil:
		g.unavailable(w, "order view", err)
	default:
		w.Header().Set("Content-Type", envelope.ContentTypeJSON)
		_, _ = w.Write(body)
	}
}

func (g *Gateway) listCatalog(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ProduceTimeout)
	defer cancel()
	body, err := view.ListCatalog(ctx, g.cfg.Pool, tenantOf(r))
	if err != nil {
		g.unavailable(w, "catalog view", err)
		return
	}
	w.Header().Set("Content-Type", envelope.ContentTypeJSON)
	_, _ = w.Write(body)
}

// internal logs err once, here at the edge, and answers 500 without details.
func (g *Gateway) internal(w http.ResponseWriter, what string, err error) {
	g.log.Error("internal error", "during", what, "err", err)
	writeProblem(w, &envelope.Problem{Type: "internal", Title: "internal error", Status: http.StatusInternalServerError})
}

func writeProblem(w http.ResponseWriter, p *envelope.Problem) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", envelope.ProblemJSON)
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", envelope.ContentTypeJSON)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

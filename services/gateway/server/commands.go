package server

// Command requests: each handler validates its input and sends one command
// through the request/reply client (send), answering with its reply, the
// recorded outcome, 202 or a problem.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/problems"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/requestreply"
	"github.com/answerback/answerback/services/gateway/internal/idempotency"
)

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
			body.ID = idempotency.DerivedID(tenantOf(r), key) // a retried create reaches the same order
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
		writeProblem(w, &envelope.Problem{Type: problems.UnknownSKU, Title: "unknown SKU",
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
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "malformed If-Match", Detail: err.Error()})
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
		print := idempotency.Fingerprint(r.Method, r.URL.Path, r.Header.Get("If-Match"), aggregateID, data)
		first, err := g.keys.Reserve(reserveCtx, tenant, key, print, cmd.CommandID, aggregateID)
		cancel()
		switch {
		case errors.Is(err, idempotency.ErrKeyReused):
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
	g.keys.MarkPending(ctx, cmd)
	w.Header().Set("Location", "/v1/commands/"+cmd.CommandID)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusAccepted, map[string]string{"commandId": cmd.CommandID, "status": "pending"})
}

// unavailable answers 503 when a dependency does not answer in time.
func (g *Gateway) unavailable(w http.ResponseWriter, what string, err error) {
	g.log.Warn("dependency unavailable", "during", what, "err", err)
	w.Header().Set("Retry-After", "1")
	writeProblem(w, &envelope.Problem{Type: "unavailable", Title: "a dependency is unavailable; retry shortly"})
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
		writeProblem(w, &p) // with the table's status for its type
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

package server

// Reads: the view (an order, its valid items, the catalog) and a command's
// status.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/answerback/answerback/libs/domain/problems"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/problem"
)

func (g *Gateway) getOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id", "order ID")
	if !ok {
		return
	}
	minVersion := int64(0)
	if q := r.URL.Query(); q.Has("minVersion") { // present but empty is malformed too
		n, err := strconv.ParseInt(q.Get("minVersion"), 10, 64)
		if err != nil || n < 0 {
			writeProblem(w, &envelope.Problem{Type: "malformed", Title: "minVersion must be a non-negative integer"})
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
		// Each read has a deadline of its own: one that the wait's end
		// would cut short is answered from what it read.
		readCtx, cancelRead := context.WithTimeout(r.Context(), g.cfg.ReadTimeout)
		body, version, err := view.GetOrder(readCtx, g.cfg.Pool, tenantOf(r), id)
		cancelRead()
		switch {
		case errors.Is(err, view.ErrNotFound) && minVersion == 0:
			writeProblem(w, &envelope.Problem{Type: problems.OrderNotFound, Title: "order not found"})
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
				writeProblem(w, &envelope.Problem{Type: problems.OrderNotFound, Title: "order not found"})
				return
			}
			writeProblem(w, &envelope.Problem{Type: "version-not-reached", Title: "the view has not reached that version yet"})
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
				p.Status = problem.Status(p.Type)
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
		if pending, err = g.keys.IsPending(ctx, tenantOf(r), id); err != nil {
			g.unavailable(w, "command status", err)
			return
		}
	}
	if !pending {
		writeProblem(w, &envelope.Problem{Type: "command-not-found", Title: "unknown command"})
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
			writeProblem(w, &envelope.Problem{Type: "malformed", Title: fmt.Sprintf("limit must be an integer from 1 to %d", view.MaxValidItems)})
			return
		}
		limit = n
	}
	after := q.Get("after")
	if !utf8.ValidString(after) || strings.ContainsRune(after, 0) { // no SKU has them; PostgreSQL refuses them
		writeProblem(w, &envelope.Problem{Type: "malformed", Title: "after must be a SKU: UTF-8 text without NUL"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ReadTimeout)
	defer cancel()
	body, err := view.ValidItemsPage(ctx, g.cfg.Pool, tenantOf(r), id, after, limit)
	switch {
	case errors.Is(err, view.ErrNotFound):
		writeProblem(w, &envelope.Problem{Type: problems.OrderNotFound, Title: "order not found"})
	case err != nil:
		g.unavailable(w, "order view", err)
	default:
		w.Header().Set("Content-Type", envelope.ContentTypeJSON)
		_, _ = w.Write(body)
	}
}

func (g *Gateway) listCatalog(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.ReadTimeout)
	defer cancel()
	body, err := view.ListCatalog(ctx, g.cfg.Pool, tenantOf(r))
	if err != nil {
		g.unavailable(w, "catalog view", err)
		return
	}
	w.Header().Set("Content-Type", envelope.ContentTypeJSON)
	_, _ = w.Write(body)
}

package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/answerback/answerback/libs/domain/problems"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/services/gateway/internal/live"
)

// streamWriteTimeout bounds one write to a live-view client: a client that
// stops reading is cut after it.
const streamWriteTimeout = 10 * time.Second

// streamOrder serves GET /v1/orders/{id}/stream (text/event-stream): the
// order's view, then every change, each event with id = the view version
// and event = the change type ("snapshot" for the whole view). With
// Last-Event-ID the stream resumes after that version: the missed versions
// are sent, or a snapshot when the change log no longer has them all.
// Comment lines every StreamHeartbeat keep proxies from closing it. It works
// on every gateway: changes come from PostgreSQL, whichever gateway sent the
// command.
func (g *Gateway) streamOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, "id", "order ID")
	if !ok {
		return
	}
	resumeAfter := int64(-1)
	if h := r.Header.Get("Last-Event-ID"); h != "" {
		n, err := strconv.ParseInt(h, 10, 64)
		if err != nil || n < 0 {
			writeProblem(w, &envelope.Problem{Type: "malformed", Title: "Last-Event-ID must be a view version, a non-negative integer"})
			return
		}
		resumeAfter = n
	}
	select {
	case g.streams <- struct{}{}:
		defer func() { <-g.streams }()
	default:
		w.Header().Set("Retry-After", "1")
		writeProblem(w, &envelope.Problem{Type: "overloaded", Title: "too many live views on this gateway; retry shortly"})
		return
	}
	ctx := r.Context()
	readCtx, cancelRead := context.WithTimeout(ctx, g.cfg.ReadTimeout)
	body, version, err := view.GetOrder(readCtx, g.cfg.Pool, tenantOf(r), id)
	cancelRead()
	switch {
	case err == nil:
	case errors.Is(err, view.ErrNotFound):
		writeProblem(w, &envelope.Problem{Type: problems.OrderNotFound, Title: "order not found"})
		return
	default:
		g.unavailable(w, "order view", err)
		return
	}
	// Registered before catching up: a change that commits from now on
	// comes through the hub, one before through the catch-up below.
	stream := envelope.StreamKey(tenantOf(r), id) // the hub's name of this order
	sub := g.hub.Subscribe(stream, version)
	defer g.hub.Unsubscribe(sub)

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // the server's write timeout does not fit a stream
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer
	w.WriteHeader(http.StatusOK)
	sent := int64(-1)
	write := func(f live.Frame) bool {
		if f.Version <= sent {
			return true // sent already (the hub and the catch-up overlap)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(f.Bytes); err != nil {
			return false
		}
		sent = f.Version
		return rc.Flush() == nil
	}
	first := []live.Frame{live.SnapshotFrame(body, version)}
	readCtx, cancelRead = context.WithTimeout(ctx, g.cfg.ReadTimeout) // the catch-up's reads
	defer cancelRead()
	if resumeAfter >= 0 && resumeAfter <= version {
		sent = resumeAfter
		if first, err = g.hub.FramesAfter(readCtx, stream, resumeAfter); err != nil {
			g.log.Warn("live view: reading changes", "order", id, "err", err)
			return
		}
	}
	catchUp, err := g.hub.FramesAfter(readCtx, stream, version)
	if err != nil {
		g.log.Warn("live view: reading changes", "order", id, "err", err)
		return
	}
	for _, f := range append(first, catchUp...) {
		if !write(f) {
			return
		}
	}
	heartbeat := time.NewTicker(g.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case f := <-sub.Frames:
			if !write(f) {
				return
			}
		case <-sub.Dropped:
			g.log.Info("live view: client fell behind; dropped", "order", id, "version", sent)
			return
		case <-heartbeat.C:
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-g.streamsCtx.Done(): // the gateway is shutting down: clients reconnect elsewhere
			return
		}
	}
}

// Package live streams live views: it fans the projector's change notices
// (PostgreSQL LISTEN on projector.ChangesChannel) out to the gateway's
// subscribers of each aggregate as Server-Sent Event frames (the HTTP
// handler is the server's stream.go).
package live

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/projector"
)

// streamBuffer bounds the frames waiting for one live-view Subscriber; a
// Subscriber that falls this far behind is dropped (it resumes with
// Last-Event-ID) so that it never holds up the others.
const streamBuffer = 32

// Frame is one Server-Sent Event, encoded, with the view version it carries.
type Frame struct {
	Version int64
	Bytes   []byte
}

// Subscriber is one live view being streamed.
type Subscriber struct {
	aggregate string
	Frames    chan Frame
	Dropped   chan struct{} // closed when the Hub drops it for falling behind
}

// Hub fans the projector's change notices (PostgreSQL LISTEN on
// projector.ChangesChannel) out to the live-view Subscribers of this
// gateway. Per notice it reads the new changes and the view once and hands
// the same frames to every Subscriber of the aggregate, without blocking:
// a Subscriber whose buffer is full is dropped.
type Hub struct {
	pool  *pgxpool.Pool
	topic string // the event topic whose aggregates are streamed
	log   *slog.Logger
	// read returns the view of an aggregate and its version. Aggregates are
	// named by their envelope.StreamKey (tenant and ID) throughout the Hub.
	read func(ctx context.Context, id string) (json.RawMessage, int64, error)
	// forTenant names the tenant a read is on behalf of (the tenant wall).
	forTenant func(ctx context.Context, tenant string) context.Context

	mu   sync.Mutex
	aggs map[string]*aggregateSubs
}

type aggregateSubs struct {
	subs map[*Subscriber]struct{}
	sent int64 // the highest version framed for them
}

// NewHub returns a hub of the changes to the aggregates of topic; read
// returns an aggregate's view and version, forTenant names the tenant a
// read is on behalf of. Run it.
func NewHub(pool *pgxpool.Pool, topic string, read func(context.Context, string) (json.RawMessage, int64, error),
	forTenant func(context.Context, string) context.Context, log *slog.Logger) *Hub {
	return &Hub{pool: pool, topic: topic, read: read, forTenant: forTenant, log: log, aggs: map[string]*aggregateSubs{}}
}

// subscribe registers a Subscriber of aggregate whose view is at version;
// the caller must then catch up from the change log itself (changes that
// committed before it registered come in no notice) and call unsubscribe.
func (h *Hub) Subscribe(aggregate string, version int64) *Subscriber {
	s := &Subscriber{aggregate: aggregate, Frames: make(chan Frame, streamBuffer), Dropped: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.aggs[aggregate]
	if a == nil {
		a = &aggregateSubs{subs: map[*Subscriber]struct{}{}, sent: version}
		h.aggs[aggregate] = a
	}
	a.sent = min(a.sent, version)
	a.subs[s] = struct{}{}
	return s
}

func (h *Hub) Unsubscribe(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := h.aggs[s.aggregate]; a != nil {
		delete(a.subs, s)
		if len(a.subs) == 0 {
			delete(h.aggs, s.aggregate)
		}
	}
}

// Subscribers counts the live views being streamed.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, a := range h.aggs {
		n += len(a.subs)
	}
	return n
}

// run listens for change notices until ctx ends, reconnecting when the
// connection drops; after a reconnection every streamed aggregate is
// checked, since notices sent meanwhile were lost.
func (h *Hub) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("live views: listening for change notices failed; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (h *Hub) listen(ctx context.Context) error {
	conn, err := h.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+projector.ChangesChannel); err != nil {
		return err
	}
	defer func() { // the connection goes back to the pool: stop listening on it
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_, _ = conn.Exec(c, "UNLISTEN *")
	}()
	h.mu.Lock()
	streamed := make([]string, 0, len(h.aggs))
	for id := range h.aggs {
		streamed = append(streamed, id)
	}
	h.mu.Unlock()
	for _, id := range streamed {
		h.broadcast(ctx, id)
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var notice projector.ChangeNotice
		if err := json.Unmarshal([]byte(n.Payload), &notice); err != nil {
			h.log.Warn("live views: malformed change notice", "payload", n.Payload, "err", err)
			continue
		}
		if notice.Topic == h.topic {
			h.broadcast(ctx, notice.Stream)
		}
	}
}

// broadcast frames the changes of aggregate its Subscribers have not been
// sent and hands them over.
func (h *Hub) broadcast(ctx context.Context, aggregate string) {
	h.mu.Lock()
	a := h.aggs[aggregate]
	var after int64
	if a != nil {
		after = a.sent
	}
	h.mu.Unlock()
	if a == nil {
		return // nobody streams it here
	}
	// Read on behalf of the aggregate's tenant (the tenant wall).
	tenant, _, _ := envelope.SplitStreamKey(aggregate)
	frames, err := h.FramesAfter(h.forTenant(ctx, tenant), aggregate, after)
	if err != nil {
		h.log.Warn("live views: reading changes", "aggregate", aggregate, "err", err)
		return
	}
	h.deliver(aggregate, frames)
}

// deliver hands frames to every Subscriber of aggregate without blocking;
// a Subscriber whose buffer is full is dropped (its stream ends, and its
// client resumes with Last-Event-ID), so a slow client never delays others.
func (h *Hub) deliver(aggregate string, frames []Frame) {
	if len(frames) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.aggs[aggregate]
	if a == nil {
		return
	}
	a.sent = max(a.sent, frames[len(frames)-1].Version)
	for s := range a.subs {
		for _, f := range frames {
			select {
			case s.Frames <- f:
				continue
			default:
			}
			close(s.Dropped)
			delete(a.subs, s)
			break
		}
	}
}

// framesAfter frames the changes of aggregate after version after, the last
// one with the view; a single snapshot Frame when the log no longer has
// them all.
func (h *Hub) FramesAfter(ctx context.Context, aggregate string, after int64) ([]Frame, error) {
	changes, complete, err := projector.Changes(ctx, h.pool, h.topic, aggregate, after)
	if err != nil || len(changes) == 0 {
		return nil, err
	}
	view, version, err := h.read(ctx, aggregate)
	if err != nil {
		return nil, err
	}
	if !complete {
		return []Frame{SnapshotFrame(view, version)}, nil
	}
	frames := make([]Frame, 0, len(changes))
	for i, c := range changes {
		var v json.RawMessage
		if i == len(changes)-1 && version == c.Version {
			v = view
		}
		frames = append(frames, changeFrame(c, v))
	}
	return frames, nil
}

// liveEvent is the data of a live-view event: the change that made the
// version, and the whole view when it is the latest.
type liveEvent struct {
	Version int64           `json:"version"`
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data,omitempty"`
	Time    *time.Time      `json:"time,omitempty"`
	Order   json.RawMessage `json:"order,omitempty"`
}

// SnapshotFrame is the whole view: event "snapshot".
func SnapshotFrame(view json.RawMessage, version int64) Frame {
	return encodeFrame(version, "snapshot", liveEvent{Version: version, Type: "snapshot", Order: view})
}

// changeFrame is one change: the event's name is the change type without
// domain and version ("orders.item-added.v1" → "item-added").
func changeFrame(c projector.Change, view json.RawMessage) Frame {
	name := c.Type
	if parts := strings.Split(c.Type, "."); len(parts) == 3 {
		name = parts[1]
	}
	at := c.Time
	return encodeFrame(c.Version, name, liveEvent{Version: c.Version, Type: c.Type, Data: c.Data, Time: &at, Order: view})
}

func encodeFrame(version int64, event string, data liveEvent) Frame {
	var b bytes.Buffer
	body, _ := json.Marshal(data) // plain types: cannot fail
	fmt.Fprintf(&b, "id: %d\nevent: %s\ndata: %s\n\n", version, event, body)
	return Frame{Version: version, Bytes: b.Bytes()}
}

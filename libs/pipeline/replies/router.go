// Package replies routes replies to the HTTP requests that wait for them.
//
// Each gateway instance owns one reply topic (replies.<instance>, one
// partition), created when the router opens and deleted when it closes
// cleanly; topics of crashed instances are reaped by ops tooling. The router
// reads it without a consumer group, from the start when it created the topic
// (nothing can be missed) and from the end when the topic already existed.
//
// A handler registers its waiter before it produces the command, so a reply
// that comes back faster than the produce call returns is not lost. Replies
// are matched by command ID; a reply for a waiter that gave up is counted as
// late, one for a command this instance never sent as unknown, and both are
// dropped.
//
// Tracing: a reply whose headers carry a traceparent is recorded as a
// consumer span "reply received", child of the span that produced it, and
// the span of a Wait that gets it is linked to that span.
package replies

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/recent"
	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// Config configures a Router.
type Config struct {
	Brokers []string
	// Topic is this instance's reply topic (see topics.ReplyTopic).
	Topic string
	// Retention of the reply topic; default one hour.
	Retention  time.Duration
	Logger     *slog.Logger
	ClientOpts []kgo.Opt
}

// Router correlates replies with waiters. Its methods are safe for concurrent use.
type Router struct {
	cfg Config
	cl  *kgo.Client
	log *slog.Logger

	mu      sync.Mutex
	waiters map[string][]chan delivery // several when one command ID is retried through this instance
	// gaveUp holds the command IDs whose waiters gave up lately (10 to 20
	// minutes), to count their replies late: bounded, O(1) per ID.
	gaveUp recent.Set

	delivered, late, unknown, malformed atomic.Int64
}

// Open creates the reply topic when missing and starts a client reading it.
// Call Run to route, and Close when done.
func Open(ctx context.Context, cfg Config) (*Router, error) {
	if cfg.Topic == "" || len(cfg.Brokers) == 0 {
		return nil, errors.New("replies: brokers and topic are required")
	}
	if cfg.Retention == 0 {
		cfg.Retention = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	start := kgo.NewOffset().AtStart()
	resp, err := kadm.NewClient(admCl).CreateTopic(ctx, 1, -1,
		map[string]*string{"retention.ms": kadm.StringPtr(fmt.Sprint(cfg.Retention.Milliseconds()))}, cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists):
		start = kgo.NewOffset().AtEnd()
	case err != nil:
		return nil, fmt.Errorf("replies: create topic %s: %w", cfg.Topic, err)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: {0: start}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(250 * time.Millisecond),
	}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, err
	}
	return &Router{
		cfg: cfg, cl: cl, log: cfg.Logger.With("reply_topic", cfg.Topic),
		waiters: map[string][]chan delivery{}, gaveUp: recent.Set{Window: gaveUpWindow},
	}, nil
}

// Topic is the reply topic commands should name in reply-to.
func (r *Router) Topic() string { return r.cfg.Topic }

// Waiter waits for the reply to one command.
type Waiter struct {
	r         *Router
	commandID string
	ch        chan delivery
}

// delivery is a reply and the span context of its "reply received" span
// (invalid when the reply carried no trace context).
type delivery struct {
	reply    envelope.Reply
	received trace.SpanContext
}

// Register makes a waiter for commandID. Call it before producing the
// command, and Done when no longer waiting. Several waiters of one command
// ID (an idempotent retry while the first is in flight) each get the reply.
func (r *Router) Register(commandID string) *Waiter {
	ch := make(chan delivery, 1)
	r.mu.Lock()
	r.waiters[commandID] = append(r.waiters[commandID], ch)
	r.mu.Unlock()
	return &Waiter{r: r, commandID: commandID, ch: ch}
}

// Wait returns the reply, or ctx's error when it ends first. When the reply
// carried a trace context, ctx's span (if any) is linked to the span that
// recorded its arrival.
func (w *Waiter) Wait(ctx context.Context) (envelope.Reply, error) {
	select {
	case d := <-w.ch:
		if d.received.IsValid() {
			trace.SpanFromContext(ctx).AddLink(trace.Link{SpanContext: d.received})
		}
		return d.reply, nil
	case <-ctx.Done():
		return envelope.Reply{}, ctx.Err()
	}
}

// Done unregisters the waiter; a reply arriving later is counted as late.
func (w *Waiter) Done() {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	chans := w.r.waiters[w.commandID]
	for i, ch := range chans {
		if ch == w.ch {
			chans = append(chans[:i], chans[i+1:]...)
			w.r.gaveUp.Add(w.commandID, time.Now())
			break
		}
	}
	if len(chans) == 0 {
		delete(w.r.waiters, w.commandID)
	} else {
		w.r.waiters[w.commandID] = chans
	}
}

// Stats are the router's counters since it opened.
type Stats struct {
	Delivered, Late, Unknown, Malformed int64
	Waiting                             int
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	waiting := len(r.waiters)
	r.mu.Unlock()
	return Stats{Delivered: r.delivered.Load(), Late: r.late.Load(), Unknown: r.unknown.Load(), Malformed: r.malformed.Load(), Waiting: waiting}
}

// gaveUpWindow is how long, at least, a reply whose waiter gave up counts
// as late rather than unknown.
const gaveUpWindow = 10 * time.Minute

// Run routes replies until ctx ends.
func (r *Router) Run(ctx context.Context) error {
	for {
		fetches := r.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(_ string, _ int32, err error) { r.log.Warn("reply fetch error", "err", err) })
		fetches.EachRecord(r.route)
	}
}

func (r *Router) route(rec *kgo.Record) {
	reply, err := envelope.DecodeReply(rec)
	if err != nil {
		r.malformed.Add(1)
		r.log.Warn("malformed reply dropped", "offset", rec.Offset, "err", err)
		return
	}
	r.mu.Lock()
	chans, ok := r.waiters[reply.CommandID]
	if ok {
		delete(r.waiters, reply.CommandID)
	}
	r.mu.Unlock()
	wasLate := !ok && r.gaveUp.Has(reply.CommandID)
	received := traceReceived(rec, reply, ok, wasLate)
	switch {
	case ok:
		for _, ch := range chans {
			ch <- delivery{reply: reply, received: received} // buffered, one reply per waiter
		}
		r.delivered.Add(1)
	case wasLate:
		r.late.Add(1)
	default:
		r.unknown.Add(1)
	}
}

// traceReceived records the "reply received" span of a reply whose record
// carries a trace context, child of the span that produced it, and returns
// its span context; it records nothing for a reply without one.
func traceReceived(rec *kgo.Record, reply envelope.Reply, waited, late bool) trace.SpanContext {
	parent := tracing.Extract(context.Background(), rec)
	if !trace.SpanContextFromContext(parent).IsValid() {
		return trace.SpanContext{}
	}
	routed := "unknown"
	switch {
	case waited:
		routed = "delivered"
	case late:
		routed = "late"
	}
	_, span := tracing.StartConsumer(parent, "reply received", rec,
		tracing.AttrCommandID.String(reply.CommandID), tracing.AttrOutcome.String(string(reply.Outcome)),
		attribute.String("answerback.reply.routed", routed))
	span.End()
	return span.SpanContext()
}

// Close stops reading; with deleteTopic (a clean shutdown) it also deletes
// the reply topic.
func (r *Router) Close(ctx context.Context, deleteTopic bool) error {
	r.cl.Close()
	if !deleteTopic {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.Brokers...)}, r.cfg.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).DeleteTopic(ctx, r.cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("replies: delete topic %s: %w", r.cfg.Topic, err)
	}
	return nil
}

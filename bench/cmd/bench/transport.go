package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The transport floor's topics: the three hops of a round trip.
const (
	floorCommands = "floor.commands"
	floorEvents   = "floor.events"
	floorReplies  = "floor.replies"
)

// startTransportFloor serves POST /v1/orders/{id}/items by moving the
// request through the same three Kafka hops as Answerback — commands,
// events, replies — with one PostgreSQL commit per batch on the way, and no
// processing at all: no transaction, no state, no view, no reply to derive.
// Same broker, same client settings (linger 0, acks=all, idempotent, short
// fetch waits), same partition count.
func startTransportFloor(ctx context.Context, e *env, log *slog.Logger) (*system, error) {
	pool, err := e.pool(ctx, "floor", 0)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE hops (id text PRIMARY KEY, body bytea NOT NULL)`); err != nil {
		pool.Close()
		return nil, err
	}
	if err := createTopics(ctx, e.brokers, 6, floorCommands, floorEvents, floorReplies); err != nil {
		pool.Close()
		return nil, err
	}
	f := &transportFloor{waiters: map[string]chan []byte{}}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	start := func(name string, opts []kgo.Opt, handle func(context.Context, *kgo.Client, kgo.Fetches) error) error {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(0)}, opts...)...)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { // one hop's consumer; ends when the floor stops
			defer wg.Done()
			defer cl.Close()
			for {
				fetches := cl.PollFetches(runCtx)
				if runCtx.Err() != nil {
					return
				}
				if err := handle(runCtx, cl, fetches); err != nil && runCtx.Err() == nil {
					log.Warn("transport floor hop failed", "hop", name, "err", err)
				}
			}
		}()
		return nil
	}
	group := func(g, topic string) []kgo.Opt {
		return []kgo.Opt{kgo.ConsumerGroup(g), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(100 * time.Millisecond),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd())}
	}
	forward := func(to string) func(context.Context, *kgo.Client, kgo.Fetches) error {
		return func(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) error {
			var out []*kgo.Record
			fetches.EachRecord(func(r *kgo.Record) {
				out = append(out, &kgo.Record{Topic: to, Key: r.Key, Value: r.Value, Headers: r.Headers})
			})
			return cl.ProduceSync(ctx, out...).FirstErr()
		}
	}
	// hop 2 commits the batch to PostgreSQL before passing it on.
	commitAndForward := func(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		var out []*kgo.Record
		var insertErr error
		fetches.EachRecord(func(r *kgo.Record) {
			if insertErr == nil {
				_, insertErr = tx.Exec(ctx, `INSERT INTO hops (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, string(r.Headers[0].Value), r.Value)
			}
			out = append(out, &kgo.Record{Topic: floorReplies, Key: r.Key, Value: r.Value, Headers: r.Headers})
		})
		if insertErr != nil {
			return insertErr
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		return cl.ProduceSync(ctx, out...).FirstErr()
	}
	deliver := func(_ context.Context, _ *kgo.Client, fetches kgo.Fetches) error {
		fetches.EachRecord(func(r *kgo.Record) { f.deliver(string(r.Headers[0].Value), r.Value) })
		return nil
	}
	errs := errors.Join(
		start("commands→events", group("floor-hop1", floorCommands), forward(floorEvents)),
		start("events→commit→replies", group("floor-hop2", floorEvents), commitAndForward),
		start("replies→waiter", []kgo.Opt{kgo.ConsumeTopics(floorReplies), kgo.FetchMaxWait(250 * time.Millisecond),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd())}, deliver),
	)
	producer, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(0))
	errs = errors.Join(errs, err)
	if errs != nil {
		cancel()
		wg.Wait()
		pool.Close()
		return nil, errs
	}
	f.producer = producer
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders/{id}/items", f.roundTrip)
	mux.HandleFunc("POST /v1/orders", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	url, shutdown, err := serveLocal(mux)
	if err != nil {
		cancel()
		wg.Wait()
		pool.Close()
		return nil, err
	}
	sys := &system{name: nameTransport, url: url, stop: func() {
		shutdown()
		cancel()
		wg.Wait()
		producer.Close()
		pool.Close()
	}}
	sys.createOrder = func(context.Context, string) error { return nil }
	// The group consumers start at the end: wait until both own their partitions.
	time.Sleep(3 * time.Second)
	log.Info("transport floor up", "url", sys.url)
	return sys, nil
}

type transportFloor struct {
	producer *kgo.Client
	mu       sync.Mutex
	waiters  map[string]chan []byte
}

func (f *transportFloor) roundTrip(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := uuid.NewString()
	done := make(chan []byte, 1)
	f.mu.Lock()
	f.waiters[id] = done
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.waiters, id)
		f.mu.Unlock()
	}()
	rec := &kgo.Record{Topic: floorCommands, Key: []byte(r.PathValue("id")), Value: body, Headers: []kgo.RecordHeader{{Key: "correlation-id", Value: []byte(id)}}}
	if err := f.producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	select {
	case reply := <-done:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(reply)
	case <-time.After(10 * time.Second):
		http.Error(w, "no reply", http.StatusGatewayTimeout)
	}
}

func (f *transportFloor) deliver(id string, body []byte) {
	f.mu.Lock()
	ch := f.waiters[id]
	f.mu.Unlock()
	if ch != nil {
		ch <- body
	}
}

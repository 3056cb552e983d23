// Package server is the REST gateway: it validates requests, turns them into
// commands, produces them keyed by aggregate ID, and answers each HTTP request
// with the reply that comes back on this instance's own reply topic — or, when
// the reply does not come in time, with the outcome recorded in the view, or
// 202 Accepted and where to look later.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/auth"
	"github.com/answerback/answerback/libs/domain/database"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/recent"
	"github.com/answerback/answerback/libs/pipeline/replies"
	"github.com/answerback/answerback/libs/pipeline/requestreply"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/services/gateway/internal/idempotency"
	"github.com/answerback/answerback/services/gateway/internal/live"
	"github.com/answerback/answerback/services/gateway/internal/wall"
)

// Config configures a Gateway.
type Config struct {
	// InstanceID names this gateway; its reply topic is replies.<InstanceID>. Required.
	InstanceID string
	Brokers    []string
	// TopicPrefix is put before every topic name ("" in production).
	TopicPrefix string
	Pool        *pgxpool.Pool
	// Auth verifies the bearer token every /v1 request must carry; its
	// tenant scopes everything the request touches. Required.
	Auth *auth.Verifier
	// DefaultWait is how long a request waits for its reply; default 5s.
	DefaultWait time.Duration
	// MaxWait caps Prefer: wait=N; default 30s.
	MaxWait time.Duration
	// ProduceTimeout bounds handing a command to Kafka; past it the request
	// is answered 503. Default 3s.
	ProduceTimeout time.Duration
	// ReadTimeout bounds each PostgreSQL read made for a request; past it
	// the request is answered 503 with Retry-After, so that a stalled
	// database holds no request past it. Default 3s.
	ReadTimeout time.Duration
	// MaxInFlight bounds the commands one gateway waits on at once; past it
	// a command is answered 503 with Retry-After at once. Default 2048.
	MaxInFlight int
	// MaxStreams bounds the live views (GET /v1/orders/{id}/stream) one
	// gateway streams at once; past it a stream is answered 503. Default 5,000.
	MaxStreams int
	// RateLimit bounds the /v1 requests of one tenant on one gateway per
	// second; past it they are answered 429 with Retry-After. Default 2,000;
	// negative: no limit.
	RateLimit int
	// StreamHeartbeat is how often an idle live view gets a comment line,
	// so that proxies keep the connection; default 15s.
	StreamHeartbeat time.Duration
	Logger          *slog.Logger
	ClientOpts      []kgo.Opt
}

func (c *Config) setDefaults() {
	if c.DefaultWait == 0 {
		c.DefaultWait = 5 * time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = 30 * time.Second
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 3 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 3 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 2048
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = 5000
	}
	if c.RateLimit == 0 {
		c.RateLimit = 2000
	}
	if c.StreamHeartbeat == 0 {
		c.StreamHeartbeat = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every missing setting at once.
func (c *Config) Validate() error {
	var errs []error
	if c.InstanceID == "" {
		errs = append(errs, errors.New("instance ID is required"))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers are required"))
	}
	if c.Pool == nil {
		errs = append(errs, errors.New("a database pool is required"))
	}
	if c.Auth == nil {
		errs = append(errs, errors.New("a token verifier (Auth) is required: every /v1 request is authenticated"))
	}
	if c.DefaultWait > c.MaxWait {
		errs = append(errs, fmt.Errorf("default wait %s exceeds max wait %s", c.DefaultWait, c.MaxWait))
	}
	return errors.Join(errs...)
}

// Gateway is one gateway instance.
type Gateway struct {
	cfg Config
	log *slog.Logger
	// rr sends commands and waits for their replies (the reply topic, its
	// router, the registry heartbeat, the fallback to recorded outcomes).
	rr      *requestreply.Client
	orders  topics.Names
	catalog topics.Names

	// Live views: the hub of change notices, a token per stream, and the
	// context that ends every stream when the gateway shuts down.
	hub        *live.Hub
	streams    chan struct{}
	streamsCtx context.Context
	endStreams context.CancelFunc

	// knownSKUs remembers the tenants' SKUs found in the catalog view: an
	// item once there stays (items are upserted, never deleted), so an add-
	// item command for a known SKU needs no lookup.
	knownSKUs recent.Set
	// keys are the idempotency keys and pending marks.
	keys idempotency.Store

	inFlight chan struct{} // a token per command being handled

	wg sync.WaitGroup // the router loop
}

// New announces the instance in the gateway registry, then opens the reply
// topic and the Kafka client. Call Run, then Close.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	// The gateway reads the view and the recorded outcomes: make sure their
	// schema exists even when it starts before any projector — unless it
	// runs on a role of its own behind the tenant wall, which leaves the
	// schema to its owner (database.GrantGateway).
	owns, err := database.OwnsSchema(ctx, cfg.Pool)
	if err != nil {
		return nil, fmt.Errorf("gateway: database: %w", err)
	}
	if owns {
		if err := database.MigrateAll(ctx, cfg.Pool); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	rr, err := requestreply.Open(ctx, requestreply.Config{
		Brokers: cfg.Brokers, TopicPrefix: cfg.TopicPrefix, InstanceID: cfg.InstanceID,
		Outcomes: projector.OutcomeStore{DB: cfg.Pool}, ProduceTimeout: cfg.ProduceTimeout, LookupTimeout: lookupTimeout,
		Logger: cfg.Logger, ClientOpts: cfg.ClientOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	log := cfg.Logger.With("gateway", cfg.InstanceID)
	ordersTopics := topics.For(cfg.TopicPrefix, "orders")
	readOrder := func(ctx context.Context, stream string) (json.RawMessage, int64, error) {
		tenant, id, _ := envelope.SplitStreamKey(stream)
		return view.GetOrder(ctx, cfg.Pool, tenant, id)
	}
	streamsCtx, endStreams := context.WithCancel(context.Background())
	g := &Gateway{
		cfg: cfg, log: log, rr: rr,
		orders:    ordersTopics,
		catalog:   topics.For(cfg.TopicPrefix, "catalog"),
		knownSKUs: recent.Set{Window: 10 * time.Minute},
		keys:      idempotency.Store{Pool: cfg.Pool, Logger: log},
		inFlight:  make(chan struct{}, cfg.MaxInFlight),
		hub:       live.NewHub(cfg.Pool, ordersTopics.Events, readOrder, wall.WithTenant, log),
		streams:   make(chan struct{}, cfg.MaxStreams), streamsCtx: streamsCtx, endStreams: endStreams,
	}
	track(g) // metrics.go: its live views and reply counters are exported
	return g, nil
}

// Run routes replies and feeds the live views until ctx ends, and prunes
// expired idempotency keys hourly.
func (g *Gateway) Run(ctx context.Context) error {
	g.wg.Add(3)
	defer g.wg.Done()
	go func() { // owned by Run: ends with its context; Close waits for it
		defer g.wg.Done()
		g.hub.Run(ctx)
	}()
	go func() { // owned by Run: ends with its context; Close waits for it
		defer g.wg.Done()
		g.keys.Prune(ctx)
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.keys.Prune(ctx)
			}
		}
	}()
	return g.rr.Run(ctx)
}

// Close stops the Kafka clients and, when clean is set, deletes the reply
// topic and then leaves the gateway registry. Otherwise — or when the topic
// could not be deleted — it only stops heartbeating: the registry entry turns
// stale and `abctl replies gc` may delete the topic. Call it after Run has
// returned and the HTTP server has drained.
func (g *Gateway) Close(ctx context.Context, clean bool) error {
	untrack(g)
	g.endStreams()
	g.wg.Wait()
	return g.rr.Close(ctx, clean)
}

// ReplyTopic is this instance's reply topic.
func (g *Gateway) ReplyTopic() string { return g.rr.ReplyTopic() }

// Stats are the reply router's counters.
func (g *Gateway) Stats() replies.Stats { return g.rr.Stats() }

// Handler is the gateway's HTTP API.
func (g *Gateway) Handler() http.Handler { return g.routes() }

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/problems"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/envelope"
)

// The Watermill peer's topics. Commands and events have a topic per
// aggregate type, keyed by aggregate ID, with as many partitions as
// Answerback's; the HTTP server instance has a reply topic of its own with
// one partition, as an Answerback gateway has.
const (
	wmPartitions = 6
	wmReplyTopic = "watermill.replies.http-1"
	wmReplyWait  = 10 * time.Second // as the gateways' REPLY_WAIT

	// Metadata of the peer's Watermill messages (Kafka headers): the
	// partition key, and where the HTTP request waiting for the outcome
	// listens. The requestreply operation ID travels beside them
	// (requestreply.OperationIDMetadataKey).
	wmKeyMeta     = "aggregate_id"
	wmReplyToMeta = "reply_to"
)

// The messages on the peer's buses: a Go type per aggregate type, so that
// each has its own topics (cqrs names topics after the type).
type (
	orderCommand   struct{ envelope.Command }
	catalogCommand struct{ envelope.Command }
	orderEvent     struct{ envelope.Event }
	catalogEvent   struct{ envelope.Event }
)

// wmResult is what requestreply carries back to the HTTP request: the
// status (0: the route's success status) and the body, the reply built from
// the view or a problem.
type wmResult struct {
	Status int             `json:"status,omitempty"`
	Body   json.RawMessage `json:"body"`
}

// startWatermillPeer serves the same API through the same flow as
// Answerback, built with Watermill — ThreeDotsLabs/watermill's cqrs and
// requestreply components over watermill-kafka (Sarama) — in the bench
// process, on the run's broker and PostgreSQL:
//
//  1. The HTTP handler refuses an unknown SKU from the catalog view, as the
//     gateway does, then sends the command with requestreply.SendWithReply
//     on a cqrs.CommandBus (topic watermill.<orders|catalog>.commands, 6
//     partitions, keyed by aggregate ID) and waits, 10 s at most, for the
//     reply that the requestreply.PubSubBackend delivers.
//  2. A cqrs command handler (a consumer group per handler) decides with the
//     domain code (orders.Decide/Evolve, catalog.Decide/Evolve). The state
//     lives where a Watermill user keeps it, since Watermill has no state
//     store and watermill-kafka no Kafka transactions: in a PostgreSQL
//     table, aggregates, read FOR UPDATE and written in the handler's
//     transaction together with the command's outcome in processed_commands
//     (Watermill delivers at least once: a redelivered command publishes its
//     recorded events again, or re-sends its rejection, instead of being
//     decided twice). After the commit the events go out on a cqrs.EventBus
//     (watermill.<domain>.events, keyed by aggregate ID). A rejection is
//     answered from here at once (422 and the problem), as Answerback's
//     aggregator answers rejections.
//  3. A cqrs event handler projects the event into the view
//     (view.ApplyOrderEvent/ApplyCatalogEvent) in one PostgreSQL
//     transaction, builds the reply from the read side in that transaction
//     (view.OrderReply/CatalogReply) after the last event of the command,
//     commits, and only then answers: the reply carries the read-side data,
//     computed after projection, as Answerback's projector does.
//
// How the reply reaches the HTTP request: through requestreply's machinery,
// sent from the event handler rather than the command handler.
// requestreply.NewCommandHandlerWithResult replies when the command handler
// returns, before any projection, and making that handler wait for the
// projection would hold the command's partition for a second hop. So the
// command handler is a plain cqrs handler, and the event handler calls
// PubSubBackend.OnCommandProcessed itself, with the event's message as the
// "command message": the EventBus's OnPublish hook copies the requestreply
// operation ID and the reply topic from the command's message
// (cqrs.OriginalMessageFromCtx) onto its events, where the backend finds
// them. The backend publishes the result on the HTTP server's reply topic,
// and its ListenForNotifications hands it to the waiting SendWithReply.
//
// Tuning, as a Watermill user would tune it and no further. One reply
// subscription per HTTP server instance, without consumer group, from the
// end of the topic: PubSubBackend asks SubscriberConstructor for a subscriber
// per request, which on Kafka would be a Sarama client, a metadata round
// trip and a partition consumer per request, so the constructor returns a
// view of the one shared subscription that gets only its operation's replies
// (wmReplies). Sarama producers without linger (Flush.Frequency, Bytes and
// Messages 0: a record goes out as soon as the previous request returns),
// acks=all and idempotent like the other systems' clients, one per role
// (HTTP side, command side, projection) as separate services would have.
// Fetches that return as soon as a record is there (Fetch.Min 1 byte) or
// after 100 ms (MaxWaitTime). No sleeps.
//
// What Watermill imposes, against Answerback's flow: watermill-kafka hands a
// partition's messages over one at a time and waits for each ack, so every
// command is its own PostgreSQL transaction and every event its own
// projection transaction, where Answerback batches a poll into one
// transaction (partitions do run in parallel: the router handles each message
// in a goroutine); each event is its own synchronous produce; and nothing
// makes the state, the events and the consumed offset one atomic step as
// Answerback's Kafka transaction does, hence processed_commands and an
// at-least-once event stream (the view's apply is idempotent by version).
// Not reproduced: Idempotency-Key headers and the command-outcome record
// behind GET /v1/commands/{id} (the bench relies on neither).
func startWatermillPeer(ctx context.Context, e *env, log *slog.Logger) (*system, error) {
	pool, err := e.pool(ctx, "watermill", 32) // as the gateway's pool
	if err != nil {
		return nil, err
	}
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, pool.Close)
	fail := func(err error) (*system, error) {
		closeAll()
		return nil, err
	}
	if err := view.Migrate(ctx, pool); err != nil {
		return fail(err)
	}
	if _, err := pool.Exec(ctx, `
		CREATE TABLE aggregates (domain text, id text, version bigint NOT NULL, state jsonb NOT NULL, PRIMARY KEY (domain, id));
		CREATE TABLE processed_commands (command_id text PRIMARY KEY, events jsonb, problem jsonb)`); err != nil {
		return fail(err)
	}
	domains := wmDomains()
	orderDomain, catalogDomain := domains["orderCommand"], domains["catalogCommand"]
	if err := createTopics(ctx, e.brokers, wmPartitions, orderDomain.commands, orderDomain.events, catalogDomain.commands, catalogDomain.events); err != nil {
		return fail(err)
	}
	if err := createTopics(ctx, e.brokers, 1, wmReplyTopic); err != nil {
		return fail(err)
	}

	logger := watermill.NewSlogLoggerWithLevelMapping(log.With("system", "watermill"), map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	marshaler := cqrs.JSONMarshaler{GenerateName: cqrs.StructName}
	kafkaMarshaler := kafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
		return msg.Metadata.Get(wmKeyMeta), nil
	})
	newPublisher := func() (*kafka.Publisher, error) {
		pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: e.brokers, Marshaler: kafkaMarshaler, OverwriteSaramaConfig: wmProducerConfig()}, logger)
		if err == nil {
			closers = append(closers, func() { _ = pub.Close() })
		}
		return pub, err
	}
	newSubscriber := func(group string, initial int64) (*kafka.Subscriber, error) {
		sub, err := kafka.NewSubscriber(kafka.SubscriberConfig{Brokers: e.brokers, Unmarshaler: kafkaMarshaler,
			OverwriteSaramaConfig: wmConsumerConfig(initial), ConsumerGroup: group}, logger)
		if err == nil {
			closers = append(closers, func() { _ = sub.Close() })
		}
		return sub, err
	}
	p := &wmPeer{pool: pool, log: log, domains: domains}

	// The reply side: one subscription for the HTTP server instance.
	replySub, err := newSubscriber("", sarama.OffsetNewest)
	if err != nil {
		return fail(err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	closers = append(closers, cancel)
	replyMsgs, err := replySub.Subscribe(runCtx, wmReplyTopic) // ready when it returns: partition consumers at the end
	if err != nil {
		return fail(err)
	}
	replies := &wmReplies{waiters: map[string]chan *message.Message{}}
	go replies.route(replyMsgs) // ends when the subscriber closes
	httpPub, err := newPublisher()
	if err != nil {
		return fail(err)
	}
	projectionPub, err := newPublisher() // replies, from the event handler
	if err != nil {
		return fail(err)
	}
	p.backend, err = requestreply.NewPubSubBackend(requestreply.PubSubBackendConfig{
		Publisher: projectionPub,
		SubscriberConstructor: func(params requestreply.PubSubBackendSubscribeParams) (message.Subscriber, error) {
			return replies.subscriber(string(params.OperationID)), nil
		},
		GeneratePublishTopic: func(params requestreply.PubSubBackendPublishParams) (string, error) {
			return params.CommandMessage.Metadata.Get(wmReplyToMeta), nil
		},
		GenerateSubscribeTopic: func(requestreply.PubSubBackendSubscribeParams) (string, error) { return wmReplyTopic, nil },
		ListenForReplyTimeout:  ptr(wmReplyWait),
		Logger:                 logger,
	}, requestreply.BackendPubsubJSONMarshaler[wmResult]{})
	if err != nil {
		return fail(err)
	}
	p.commandBus, err = cqrs.NewCommandBusWithConfig(httpPub, cqrs.CommandBusConfig{
		GeneratePublishTopic: func(params cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return p.domainOf(params.CommandName).commands, nil
		},
		OnSend: func(params cqrs.CommandBusOnSendParams) error {
			cmd := commandOf(params.Command)
			params.Message.Metadata.Set(wmKeyMeta, cmd.AggregateID)
			params.Message.Metadata.Set(wmReplyToMeta, cmd.ReplyTo)
			return nil
		},
		Marshaler: marshaler,
		Logger:    logger,
	})
	if err != nil {
		return fail(err)
	}

	// The command side and the projection: one router, a consumer group per handler.
	commandPub, err := newPublisher() // events, from the command handler
	if err != nil {
		return fail(err)
	}
	p.eventBus, err = cqrs.NewEventBusWithConfig(commandPub, cqrs.EventBusConfig{
		GeneratePublishTopic: func(params cqrs.GenerateEventPublishTopicParams) (string, error) {
			return p.domainOf(params.EventName).events, nil
		},
		OnPublish: func(params cqrs.OnEventSendParams) error {
			params.Message.Metadata.Set(wmKeyMeta, eventOf(params.Event).AggregateID)
			// The reply address of the command the event comes from.
			if cmdMsg := cqrs.OriginalMessageFromCtx(params.Message.Context()); cmdMsg != nil {
				for _, k := range []string{requestreply.OperationIDMetadataKey, wmReplyToMeta} {
					params.Message.Metadata.Set(k, cmdMsg.Metadata.Get(k))
				}
			}
			return nil
		},
		Marshaler: marshaler,
		Logger:    logger,
	})
	if err != nil {
		return fail(err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		return fail(err)
	}
	router.AddMiddleware(middleware.Recoverer)
	groupSubscriber := func(handlerName string) (message.Subscriber, error) {
		// Fresh topics: a group starts at the beginning, so that nothing
		// sent while it joins is skipped.
		return newSubscriber("watermill."+handlerName, sarama.OffsetOldest)
	}
	commandProcessor, err := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(params cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return p.domainOf(params.CommandName).commands, nil
		},
		SubscriberConstructor: func(params cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return groupSubscriber(params.HandlerName)
		},
		Marshaler: marshaler,
		Logger:    logger,
	})
	if err != nil {
		return fail(err)
	}
	eventProcessor, err := cqrs.NewEventProcessorWithConfig(router, cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(params cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
			return p.domainOf(params.EventName).events, nil
		},
		SubscriberConstructor: func(params cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return groupSubscriber(params.HandlerName)
		},
		Marshaler: marshaler,
		Logger:    logger,
	})
	if err != nil {
		return fail(err)
	}
	err = errors.Join(
		commandProcessor.AddHandlers(
			cqrs.NewCommandHandler("orders.decide", func(ctx context.Context, c *orderCommand) error { return p.decide(ctx, orderDomain, c.Command) }),
			cqrs.NewCommandHandler("catalog.decide", func(ctx context.Context, c *catalogCommand) error { return p.decide(ctx, catalogDomain, c.Command) }),
		),
		eventProcessor.AddHandlers(
			cqrs.NewEventHandler("orders.project", func(ctx context.Context, ev *orderEvent) error { return p.project(ctx, orderDomain, ev.Event) }),
			cqrs.NewEventHandler("catalog.project", func(ctx context.Context, ev *catalogEvent) error { return p.project(ctx, catalogDomain, ev.Event) }),
		),
	)
	if err != nil {
		return fail(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the router runs until Close
		defer wg.Done()
		if err := router.Run(runCtx); err != nil {
			log.Warn("watermill router stopped", "err", err)
		}
	}()
	closers = append(closers, func() { _ = router.Close(); wg.Wait() })
	select {
	case <-router.Running():
	case <-ctx.Done():
		return fail(ctx.Err())
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", p.handle(orderDomain, orders.CommandCreate, func(_ *http.Request, body []byte) string {
		var c struct{ ID string }
		_ = json.Unmarshal(body, &c)
		return c.ID
	}, http.StatusCreated))
	mux.HandleFunc("POST /v1/orders/{id}/items", p.handle(orderDomain, orders.CommandAddItem, func(r *http.Request, _ []byte) string { return r.PathValue("id") }, http.StatusOK))
	mux.HandleFunc("PUT /v1/catalog/{sku}", p.handle(catalogDomain, catalog.CommandUpsert, func(r *http.Request, _ []byte) string { return r.PathValue("sku") }, http.StatusOK))
	url, shutdown, err := serveLocal(mux)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, shutdown)
	sys := &system{name: nameWatermill, url: url, stop: closeAll}
	sys.createOrder = func(ctx context.Context, id string) error { // as the monolith floor's: no Idempotency-Key here to make a retry safe
		body, _ := json.Marshal(map[string]any{"id": id, "customerId": "bench"})
		return post(ctx, url+"/v1/orders", sys.token, body, http.StatusCreated)
	}
	// The consumer groups join in the background: seeding waits for them.
	if err := seedCatalog(ctx, url, sys.token); err != nil {
		return fail(fmt.Errorf("seeding the Watermill peer's catalog: %w", err))
	}
	log.Info("Watermill peer up", "url", url)
	return sys, nil
}

func ptr[T any](v T) *T { return &v }

// createTopics creates topics with partitions each on brokers; one that
// exists already is fine.
func createTopics(ctx context.Context, brokers []string, partitions int32, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	resps, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return err
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// wmProducerConfig is the Sarama configuration of the peer's publishers:
// Watermill's default, tuned for latency and for parity with the other
// systems' producers.
func wmProducerConfig() *sarama.Config {
	c := kafka.DefaultSaramaSyncPublisherConfig()
	c.Version = sarama.V3_6_0_0 // Kafka 4 no longer speaks the protocol of Watermill's default (1.0)
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1 // required by Sarama's idempotent producer
	c.Producer.Flush.Frequency, c.Producer.Flush.Bytes, c.Producer.Flush.Messages = 0, 0, 0
	c.Metadata.Retry.Backoff = 250 * time.Millisecond
	return c
}

// wmConsumerConfig is the Sarama configuration of the peer's subscribers.
func wmConsumerConfig(initial int64) *sarama.Config {
	c := kafka.DefaultSaramaSubscriberConfig()
	c.Version = sarama.V3_6_0_0
	c.Consumer.Fetch.Min = 1 // a fetch returns as soon as a record is there
	c.Consumer.MaxWaitTime = 100 * time.Millisecond
	c.Consumer.Offsets.Initial = initial
	return c
}

// wmDomain is one aggregate type of the peer: its topics and the domain code
// that decides and projects it.
type wmDomain struct {
	name             string // orders or catalog: its rows in aggregates
	commands, events string // topics
	// decide decides cmd against the stored state (nil: none yet) at
	// version and returns the events and the state after them, or a
	// rejection.
	decide  func(state []byte, version int64, cmd envelope.Command, now time.Time) ([]envelope.Event, *envelope.Problem, []byte, error)
	apply   func(context.Context, view.Querier, envelope.Event) error
	reply   func(ctx context.Context, q view.Querier, tenant, commandID, id string) (json.RawMessage, error)
	command func(envelope.Command) any // on the command bus
	event   func(envelope.Event) any   // on the event bus
}

// wmDomains are the peer's aggregate types, by the cqrs names of their
// command and event types.
func wmDomains() map[string]*wmDomain {
	o := &wmDomain{name: orders.Name, commands: "watermill.orders.commands", events: "watermill.orders.events",
		decide: decider(orders.Decide, orders.Evolve), apply: view.ApplyOrderEvent, reply: view.OrderReply,
		command: func(c envelope.Command) any { return &orderCommand{c} }, event: func(ev envelope.Event) any { return &orderEvent{ev} }}
	c := &wmDomain{name: catalog.Name, commands: "watermill.catalog.commands", events: "watermill.catalog.events",
		decide: decider(catalog.Decide, catalog.Evolve), apply: view.ApplyCatalogEvent, reply: view.CatalogReply,
		command: func(c envelope.Command) any { return &catalogCommand{c} }, event: func(ev envelope.Event) any { return &catalogEvent{ev} }}
	return map[string]*wmDomain{"orderCommand": o, "orderEvent": o, "catalogCommand": c, "catalogEvent": c}
}

// decider runs an aggregate's Decide and Evolve on its state as JSON.
func decider[S any](decide func(*S, int64, envelope.Command) aggregate.Decision, evolve func(*S, envelope.Event) (*S, error)) func([]byte, int64, envelope.Command, time.Time) ([]envelope.Event, *envelope.Problem, []byte, error) {
	return func(raw []byte, version int64, cmd envelope.Command, now time.Time) ([]envelope.Event, *envelope.Problem, []byte, error) {
		var state *S
		if raw != nil {
			state = new(S)
			if err := json.Unmarshal(raw, state); err != nil {
				return nil, nil, nil, err
			}
		}
		d := decide(state, version, cmd)
		if d.Reject != nil {
			return nil, d.Reject, nil, nil
		}
		if len(d.Events) == 0 {
			return nil, nil, nil, fmt.Errorf("%s on %s: a decision with no event and no rejection", cmd.Type, cmd.AggregateID)
		}
		evs := make([]envelope.Event, len(d.Events))
		for i, ne := range d.Events {
			data, err := json.Marshal(ne.Data)
			if err != nil {
				return nil, nil, nil, err
			}
			evs[i] = envelope.Event{Meta: cmd.Meta, Type: ne.Type, Version: version + int64(i) + 1, Time: now, Index: i + 1, Count: len(d.Events), Data: data}
			if state, err = evolve(state, evs[i]); err != nil {
				return nil, nil, nil, err
			}
		}
		b, err := json.Marshal(state)
		return evs, nil, b, err
	}
}

func commandOf(v any) envelope.Command {
	switch c := v.(type) {
	case *orderCommand:
		return c.Command
	case *catalogCommand:
		return c.Command
	}
	return envelope.Command{}
}

func eventOf(v any) envelope.Event {
	switch ev := v.(type) {
	case *orderEvent:
		return ev.Event
	case *catalogEvent:
		return ev.Event
	}
	return envelope.Event{}
}

type wmPeer struct {
	pool       *pgxpool.Pool
	log        *slog.Logger
	domains    map[string]*wmDomain
	commandBus *cqrs.CommandBus
	eventBus   *cqrs.EventBus
	backend    *requestreply.PubSubBackend[wmResult]
}

func (p *wmPeer) domainOf(name string) *wmDomain {
	if d, ok := p.domains[name]; ok {
		return d
	}
	return &wmDomain{commands: "watermill.unknown", events: "watermill.unknown"}
}

// handle sends commandType for the aggregate idOf names and answers with
// its reply.
func (p *wmPeer) handle(d *wmDomain, commandType string, idOf func(*http.Request, []byte) string, okStatus int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cmd := envelope.Command{Meta: envelope.Meta{CommandID: uuid.NewString(), AggregateID: idOf(r, body), Tenant: benchTenant,
			ReplyTo: wmReplyTopic, Deadline: time.Now().Add(wmReplyWait), ExpectedVersion: envelope.NoVersion}, Type: commandType, Data: body}
		if commandType == orders.CommandAddItem {
			// As the gateway does: an unknown SKU is refused from the catalog view.
			var add orders.AddItem
			_ = json.Unmarshal(body, &add)
			ok, err := view.CatalogItemExists(r.Context(), p.pool, cmd.Tenant, add.SKU)
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			if !ok {
				writeJSONStatus(w, http.StatusUnprocessableEntity, problemBody(cmd, problems.UnknownSKU))
				return
			}
		}
		reply, err := requestreply.SendWithReply(r.Context(), p.commandBus, p.backend, d.command(cmd))
		if err == nil {
			err = reply.Error
		}
		if errors.As(err, new(requestreply.ReplyTimeoutError)) {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		status := reply.HandlerResult.Status
		if status == 0 {
			status = okStatus
		}
		writeJSONStatus(w, status, reply.HandlerResult.Body)
	}
}

func writeJSONStatus(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// decide is the command handler: it decides cmd against the aggregate's
// state in one PostgreSQL transaction, then publishes the events, or answers
// a rejection. An error nacks the command, which Watermill redelivers.
func (p *wmPeer) decide(ctx context.Context, d *wmDomain, cmd envelope.Command) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var version int64
	var state []byte
	err = tx.QueryRow(ctx, `SELECT version, state FROM aggregates WHERE domain = $1 AND id = $2 FOR UPDATE`, d.name, cmd.AggregateID).Scan(&version, &state)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	var seenEvents, seenProblem []byte
	err = tx.QueryRow(ctx, `SELECT events, problem FROM processed_commands WHERE command_id = $1`, cmd.CommandID).Scan(&seenEvents, &seenProblem)
	switch {
	case err == nil: // a redelivery: the outcome recorded the first time
		_ = tx.Rollback(ctx)
		if seenProblem != nil {
			return p.answer(ctx, cmd, wmResult{Status: http.StatusUnprocessableEntity, Body: seenProblem})
		}
		var evs []envelope.Event
		if err := json.Unmarshal(seenEvents, &evs); err != nil {
			return err
		}
		return p.publish(ctx, d, evs)
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	evs, reject, newState, err := d.decide(state, version, cmd, time.Now().UTC())
	if err != nil {
		// Deciding again would fail again: answer, and ack (as Answerback
		// dead-letters such a command).
		p.log.Warn("watermill peer: command refused", "command", cmd.CommandID, "err", err)
		return p.answer(ctx, cmd, wmResult{Status: http.StatusInternalServerError, Body: problemBody(cmd, "internal")})
	}
	if reject != nil {
		reject.CommandID = cmd.CommandID
		body, _ := json.Marshal(reject)
		if _, err := tx.Exec(ctx, `INSERT INTO processed_commands (command_id, problem) VALUES ($1, $2)`, cmd.CommandID, body); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		return p.answer(ctx, cmd, wmResult{Status: http.StatusUnprocessableEntity, Body: body})
	}
	evJSON, err := json.Marshal(evs)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO aggregates (domain, id, version, state) VALUES ($1, $2, $3, $4)
		ON CONFLICT (domain, id) DO UPDATE SET version = excluded.version, state = excluded.state`,
		d.name, cmd.AggregateID, evs[len(evs)-1].Version, newState); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO processed_commands (command_id, events) VALUES ($1, $2)`, cmd.CommandID, evJSON); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	return p.publish(ctx, d, evs)
}

// publish sends a command's events on the event bus, in order.
func (p *wmPeer) publish(ctx context.Context, d *wmDomain, evs []envelope.Event) error {
	for _, ev := range evs {
		if err := p.eventBus.Publish(ctx, d.event(ev)); err != nil {
			return err
		}
	}
	return nil
}

// project is the event handler: it applies ev to the view and, after the
// last event of its command, builds the reply from the view in the same
// transaction and sends it once that committed.
func (p *wmPeer) project(ctx context.Context, d *wmDomain, ev envelope.Event) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := d.apply(ctx, tx, ev); err != nil {
		if errors.Is(err, view.ErrUnknownEvent) || errors.Is(err, view.ErrBadEvent) || errors.Is(err, view.ErrNotFound) {
			// Applying it again would fail again: skip it (Answerback dead-letters it).
			p.log.Warn("watermill peer: event skipped", "event", ev.ID(), "err", err)
			return p.answer(ctx, ev, wmResult{Status: http.StatusInternalServerError, Body: problemBody(envelope.Command{Meta: ev.Meta, Type: ev.Type}, "internal")})
		}
		return err
	}
	wantsReply := ev.LastOfCommand() && ev.WantsReply(time.Now())
	var body json.RawMessage
	if wantsReply {
		if body, err = d.reply(ctx, tx, ev.Tenant, ev.CommandID, ev.AggregateID); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if !wantsReply {
		return nil
	}
	return p.answer(ctx, ev, wmResult{Body: body})
}

// answer sends r to whoever waits for the command that the message in hand
// (a command, or one of its events) comes from, through the requestreply
// backend; nobody waits when the message has no operation ID.
func (p *wmPeer) answer(ctx context.Context, cmd any, r wmResult) error {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	if msg == nil || msg.Metadata.Get(requestreply.OperationIDMetadataKey) == "" || msg.Metadata.Get(wmReplyToMeta) == "" {
		return nil
	}
	return p.backend.OnCommandProcessed(ctx, requestreply.BackendOnCommandProcessedParams[wmResult]{
		Command: cmd, CommandMessage: msg, HandlerResult: r,
	})
}

// wmReplies shares one reply subscription among the requests of an HTTP
// server instance: it routes each reply to the request waiting for its
// operation ID, and drops those nobody waits for any more.
type wmReplies struct {
	mu      sync.Mutex
	waiters map[string]chan *message.Message
}

func (rs *wmReplies) route(msgs <-chan *message.Message) {
	for msg := range msgs {
		rs.mu.Lock()
		if ch, ok := rs.waiters[msg.Metadata.Get(requestreply.OperationIDMetadataKey)]; ok {
			select {
			case ch <- msg:
			default: // a second reply (a redelivered command): the first was kept
			}
		}
		rs.mu.Unlock()
		msg.Ack()
	}
}

// subscriber is what requestreply's PubSubBackend subscribes to for one
// operation: the replies to it, until the subscription's context ends.
func (rs *wmReplies) subscriber(operationID string) message.Subscriber {
	return wmReplySubscriber{rs, operationID}
}

type wmReplySubscriber struct {
	rs          *wmReplies
	operationID string
}

func (s wmReplySubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	ch := make(chan *message.Message, 1)
	s.rs.mu.Lock()
	s.rs.waiters[s.operationID] = ch
	s.rs.mu.Unlock()
	go func() { // until the request stops listening
		<-ctx.Done()
		s.rs.mu.Lock()
		delete(s.rs.waiters, s.operationID)
		s.rs.mu.Unlock()
		close(ch)
	}()
	return ch, nil
}

func (wmReplySubscriber) Close() error { return nil }

// Package requestreply is Answerback's synchronous reply as a library: send
// a command to its aggregate's commands topic and wait for the reply that
// the read side derives once the command's events are projected — on this
// instance's own reply topic, whatever node decided and projected it.
//
// A Client owns one instance's reply topic (<prefix>replies.<instance>), its
// router (which hands each reply to the Send waiting for it), its entry in
// the gateway registry (a heartbeat, so that `abctl replies gc` leaves the
// topic alone while the instance lives) and a producer of commands.
//
// Guarantees of Send:
//   - At most one reply per waiter: a waiter is registered before the
//     command is produced, so no reply slips past it, and it takes the first
//     reply for its command ID; later ones are counted late and dropped.
//   - The outcome recorded when the reply is lost: the read side records
//     every command's outcome in the same transaction as its view (the
//     OutcomeStore). When no reply comes within the wait — the projector
//     committed and died before sending it — or the reply says the command
//     is a duplicate of one still in flight, Send answers from the recorded
//     outcome, which says what the reply would have.
//   - A timeout (ErrPending) means the command was acknowledged by Kafka and
//     is in the pipeline: it is decided exactly once, and its outcome will be
//     recorded; Status (or the OutcomeStore) tells it later. It never means
//     the command was lost.
//   - ErrUnavailable means Kafka did not acknowledge the command in time: it
//     may still be applied; sending it again with the same idempotency key
//     applies it once.
package requestreply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/commands"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/recent"
	"github.com/answerback/answerback/libs/pipeline/registry"
	"github.com/answerback/answerback/libs/pipeline/replies"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

var (
	// ErrPending: no reply within the wait, and no outcome recorded yet; the
	// command is in the pipeline (see the package's guarantees).
	ErrPending = errors.New("no reply yet: the command is in the pipeline")
	// ErrUnavailable: Kafka did not acknowledge the command in time; it may
	// still be applied.
	ErrUnavailable = commands.ErrUnavailable
	// ErrNoOutcome is what an OutcomeStore returns for a command whose
	// outcome is not recorded (yet), or is another tenant's.
	ErrNoOutcome = errors.New("no outcome recorded for this command")
)

// Outcome is a command's recorded outcome.
type Outcome struct {
	CommandID   string
	AggregateID string
	Outcome     envelope.Outcome
	// Version is the aggregate's version after the command.
	Version int64
	// Reply is the reply's body: the derived answer, or the rejection's
	// problem.
	Reply     json.RawMessage
	DecidedAt time.Time
}

// Reply is the outcome as a reply.
func (o Outcome) asReply() envelope.Reply {
	return envelope.Reply{CommandID: o.CommandID, Outcome: o.Outcome, Version: o.Version, Body: o.Reply}
}

// OutcomeStore reads recorded outcomes (libs/projector's OutcomeStore reads
// them from the view's database).
type OutcomeStore interface {
	// Outcome returns tenant's command's outcome, or ErrNoOutcome.
	Outcome(ctx context.Context, tenant, commandID string) (Outcome, error)
}

// Config configures a Client.
type Config struct {
	Brokers     []string
	TopicPrefix string
	// InstanceID names the instance and its reply topic; unique among the
	// live instances. Required.
	InstanceID string
	// Outcomes are the recorded outcomes; nil: no fallback (a lost reply
	// makes Send return ErrPending).
	Outcomes OutcomeStore
	// ProduceTimeout bounds a command's produce; default 5s.
	ProduceTimeout time.Duration
	// LookupTimeout bounds one read of the OutcomeStore; default 2s.
	LookupTimeout time.Duration
	Logger        *slog.Logger
	// ClientOpts are appended to every Kafka client's options (TLS, SASL...).
	ClientOpts []kgo.Opt
}

func (c *Config) setDefaults() {
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 5 * time.Second
	}
	if c.LookupTimeout == 0 {
		c.LookupTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Client sends commands and waits for their replies. Open it, Run it, and
// Close it once Run returned.
type Client struct {
	cfg      Config
	log      *slog.Logger
	cl       *kgo.Client
	producer *commands.Producer
	router   *replies.Router
	announce *registry.Announcer
	// sent are the commands this client produced lately, so that Status
	// says "pending", not unknown, until their outcome is recorded.
	sent recent.Set
}

// Open announces the instance in the gateway registry, then creates its
// reply topic and the producer.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 || cfg.InstanceID == "" {
		return nil, errors.New("requestreply: brokers and instance ID are required")
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
	}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("requestreply: %w", err)
	}
	// Registered before the reply topic exists, so that `abctl replies gc`
	// never finds this instance's topic without its heartbeat.
	replyTopic := topics.ReplyTopic(cfg.TopicPrefix, cfg.InstanceID)
	announce, err := registry.Announce(ctx, registry.Config{
		Brokers: cfg.Brokers, Prefix: cfg.TopicPrefix, Instance: cfg.InstanceID, ReplyTopic: replyTopic,
		Logger: cfg.Logger, ClientOpts: cfg.ClientOpts,
	})
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("requestreply: %w", err)
	}
	router, err := replies.Open(ctx, replies.Config{
		Brokers: cfg.Brokers, Topic: replyTopic, Logger: cfg.Logger, ClientOpts: cfg.ClientOpts,
	})
	if err != nil {
		cl.Close()
		return nil, errors.Join(fmt.Errorf("requestreply: %w", err), announce.Close(ctx))
	}
	return &Client{cfg: cfg, log: cfg.Logger, cl: cl, producer: commands.NewProducer(cl), router: router, announce: announce,
		sent: recent.Set{Window: 30 * time.Minute}}, nil
}

// Run routes replies to their waiters until ctx ends.
func (c *Client) Run(ctx context.Context) error { return c.router.Run(ctx) }

// Close stops the Kafka clients and, when clean is set, deletes the reply
// topic and then leaves the registry. Otherwise — or when the topic could
// not be deleted — it only stops heartbeating: the registry entry turns
// stale and `abctl replies gc` may delete the topic. Call it after Run
// returned.
func (c *Client) Close(ctx context.Context, clean bool) error {
	err := c.router.Close(ctx, clean)
	if clean && err == nil {
		err = c.announce.Close(ctx)
	} else {
		c.announce.Abandon()
	}
	c.cl.Close()
	return err
}

// ReplyTopic is this instance's reply topic.
func (c *Client) ReplyTopic() string { return c.router.Topic() }

// Stats are the reply router's counters.
func (c *Client) Stats() replies.Stats { return c.router.Stats() }

// Request is one command to send.
type Request struct {
	// Topic is the commands topic of the command's domain
	// (topics.For(prefix, domain).Commands).
	Topic string
	// Command is the command. Send sets its ReplyTo and Deadline, and a
	// command ID when it has none.
	Command envelope.Command
	// Wait bounds the wait for the reply after the produce; zero or less:
	// no wait, Send returns ErrPending once Kafka acknowledged the command.
	Wait time.Duration
	// ProduceBy, when set, bounds the produce instead of ProduceTimeout
	// from now (a caller that spent part of the budget already).
	ProduceBy time.Time
}

// Result is a sent command's answer.
type Result struct {
	// CommandID is the command's ID (generated when the request had none).
	CommandID string
	// Reply is the reply, or the recorded outcome as one (FromRecord).
	Reply envelope.Reply
	// FromRecord says the reply was lost or a duplicate notice, and Reply is
	// the recorded outcome.
	FromRecord bool
}

// Send produces req's command and waits up to req.Wait for its reply (see
// the package's guarantees). It returns the result, or — with the command's
// ID in the result — ErrPending (acknowledged, no answer yet),
// ErrUnavailable (not acknowledged), or ctx's error when ctx ended first.
func (c *Client) Send(ctx context.Context, req Request) (Result, error) {
	cmd := req.Command
	if cmd.CommandID == "" {
		cmd.CommandID = newCommandID()
	}
	res := Result{CommandID: cmd.CommandID}
	cmd.ReplyTo = c.router.Topic()
	cmd.Deadline = time.Now().Add(max(req.Wait, 0))
	waiter := c.router.Register(cmd.CommandID)
	defer waiter.Done()

	produceBy := req.ProduceBy
	if produceBy.IsZero() {
		produceBy = time.Now().Add(c.cfg.ProduceTimeout)
	}
	produceCtx, cancelProduce := context.WithDeadline(ctx, produceBy)
	endSend := TraceSend(ctx, req.Topic, &cmd) // sets cmd.TraceParent
	err := c.producer.Send(produceCtx, req.Topic, cmd)
	endSend(err)
	cancelProduce()
	if err != nil {
		if errors.Is(err, commands.ErrUnavailable) {
			c.log.Warn("command not acknowledged", append(cmd.LogAttrs(), "err", err)...)
		}
		return res, err
	}
	c.sent.Add(cmd.Tenant+"/"+cmd.CommandID, time.Now())
	if req.Wait <= 0 {
		return res, ErrPending
	}

	waitCtx, cancel := context.WithTimeout(ctx, req.Wait)
	defer cancel()
	waitBegan := time.Now()
	reply, err := waitTraced(waitCtx, waiter)
	observeReplyWait(waitBegan, err == nil)
	if err == nil && reply.Outcome != envelope.Duplicate {
		res.Reply = reply
		return res, nil
	}
	if ctx.Err() != nil {
		return res, ctx.Err() // the caller went away
	}
	// No reply in time — the projector may have committed and died before
	// sending it — or a duplicate notice: the recorded outcome answers as
	// well as the reply would. A duplicate's first command may still be in
	// flight: wait for its outcome within the same bound.
	outcome, err := c.recordedOutcome(waitCtx, cmd.Tenant, cmd.CommandID, err == nil)
	if err == nil {
		res.Reply, res.FromRecord = outcome.asReply(), true
		return res, nil
	}
	if !errors.Is(err, ErrNoOutcome) && !errors.Is(err, context.DeadlineExceeded) {
		c.log.Warn("outcome lookup failed", append(cmd.LogAttrs(), "err", err)...)
	}
	return res, ErrPending
}

// recordedOutcome reads tenant's commandID's outcome; with poll, it keeps
// looking until ctx ends.
func (c *Client) recordedOutcome(ctx context.Context, tenant, commandID string, poll bool) (Outcome, error) {
	if c.cfg.Outcomes == nil {
		return Outcome{}, ErrNoOutcome
	}
	for {
		// The wait may be over already: one lookup still gets its own short bound.
		lookupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LookupTimeout)
		outcome, err := c.cfg.Outcomes.Outcome(lookupCtx, tenant, commandID)
		cancel()
		if err == nil || !errors.Is(err, ErrNoOutcome) || !poll {
			return outcome, err
		}
		select {
		case <-ctx.Done():
			return outcome, err
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Status is what is known of a command.
type Status struct {
	// Outcome is the recorded outcome; nil when none is recorded yet.
	Outcome *Outcome
	// SentHere says this client produced the command within the last 30
	// minutes: without an outcome it is pending, not unknown.
	SentHere bool
}

// Status returns what is known of tenant's command: its recorded outcome,
// and whether this client sent it lately. An error is the OutcomeStore's.
func (c *Client) Status(ctx context.Context, tenant, commandID string) (Status, error) {
	st := Status{SentHere: c.sent.Has(tenant + "/" + commandID)}
	outcome, err := c.recordedOutcome(ctx, tenant, commandID, false)
	switch {
	case err == nil:
		st.Outcome = &outcome
	case !errors.Is(err, ErrNoOutcome):
		return st, err
	}
	return st, nil
}

// Kafka is the client's Kafka client, for readiness checks and metadata
// reads; commands go through Send.
func (c *Client) Kafka() *kgo.Client { return c.cl }

package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/dlq"
)

// Handler handles one record. The Runner calls it on its own goroutine, one
// record at a time, in partition order; ctx ends when the Runner stops, and a
// handler must then return soon.
//
// Returning nil marks the record done: its offset is committed after the
// record's batch. An error that matches ErrPoison skips the record for good
// (see Config.DLQTopic). Any other error is taken as transient (a database
// away): the record is retried, with backoff from 100ms to 5s, until the
// handler succeeds or the Runner stops. Every partition waits meanwhile (one
// goroutine handles them all), and so does a rebalance: past the group's
// rebalance timeout (60s) the member is dropped, its commit fails and the
// next owner gets the records again, which the Guard makes harmless.
//
// A record may be handled again after a crash or a rebalance (its offset not
// yet committed), so a handler must be idempotent: see Guard.
type Handler func(ctx context.Context, rec *kgo.Record) error

// Config configures a Runner.
type Config struct {
	Brokers []string
	// Group is the consumer group: one per downstream service, so that it
	// gets every record and keeps its own offsets.
	Group string
	// Topics are consumed from their start when the group has no offsets.
	Topics  []string
	Handler Handler
	// DLQTopic, when set, receives a copy of every poison record, with the
	// reason and origin in headers (package dlq's format, stage = Group),
	// produced before the record's offset is committed: at least once, never
	// lost. It must exist. When empty, poison records are only logged and
	// counted (Stats.Poison): the events topic keeps them forever, so they
	// can still be found by topic, partition and offset from the log line.
	DLQTopic string
	// MaxPollRecords bounds one batch, whose offsets are committed together;
	// default 500.
	MaxPollRecords int
	Logger         *slog.Logger
	// ClientOpts are appended to the Runner's own franz-go options (logger,
	// TLS, SASL…); options that change the contract (isolation level,
	// auto-commit) must not be overridden.
	ClientOpts []kgo.Opt
}

// Stats counts what a Runner did since it started.
type Stats struct {
	Handled int64 // records the handler accepted
	Poison  int64 // records skipped as poison
	Retries int64 // handler calls that failed and were retried
}

// Runner consumes topics on a consumer group and hands every record to a
// Handler. Per partition, records are handed in offset order, one at a time,
// so the events of one aggregate (one key, one partition) arrive in version
// order. It reads read_committed, commits offsets only after the handler
// accepted the records (never automatically), and commits what was handled
// before a rebalance takes partitions away and before it stops.
//
// A Runner handles one record at a time across all its partitions: for more
// throughput, run more instances of the service (up to the partition count).
type Runner struct {
	cfg     Config
	log     *slog.Logger
	started atomic.Bool
	handled atomic.Int64
	poison  atomic.Int64
	retries atomic.Int64
}

// New validates cfg and returns a Runner; Run starts it.
func New(cfg Config) (*Runner, error) {
	var errs []error
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("brokers are required"))
	}
	if cfg.Group == "" {
		errs = append(errs, errors.New("a consumer group is required"))
	}
	if len(cfg.Topics) == 0 {
		errs = append(errs, errors.New("topics are required"))
	}
	if cfg.Handler == nil {
		errs = append(errs, errors.New("a handler is required"))
	}
	if cfg.MaxPollRecords < 0 {
		errs = append(errs, errors.New("MaxPollRecords must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	if cfg.MaxPollRecords == 0 {
		cfg.MaxPollRecords = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runner{cfg: cfg, log: cfg.Logger.With("group", cfg.Group)}, nil
}

// Stats returns the Runner's counts; safe to call at any time.
func (r *Runner) Stats() Stats {
	return Stats{Handled: r.handled.Load(), Poison: r.poison.Load(), Retries: r.retries.Load()}
}

// Run joins the group and handles records until ctx ends. It then waits for
// the handler call in progress, commits the offsets of the records handled,
// leaves the group and returns nil. It returns an error only when the Kafka
// client cannot be created. Run a Runner once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("consumer: Run called twice")
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// A rebalance waits until the batch in hand is handled and
		// committed: the next owner starts where this one stopped.
		kgo.BlockRebalanceOnPoll(),
		// A dead instance's partitions wait for its session to expire.
		kgo.SessionTimeout(10 * time.Second),
		kgo.ProducerLinger(0),
	}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	// With BlockRebalanceOnPoll, leaving the group waits for AllowRebalance.
	defer cl.CloseAllowingRebalance()
	r.log.Info("consumer started", "topics", r.cfg.Topics)
	for ctx.Err() == nil {
		fetches := cl.PollRecords(ctx, r.cfg.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		r.commit(ctx, cl, r.handle(ctx, cl, fetches.Records()))
		cl.AllowRebalance()
	}
	s := r.Stats()
	r.log.Info("consumer stopped", "handled", s.Handled, "poison", s.Poison, "retries", s.Retries)
	return nil
}

// handle hands records (grouped by partition, each in offset order) to the
// handler and returns those it finished: all of them, or a prefix when ctx
// ended — per partition, a prefix too.
func (r *Runner) handle(ctx context.Context, cl *kgo.Client, records []*kgo.Record) []*kgo.Record {
	for i, rec := range records {
		if !r.handleOne(ctx, cl, rec) {
			return records[:i]
		}
	}
	return records
}

// handleOne handles rec, retrying transient errors; false when ctx ended first.
func (r *Runner) handleOne(ctx context.Context, cl *kgo.Client, rec *kgo.Record) bool {
	backoff := 100 * time.Millisecond
	for {
		err := r.cfg.Handler(ctx, rec)
		switch {
		case err == nil:
			r.handled.Add(1)
			return true
		case errors.Is(err, ErrPoison):
			return r.skipPoison(ctx, cl, rec, err)
		case ctx.Err() != nil:
			return false
		}
		r.retries.Add(1)
		r.log.Warn("handler failed; retrying", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// skipPoison logs and counts a poison record and, when configured, sends it
// to the DLQ (retrying until it is there); false when ctx ended first.
func (r *Runner) skipPoison(ctx context.Context, cl *kgo.Client, rec *kgo.Record, reason error) bool {
	r.log.Warn("poison record skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", reason, "dlq", r.cfg.DLQTopic)
	for backoff := 100 * time.Millisecond; r.cfg.DLQTopic != ""; backoff = min(2*backoff, 5*time.Second) {
		err := cl.ProduceSync(ctx, dlq.Record(r.cfg.DLQTopic, r.cfg.Group, rec, reason)).FirstErr()
		if err == nil {
			break
		}
		r.log.Warn("dead letter not sent; retrying", "topic", r.cfg.DLQTopic, "err", err, "backoff", backoff)
		if !sleep(ctx, backoff) {
			return false
		}
	}
	r.poison.Add(1)
	return true
}

// commit commits the offsets of done, also when ctx has ended (a stop). A
// failed commit costs only re-delivery, which the handler tolerates.
func (r *Runner) commit(ctx context.Context, cl *kgo.Client, done []*kgo.Record) {
	if len(done) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := cl.CommitRecords(ctx, done...); err != nil {
		r.log.Warn("offsets not committed; their records will be delivered again", "records", len(done), "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

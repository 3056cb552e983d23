// Package projector is the read side of the pipeline: a consumer group on
// event topics (read_committed) that keeps a PostgreSQL view exactly once and
// sends each completed command's reply to the gateway waiting for it.
//
// Per batch, one PostgreSQL transaction applies the events, records each
// completed command's outcome with its reply, and stores the next offset of
// every partition it consumed, in three pipelined round trips whatever the
// batch's size (see Runtime.process). Kafka offsets are not used: on assignment the
// consumer seeks to the stored offsets, and inside the transaction records
// below the stored offset are skipped, so an event applied once is never
// applied again — even when two instances overlap during a rebalance.
//
// The reply is derived inside the transaction, right after the command's last
// event is applied, so it shows the view as of that command's version. It is
// stored with the outcome and produced to the command's reply-to topic only
// after the commit, and only while the command's deadline has not passed: a
// replay answers nobody.
//
// Tracing (live projection only): each event applied is a consumer span
// "project <event type>", child of the span its ce_traceparent names (the
// aggregator's), with the PostgreSQL work as child spans — "postgres apply",
// "postgres reply" (deriving the reply) and "postgres commit" (the batch's
// commit, as that trace saw it) — and ends when its batch commits. The reply
// is a producer span "reply", child of the event's span, whose context
// travels in the reply's traceparent header.
package projector

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/lag"
	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// ErrPermanent marks an Apply error that retrying cannot fix (an unknown
// event type, malformed data): the event is dead-lettered and skipped.
// Any other Apply error rolls the batch back and retries it.
var ErrPermanent = errors.New("permanent projection error")

// Projection is one read model. Apply and Reply queue statements on a
// pgx.Batch rather than run them: the runtime sends every event's statements
// of a batch in one round trip, inside the batch's transaction, in order — so
// a reply's reads see the view as of its command's last event.
type Projection struct {
	// Name keys the stored offsets; renaming it replays everything.
	Name string
	// Topics maps each consumed event topic to its dead-letter topic.
	Topics map[string]string
	// Outcomes maps each consumed outcomes topic (the aggregators' record of
	// rejections) to its dead-letter topic: rejections are recorded in
	// command_outcomes beside the applied commands, for command status.
	Outcomes map[string]string
	// Apply queues on b the statements that apply ev, read from topic, to
	// the view. They must be idempotent by version: an event the view
	// already has changes nothing. An error it returns means it queued
	// nothing; an error of its statements' callbacks fails the batch. Either
	// wrapping ErrPermanent dead-letters the event; any other is retried.
	Apply func(b *pgx.Batch, topic string, ev envelope.Event) error
	// Reply queues on b the reads that derive the reply body to the command
	// that ev completes; done receives the body, or the error, once b has run.
	Reply func(b *pgx.Batch, topic string, ev envelope.Event, done func(json.RawMessage, error))
}

// Config configures a Runtime.
type Config struct {
	Brokers []string
	Pool    *pgxpool.Pool
	// Group is the consumer group; default "<projection>-projector".
	Group string
	// MaxPollRecords bounds one batch; default 1000.
	MaxPollRecords int
	Logger         *slog.Logger
	ClientOpts     []kgo.Opt
	// BatchTimeout bounds one batch's PostgreSQL transaction; past it the
	// batch is rolled back and retried. Default 30s.
	BatchTimeout time.Duration
	// OutcomeRetention is how long a command's recorded outcome is kept
	// (GET /v1/commands/{id}, the gateways' fallback); default
	// DefaultOutcomeRetention, well past the aggregators' idempotency
	// window. Older outcomes are deleted in batches (pruneOutcomes).
	OutcomeRetention time.Duration
	// Faults injects failures, for tests; nil in production.
	Faults *Faults
}

// DefaultOutcomeRetention keeps outcomes 7 days: seven times the
// aggregators' idempotency window, so a retry the pipeline still
// recognises always finds its outcome.
const DefaultOutcomeRetention = 7 * 24 * time.Hour

// Faults are failures a test can switch on in a running projector.
type Faults struct {
	// DropReplies makes the projector commit batches but send none of their
	// replies, as if it died between its PostgreSQL commit and the produce.
	DropReplies atomic.Bool
}

// Runtime runs one projection. Run it once.
type Runtime struct {
	p    Projection
	cfg  Config
	log  *slog.Logger
	cl   *kgo.Client
	mode mode
	// pruned is when the change log and the outcomes were last pruned.
	pruned time.Time
	// database is the pool's database name, for the PostgreSQL spans.
	database string
}

// mode is how a Runtime applies batches: live (the zero mode) or replaying.
type mode struct {
	// replay: no replies, no outcomes recorded, no dead letters produced —
	// an event refused for good is counted in skipped and left out.
	replay bool
	// untracked: stored offsets are neither read nor written; every record
	// is applied (idempotently, by the Projection's contract).
	untracked bool
	skipped   *atomic.Int64
}

// New validates the configuration.
func New(p Projection, cfg Config) (*Runtime, error) {
	var errs []error
	if p.Name == "" || len(p.Topics) == 0 || p.Apply == nil || p.Reply == nil {
		errs = append(errs, errors.New("projection needs a name, topics, Apply and Reply"))
	}
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("brokers are required"))
	}
	if cfg.Pool == nil {
		errs = append(errs, errors.New("a database pool is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("projector: %w", err)
	}
	if cfg.Group == "" {
		cfg.Group = p.Name + "-projector"
	}
	if cfg.MaxPollRecords == 0 {
		cfg.MaxPollRecords = 1000
	}
	if cfg.BatchTimeout == 0 {
		cfg.BatchTimeout = 30 * time.Second
	}
	if cfg.OutcomeRetention == 0 {
		cfg.OutcomeRetention = DefaultOutcomeRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runtime{p: p, cfg: cfg, log: cfg.Logger.With("projection", p.Name), database: cfg.Pool.Config().ConnConfig.Database}, nil
}

// Run creates the runtime's tables when missing, then projects until ctx ends.
func (r *Runtime) Run(ctx context.Context) error {
	if err := EnsureSchema(ctx, r.cfg.Pool); err != nil {
		return err
	}
	topics := make([]string, 0, len(r.p.Topics)+len(r.p.Outcomes))
	for t := range r.p.Topics {
		topics = append(topics, t)
	}
	for t := range r.p.Outcomes {
		topics = append(topics, t)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumerGroup(r.cfg.Group),
		// A dead instance's partitions wait for its session to expire — also
		// after a broker restart, when the group must first be rebuilt: 10s,
		// not franz-go's 45s (the chaos suite measured 45s of stalled replies).
		kgo.SessionTimeout(10 * time.Second),
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(r.storedOffsets),
		kgo.ProducerLinger(0),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	r.cl = cl
	// With BlockRebalanceOnPoll, leaving the group waits for AllowRebalance.
	defer cl.CloseAllowingRebalance()
	// A graceful stop first delivers the replies of the batches it committed:
	// their waiters are answered now, not from the recorded outcome later.
	defer r.flushReplies()
	r.log.Info("projector started", "group", r.cfg.Group, "topics", topics)
	for {
		fetches := cl.PollRecords(ctx, r.cfg.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			r.log.Info("projector stopping")
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		lag.Observe(r.cfg.Group, fetches)
		if records := fetches.Records(); len(records) > 0 {
			r.processWithRetry(ctx, records)
			r.prune(ctx)
		}
		cl.AllowRebalance()
	}
}

// replyFlushTimeout bounds how long a stopping projector waits for the
// replies it has yet to deliver; past it, their waiters read the outcome.
const replyFlushTimeout = 5 * time.Second

// flushReplies waits, at most replyFlushTimeout, for the replies produced.
func (r *Runtime) flushReplies() {
	ctx, cancel := context.WithTimeout(context.Background(), replyFlushTimeout)
	defer cancel()
	if err := r.cl.Flush(ctx); err != nil {
		r.log.Warn("replies not all delivered before stopping; their waiters will read the outcome", "err", err)
	}
}

// storedOffsets replaces the group's committed offsets with the ones stored
// in PostgreSQL; partitions never projected start from the beginning.
func (r *Runtime) storedOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	offsets, err := StoredOffsets(ctx, r.cfg.Pool, r.p.Name)
	if err != nil {
		return nil, fmt.Errorf("projector: %w", err)
	}
	stored := map[partitionKey]int64{}
	for _, o := range offsets {
		stored[partitionKey{o.Topic, o.Partition}] = o.Next
	}
	for topic, ps := range assigned {
		for p := range ps {
			if next, ok := stored[partitionKey{topic, p}]; ok {
				ps[p] = kgo.NewOffset().At(next).WithEpoch(-1)
			} else {
				ps[p] = kgo.NewOffset().AtStart()
			}
		}
	}
	return assigned, nil
}

// processWithRetry projects a batch, retrying with backoff while the
// database is unavailable; it gives up only when ctx ends.
func (r *Runtime) processWithRetry(ctx context.Context, records []*kgo.Record) {
	backoff := 100 * time.Millisecond
	for {
		replies, err := r.process(ctx, records)
		if err == nil && r.cfg.Faults != nil && r.cfg.Faults.DropReplies.Load() {
			r.log.Warn("fault injected: replies of a committed batch dropped", "replies", len(replies))
			return
		}
		if err == nil {
			for _, reply := range replies {
				// The reply carries its event's trace context (applyOne).
				_, span := tracing.StartProducer(tracing.Extract(ctx, reply), "reply", reply, tracing.AttrCommandID.String(string(reply.Key)))
				// Not ended by a stop: flushReplies delivers it first.
				r.cl.Produce(context.WithoutCancel(ctx), reply, func(rec *kgo.Record, err error) {
					tracing.End(span, err)
					if err != nil {
						r.log.Warn("reply not sent; the gateway will read the outcome from the view", "topic", rec.Topic, "err", err)
						return
					}
					repliesSent.WithLabelValues(r.p.Name).Inc()
				})
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("batch not projected; retrying", "records", len(records), "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

type partitionKey struct {
	topic     string
	partition int32
}

// errNeedsSavepoints stops a batch projected without savepoints when an
// event fails for good: the batch is projected again, event by event in
// savepoints, so that the failed event alone is dead-lettered.
var errNeedsSavepoints = errors.New("a permanent failure: projecting the batch again with savepoints")

// batch is one transaction's work in progress.
type batch struct {
	// work holds the statements of the events and replies: the second round
	// trip. final runs last, with the commit: outcomes recorded, change
	// notices, offsets stored.
	work, final pgx.Batch
	// dead are the dead letters of the batch, sent before its commit.
	dead    []*kgo.Record
	replies []*kgo.Record
	// replyErr is the first reply that could not be derived.
	replyErr error
	// changed is the latest version applied per aggregate, for the change
	// notices sent at the commit.
	changed map[aggregateKey]int64
	// spans are the batch's "project" spans, ended when it commits or
	// fails; replied are those of events that derived a reply.
	spans, replied []trace.Span
}

// process applies a batch in one transaction and returns the replies to
// send after it committed. Without a failure it costs three round trips to
// PostgreSQL, each a pipelined batch: begin and lock the offsets; apply
// every event and derive every reply; record the outcomes, store the
// offsets and commit. Only when an event fails for good in the database is
// the batch applied again, each event in a savepoint of its own (see
// applyInSavepoint), so that it alone is dead-lettered.
func (r *Runtime) process(ctx context.Context, records []*kgo.Record) ([]*kgo.Record, error) {
	// A connection whose packets vanish (a black-holed network, a stalled
	// server) would hold the batch for good: the deadline closes it, and
	// the batch is retried on another — safely, since the offsets are
	// checked and stored in the same transaction.
	ctx, cancel := context.WithTimeout(ctx, r.cfg.BatchTimeout)
	defer cancel()
	began := time.Now()
	replies, err := r.processBatch(ctx, records, false)
	if errors.Is(err, errNeedsSavepoints) {
		replies, err = r.processBatch(ctx, records, true)
	}
	observeBatch(r.p.Name, began, len(records), err)
	return replies, err
}

func (r *Runtime) processBatch(ctx context.Context, records []*kgo.Record, savepoints bool) (_ []*kgo.Record, err error) {
	pc, err := r.cfg.Pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer pc.Release()
	conn := pc.Conn()
	committed := false
	defer func() {
		if !committed {
			rollback(conn)
		}
	}()

	// Round trip 1: begin, and lock the offsets.
	first := &pgx.Batch{}
	first.Queue("BEGIN")
	next := map[partitionKey]int64{}
	if !r.mode.untracked {
		r.queueLockOffsets(first, records, next)
	}
	if err := conn.SendBatch(ctx, first).Close(); err != nil {
		return nil, fmt.Errorf("locking offsets: %w", err)
	}

	// Round trip 2 (one per event with savepoints): apply, derive replies.
	b := &batch{}
	defer func() { tracing.EndAll(b.spans, err) }()
	now := time.Now()
	for _, rec := range records {
		k := partitionKey{rec.Topic, rec.Partition}
		if !r.mode.untracked {
			if rec.Offset < next[k] {
				continue // applied before (a retried End, an overlapping owner)
			}
			next[k] = rec.Offset + 1
		}
		if savepoints {
			if err := r.applyInSavepoint(ctx, conn, b, rec, now); err != nil {
				return nil, err
			}
			continue
		}
		if err := r.queueOne(ctx, b, &b.work, rec, now); err != nil {
			return nil, err
		}
	}
	if b.work.Len() > 0 {
		workBegan := time.Now()
		err := conn.SendBatch(ctx, &b.work).Close()
		if errors.Is(err, ErrPermanent) {
			return nil, fmt.Errorf("%w: %w", errNeedsSavepoints, err)
		}
		if err != nil {
			return nil, fmt.Errorf("applying events: %w", err)
		}
		r.traceRoundTrip(b.spans, "postgres apply", workBegan)
		r.traceRoundTrip(b.replied, "postgres reply", workBegan)
	}
	if b.replyErr != nil {
		return nil, b.replyErr
	}

	// Round trip 3: outcomes, change notices, offsets, commit.
	queueNotices(b)
	if !r.mode.untracked {
		var topics []string
		var partitions []int32
		var offsets []int64
		for k, n := range next {
			topics, partitions, offsets = append(topics, k.topic), append(partitions, k.partition), append(offsets, n)
		}
		b.final.Queue(`
			UPDATE projector_offsets o SET next_offset = u.next_offset
			FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u (topic, partition, next_offset)
			WHERE o.projection = $1 AND o.topic = u.topic AND o.partition = u.partition`,
			r.p.Name, topics, partitions, offsets)
	}
	if !r.mode.replay {
		if err := r.deadLetter(ctx, b.dead); err != nil {
			return nil, err
		}
	}
	b.final.Queue("COMMIT")
	commitBegan := time.Now()
	if err := conn.SendBatch(ctx, &b.final).Close(); err != nil {
		return nil, fmt.Errorf("recording outcomes, storing offsets and committing: %w", err)
	}
	committed = true
	if r.mode.replay {
		// The live projector dead-lettered these when they first came: a
		// replay leaves them out and counts them.
		for _, d := range b.dead {
			r.mode.skipped.Add(1)
			r.log.Warn("replay: event left out", "topic", header(d, dlq.HSourceTopic), "partition", header(d, dlq.HSourcePartition),
				"offset", header(d, dlq.HSourceOffset), "err", header(d, dlq.HError))
		}
		return nil, nil
	}
	r.traceRoundTrip(b.spans, "postgres commit", commitBegan)
	for _, d := range b.dead {
		dlq.Counted(d)
		r.log.Warn("event dead-lettered", "topic", header(d, dlq.HSourceTopic), "partition", header(d, dlq.HSourcePartition),
			"offset", header(d, dlq.HSourceOffset), "err", header(d, dlq.HError))
	}
	return b.replies, nil
}

// rollback ends the transaction a failed batch left open; a connection that
// cannot is closed, so that the pool never hands out one inside a
// transaction.
func rollback(conn *pgx.Conn) {
	if conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = conn.Close(ctx)
	}
}

// queueLockOffsets queues the lock of the stored offset of every partition
// in records (in one statement, in a fixed order, so that two overlapping
// owners queue rather than deadlock); next receives them when it runs:
// records below them were applied already.
func (r *Runtime) queueLockOffsets(q *pgx.Batch, records []*kgo.Record, next map[partitionKey]int64) {
	var keys []partitionKey
	for _, rec := range records {
		k := partitionKey{rec.Topic, rec.Partition}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b partitionKey) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	topics, partitions := make([]string, len(keys)), make([]int32, len(keys))
	for i, k := range keys {
		topics[i], partitions[i] = k.topic, k.partition
	}
	q.Queue(`
		INSERT INTO projector_offsets (projection, topic, partition, next_offset)
		SELECT $1, u.topic, u.partition, 0 FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS u (topic, partition, i)
		ORDER BY u.i
		ON CONFLICT (projection, topic, partition) DO UPDATE SET next_offset = projector_offsets.next_offset
		RETURNING topic, partition, next_offset`, r.p.Name, topics, partitions).Query(func(rows pgx.Rows) error {
		var k partitionKey
		var n int64
		_, err := pgx.ForEachRow(rows, []any{&k.topic, &k.partition, &n}, func() error {
			next[k] = n
			return nil
		})
		return err
	})
}

// queueOne queues on q what one record asks: an event applied and, when it
// completes a command, its reply derived and its outcome recorded in the
// final round trip; a rejection read from an outcomes topic recorded. An
// event refused for good before anything is queued (malformed, or an Apply
// error wrapping ErrPermanent) is dead-lettered.
func (r *Runtime) queueOne(ctx context.Context, b *batch, q *pgx.Batch, rec *kgo.Record, now time.Time) error {
	ctx, ev, ok, err := r.queueApply(ctx, b, q, rec)
	if err != nil || !ok {
		return err
	}
	r.queueApplied(ctx, b, q, rec.Topic, ev, now)
	return nil
}

// queueApply queues on q the statements of one record: the event's Apply,
// or, for an outcomes topic, the rejection's record in the final round
// trip. ok is true for an event queued, with ctx carrying its span.
func (r *Runtime) queueApply(ctx context.Context, b *batch, q *pgx.Batch, rec *kgo.Record) (_ context.Context, _ envelope.Event, ok bool, _ error) {
	if _, ok := r.p.Outcomes[rec.Topic]; ok {
		if !r.mode.replay {
			r.recordOutcome(b, rec)
		}
		return ctx, envelope.Event{}, false, nil
	}
	ev, err := envelope.DecodeEvent(rec)
	if err != nil {
		r.queueDeadLetter(b, rec, err)
		return ctx, ev, false, nil
	}
	if !r.mode.replay {
		var span trace.Span
		ctx, span = tracing.StartConsumer(tracing.WithTraceParent(ctx, ev.TraceParent), "project "+ev.Type, rec,
			append(tracing.MetaAttributes(ev.Meta), tracing.AttrVersion.Int64(ev.Version))...)
		b.spans = append(b.spans, span)
	}
	if err := r.p.Apply(q, rec.Topic, ev); err != nil {
		if errors.Is(err, ErrPermanent) {
			r.queueDeadLetter(b, rec, err)
			trace.SpanFromContext(ctx).SetStatus(codes.Error, "event dead-lettered")
			return ctx, ev, false, nil
		}
		return ctx, ev, false, fmt.Errorf("applying %s %s@%d: %w", ev.Type, ev.AggregateID, ev.Version, err)
	}
	return ctx, ev, true, nil
}

// queueApplied queues what follows an event's Apply: its change notice and,
// when it completes a command, the reads of its reply on q, whose outcome is
// then recorded in the final round trip.
func (r *Runtime) queueApplied(ctx context.Context, b *batch, q *pgx.Batch, topic string, ev envelope.Event, now time.Time) {
	if !r.mode.replay {
		r.recordChange(b, topic, ev)
	}
	if r.mode.replay || !ev.LastOfCommand() || ev.CommandID == "" {
		return
	}
	b.replied = append(b.replied, trace.SpanFromContext(ctx))
	r.p.Reply(q, topic, ev, func(body json.RawMessage, err error) {
		if err != nil {
			if b.replyErr == nil {
				b.replyErr = fmt.Errorf("deriving the reply to %s: %w", ev.CommandID, err)
			}
			return
		}
		r.queueAppliedOutcome(ctx, b, topic, ev, body, now)
	})
}

// queueAppliedOutcome queues, for the final round trip, the record of an
// applied command's outcome with its reply; the reply is sent after the
// commit only when the record is new and somebody still waits.
func (r *Runtime) queueAppliedOutcome(ctx context.Context, b *batch, topic string, ev envelope.Event, body json.RawMessage, now time.Time) {
	b.final.Queue(`
		INSERT INTO command_outcomes (command_id, topic, aggregate_id, version, outcome, reply, tenant)
		VALUES ($1, $2, $3, $4, 'applied', $5, $6) ON CONFLICT (command_id) DO NOTHING`,
		ev.CommandID, topic, ev.AggregateID, ev.Version, body, ev.Tenant).Exec(func(tag pgconn.CommandTag) error {
		// Replied once: a command recorded before (its record replayed)
		// is not answered again, nor is one nobody waits for any more.
		if tag.RowsAffected() > 0 && ev.WantsReply(now) {
			reply := envelope.EncodeReply(ev.ReplyTo, envelope.Reply{
				CommandID: ev.CommandID, Outcome: envelope.Applied, Version: ev.Version, Body: body,
			})
			tracing.Inject(ctx, reply) // the reply's producer span will be this event's child
			b.replies = append(b.replies, reply)
		}
		return nil
	})
}

// applyInSavepoint applies one record in a savepoint of its own, then
// derives its reply: an event that fails for good in the database is rolled
// back alone and dead-lettered, and the batch goes on. It costs two or
// three round trips; only a batch with such an event takes this path.
func (r *Runtime) applyInSavepoint(ctx context.Context, conn *pgx.Conn, b *batch, rec *kgo.Record, now time.Time) error {
	q := &pgx.Batch{}
	q.Queue("SAVEPOINT event")
	ctx, ev, ok, err := r.queueApply(ctx, b, q, rec)
	if err != nil || !ok {
		return err
	}
	q.Queue("RELEASE SAVEPOINT event")
	if err := conn.SendBatch(ctx, q).Close(); err != nil {
		if _, rbErr := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT event"); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		if !errors.Is(err, ErrPermanent) {
			return fmt.Errorf("applying %s %s@%d: %w", ev.Type, ev.AggregateID, ev.Version, err)
		}
		r.queueDeadLetter(b, rec, err)
		trace.SpanFromContext(ctx).SetStatus(codes.Error, "event dead-lettered")
		return nil
	}
	after := &pgx.Batch{}
	r.queueApplied(ctx, b, after, rec.Topic, ev, now)
	if after.Len() > 0 {
		if err := conn.SendBatch(ctx, after).Close(); err != nil {
			return fmt.Errorf("deriving the reply to %s: %w", ev.CommandID, err)
		}
	}
	return b.replyErr
}

// startPostgres starts a client span name for PostgreSQL work of ctx's
// event; without a recording span in ctx it starts nothing.
func (r *Runtime) startPostgres(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noop.Span{}
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attribute.String("db.system.name", "postgresql")))
	if r.database != "" {
		opts = append(opts, trace.WithAttributes(attribute.String("db.namespace", r.database)))
	}
	return tracing.Tracer().Start(ctx, name, opts...)
}

// traceRoundTrip gives each recording span of spans a child client span
// name covering the round trip to PostgreSQL begun at began and ending now:
// the round trip is shared, but each trace shows what it waited for.
func (r *Runtime) traceRoundTrip(spans []trace.Span, name string, began time.Time) {
	ended := time.Now()
	for _, s := range spans {
		if !s.IsRecording() {
			continue
		}
		_, child := r.startPostgres(trace.ContextWithSpan(context.Background(), s), name, trace.WithTimestamp(began))
		child.End(trace.WithTimestamp(ended))
	}
}

// recordOutcome records a rejection read from an outcomes topic.
func (r *Runtime) recordOutcome(b *batch, rec *kgo.Record) {
	reply, aggregateID, tenant, err := envelope.DecodeOutcome(rec)
	if err != nil {
		r.queueDeadLetter(b, rec, err)
		return
	}
	b.final.Queue(`
		INSERT INTO command_outcomes (command_id, topic, aggregate_id, version, outcome, reply, tenant)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (command_id) DO NOTHING`,
		reply.CommandID, rec.Topic, aggregateID, reply.Version, string(reply.Outcome), []byte(reply.Body), tenant)
}

// queueDeadLetter adds rec to the batch's dead letters.
func (r *Runtime) queueDeadLetter(b *batch, rec *kgo.Record, reason error) {
	topic, ok := r.p.Topics[rec.Topic]
	if !ok {
		topic = r.p.Outcomes[rec.Topic]
	}
	b.dead = append(b.dead, dlq.Record(topic, "projector", rec, reason))
}

func header(r *kgo.Record, key string) string {
	v, _ := envelope.Header(r, key)
	return v
}

// deadLetter sends a batch's dead letters before the batch commits: a crash
// in between may send them twice, never lose them.
func (r *Runtime) deadLetter(ctx context.Context, dead []*kgo.Record) error {
	if len(dead) == 0 {
		return nil
	}
	if err := r.cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
		return fmt.Errorf("dead-lettering %d records: %w", len(dead), err)
	}
	return nil
}

// Package aggregate is the command side of the pipeline: a consumer group on
// <domain>.commands in which the owner of a partition is the single writer of
// every aggregate keyed to it.
//
// Per poll, one Kafka transaction (franz-go's GroupTransactSession) holds
// everything the commands of the batch caused: their events, the aggregates'
// new snapshots (compacted <domain>.snapshots, co-partitioned with the
// commands), rejections (<domain>.outcomes), dead letters, and the consumed
// offsets. So a command is decided exactly once: a crash, a rebalance or a
// zombie instance aborts the transaction and the commands are decided again
// from the last committed state. Replies to waiting gateways (rejections,
// duplicates) are sent after the commit, outside the transaction. State lives in memory, restored from the snapshots topic
// when a partition is first seen after an assignment.
//
// Tracing: each command is a consumer span "handle <command type>", child of
// the span its traceparent header names, ended when its transaction ends; the
// events and replies it causes carry this span's trace context, so the
// projector and the gateway continue the trace.
package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/lag"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// Config configures a Runtime.
type Config struct {
	Brokers []string
	Topics  topics.Names
	// Group is the consumer group; default "<domain>-aggregator".
	Group string
	// InstanceID names this instance, stable across its restarts: the
	// transactional ID is "<Group>.<InstanceID>", so a restarted instance
	// fences its previous incarnation at once. Required.
	InstanceID string
	// MaxPollRecords bounds the commands of one transaction; default 500.
	MaxPollRecords int
	// TransactionTimeout bounds how long a crashed instance's open
	// transaction blocks its partitions; default 10s.
	TransactionTimeout time.Duration
	// IdempotencyWindow is how long an aggregate remembers a command (by its
	// idempotency key, else its command ID), so that a retry or a replayed
	// record returns the first outcome and emits nothing; default 24h. A
	// command record older than the window is dead-lettered as stale: it can
	// no longer be told from one already applied.
	IdempotencyWindow time.Duration
	// MaxRemembered bounds the commands an aggregate remembers (its snapshot
	// carries them); default 256. When a busy aggregate forgets commands
	// before the window ends, records sent before the newest forgotten one
	// are dead-lettered as stale too.
	MaxRemembered int
	// ShutdownDrain is how long a shutdown waits for the batch in hand to
	// commit; default twice TransactionTimeout. Negative: abort it at once, as
	// a crash would (its commands are decided again by the next owner).
	ShutdownDrain time.Duration
	Logger        *slog.Logger
	// ClientOpts are appended to the Kafka client's options (TLS, SASL...).
	ClientOpts []kgo.Opt
}

func (c *Config) setDefaults(domain string) {
	if c.Group == "" {
		c.Group = domain + "-aggregator"
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 500
	}
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = 10 * time.Second
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = 24 * time.Hour
	}
	if c.MaxRemembered == 0 {
		c.MaxRemembered = 256
	}
	if c.ShutdownDrain == 0 {
		c.ShutdownDrain = 2 * c.TransactionTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every missing setting at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers are required"))
	}
	if c.InstanceID == "" {
		errs = append(errs, errors.New("instance ID is required"))
	}
	if c.Topics.Commands == "" || c.Topics.Events == "" || c.Topics.Snapshots == "" || c.Topics.Outcomes == "" || c.Topics.DLQ == "" {
		errs = append(errs, errors.New("topic names are required"))
	}
	return errors.Join(errs...)
}

// Runtime runs one aggregate type. Run it once; it is not reusable.
type Runtime[S any] struct {
	def  Definition[S]
	cfg  Config
	log  *slog.Logger
	sess *kgo.GroupTransactSession
	// replies sends rejection and duplicate replies after the transaction
	// that decided them committed, outside it (see sendReplies).
	replies *kgo.Client

	// state per partition, touched only by Run's goroutine.
	state map[int32]map[string]entry[S]

	mu    sync.Mutex
	stale map[int32]bool // partitions assigned, revoked or lost since the last poll
}

// New validates cfg and returns a runtime for def.
func New[S any](def Definition[S], cfg Config) (*Runtime[S], error) {
	cfg.setDefaults(def.Name)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aggregate %s: %w", def.Name, err)
	}
	if def.Decide == nil || def.Evolve == nil {
		return nil, fmt.Errorf("aggregate %s: Decide and Evolve are required", def.Name)
	}
	return &Runtime[S]{
		def:   def,
		cfg:   cfg,
		log:   cfg.Logger.With("aggregate", def.Name, "instance", cfg.InstanceID),
		state: map[int32]map[string]entry[S]{},
		stale: map[int32]bool{},
	}, nil
}

func (r *Runtime[S]) markStale(assigned map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ps := range assigned[r.cfg.Topics.Commands] {
		r.stale[ps] = true
	}
}

// ErrProducerFenced marks a transactional producer that franz-go cannot
// bring back: fenced (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH — an epoch
// bumped by another instance with the same transactional ID, or by the
// coordinator after a transaction timeout, as when a broker was away for
// longer than the timeout) or otherwise in a fatal state. Every later Begin
// fails. Run then returns it: the instance must stop, as Kafka's own clients
// do — if another live instance fenced it, it is the zombie; otherwise its
// supervisor restarts it and the restart takes a fresh epoch. Recovering in
// place instead would fence the other instance in turn, and two instances
// fencing each other over and over broke the order of events (the
// integration suite caught it).
var ErrProducerFenced = errors.New("transactional producer fenced or failed for good")

// Run consumes commands until ctx ends, then leaves the group and returns
// nil. It returns an error when a client cannot be created, and one wrapping
// ErrProducerFenced when its transactional producer is fenced.
func (r *Runtime[S]) Run(ctx context.Context) error {
	replies, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(5 * time.Second), // a reply nobody gets in time is useless
		kgo.MaxBufferedRecords(10_000),
	}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("aggregate %s: reply client: %w", r.def.Name, err)
	}
	r.replies = replies
	defer replies.Close()
	if err := r.openSession(); err != nil {
		return err
	}
	defer r.sess.Close()
	r.log.Info("aggregator started", "group", r.cfg.Group, "commands", r.cfg.Topics.Commands)
	for {
		fetches := r.sess.PollRecords(ctx, r.cfg.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			r.log.Info("aggregator stopping")
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		lag.Observe(r.cfg.Group, fetches)
		r.dropStale()
		records := fetches.Records()
		if len(records) == 0 {
			continue
		}
		// A shutdown lets the batch in hand finish and commit (bounded), so
		// that the commands it holds are answered rather than redone.
		batchCtx, cancel := ctx, context.CancelFunc(func() {})
		if r.cfg.ShutdownDrain > 0 {
			batchCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownDrain)
		}
		err := r.process(batchCtx, records)
		cancel()
		if errors.Is(err, ErrProducerFenced) {
			r.log.Error("transactional producer fenced or failed for good; stopping so that a restart takes a fresh epoch", "commands", len(records), "err", err)
			return fmt.Errorf("aggregate %s: %w", r.def.Name, err)
		}
		if err != nil {
			r.log.Warn("batch not committed; its commands will be decided again", "commands", len(records), "err", err)
		}
	}
}

// openSession creates the transactional consumer-group session.
func (r *Runtime[S]) openSession() error {
	opts := []kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.ConsumerGroup(r.cfg.Group),
		// Dynamic membership: an instance that stops cleanly leaves the group
		// and its partitions move at once (deploys, scale-in). One that dies
		// is noticed within the session timeout. (Static membership would
		// give a restarted instance its partitions back at once but make
		// every clean stop wait out the session: worse for rolling deploys,
		// as the chaos suite's rebalance storm showed.)
		kgo.SessionTimeout(10 * time.Second),
		kgo.ConsumeTopics(r.cfg.Topics.Commands),
		kgo.TransactionalID(r.cfg.Group + "." + r.cfg.InstanceID),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
		// A transaction begun right after the last one committed finds the
		// coordinator still writing that one's markers and is told
		// CONCURRENT_TRANSACTIONS; franz-go's default 20 ms backoff then
		// adds 20 ms to nearly every transaction of a busy aggregator.
		kgo.ConcurrentTransactionsBackoff(2 * time.Millisecond),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ProducerLinger(0),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.RecordPartitioner(snapshotsPartitioner{snapshots: r.cfg.Topics.Snapshots, others: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.markStale(m) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.markStale(m) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.markStale(m) }),
	}
	sess, err := kgo.NewGroupTransactSession(append(opts, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("aggregate %s: %w", r.def.Name, err)
	}
	r.sess = sess
	return nil
}

// snapshotsPartitioner sends records to the snapshots topic to the
// partition they name (that of their aggregate's commands: a remembered
// command's key hashes elsewhere), and others where others sends them (by
// key, as franz-go's default partitioner does).
type snapshotsPartitioner struct {
	snapshots string
	others    kgo.Partitioner
}

func (p snapshotsPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.snapshots {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.others.ForTopic(topic)
}

// dropStale forgets the state of partitions whose ownership changed: it is
// reloaded from the snapshots topic when their next command arrives.
func (r *Runtime[S]) dropStale() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.stale {
		delete(r.state, p)
	}
	clear(r.stale)
}

// forget drops the state of the partitions of records: it is read again from
// the snapshots topic before their next command is decided.
func (r *Runtime[S]) forget(records []*kgo.Record) {
	for _, rec := range records {
		delete(r.state, rec.Partition)
	}
}

// process decides one batch in one transaction. The in-memory state changes
// only when the transaction commits.
func (r *Runtime[S]) process(ctx context.Context, records []*kgo.Record) (err error) {
	for _, rec := range records {
		if _, ok := r.state[rec.Partition]; !ok {
			loaded, err := r.loadPartition(ctx, rec.Partition)
			if err != nil {
				return fmt.Errorf("restoring partition %d: %w", rec.Partition, err)
			}
			r.state[rec.Partition] = loaded
		}
	}
	began, outcomes := time.Now(), map[string]int{}
	defer func() { observeTransaction(r.def.Name, began, err == nil, outcomes) }()
	if err := r.sess.Begin(); err != nil {
		// A transaction left open by a failed End (see endOpen) blocks
		// every Begin: end it, then begin. A Begin that still fails has a
		// producer ID that franz-go could not recover.
		if err := r.endOpen(ctx); err != nil {
			return err
		}
		if err := r.sess.Begin(); err != nil {
			return fmt.Errorf("%w: %w", ErrProducerFenced, err)
		}
	}
	var (
		produceErr  error
		errMu       sync.Mutex
		deadLetters []*kgo.Record // counted once the transaction commits
		replies     []*kgo.Record // sent once the transaction commits
	)
	reply := func(rec *kgo.Record) { replies = append(replies, rec) }
	produce := func(rec *kgo.Record) {
		if rec.Topic == r.cfg.Topics.DLQ {
			deadLetters = append(deadLetters, rec)
		}
		r.sess.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				errMu.Lock()
				produceErr = errors.Join(produceErr, err)
				errMu.Unlock()
			}
		})
	}
	pending := map[string]*pendingEntry[S]{} // aggregate → state after this batch
	// A command's span ends with its transaction: what it emitted exists
	// only once the transaction commits.
	spans := make([]trace.Span, 0, len(records))
	defer func() { tracing.EndAll(spans, err) }()
	for _, rec := range records {
		cmdCtx, span := startHandle(ctx, rec)
		spans = append(spans, span)
		outcome := r.decideOne(cmdCtx, rec, pending, produce, reply)
		span.SetAttributes(tracing.AttrOutcome.String(outcome))
		if outcome == outcomeDeadLettered {
			span.SetStatus(codes.Error, "command dead-lettered")
		}
		outcomes[outcome]++
	}
	// One state record per changed aggregate and batch (the topic is
	// compacted: only the last counts), not one per command, and one record
	// per command remembered or forgotten (memory.go).
	cutoff := time.Now().Add(-r.cfg.IdempotencyWindow)
	for stream, e := range pending {
		e.pruneOlderThan(cutoff)
		for _, rec := range r.snapshotRecords(stream, e) {
			produce(rec)
		}
	}
	// Await every produce before End (franz-go #729).
	if err := r.sess.Client().Flush(ctx); err != nil {
		produceErr = errors.Join(produceErr, err)
	}
	try := kgo.TryCommit
	if produceErr != nil {
		try = kgo.TryAbort
	}
	committed, err := r.sess.End(ctx, try)
	if err != nil {
		// An End that failed leaves the outcome unknown: the broker may have
		// committed (an EndTxn carried out whose answer was lost). franz-go
		// rewinds to the offsets committed before the batch, so its commands
		// come again; decided from the state in memory, which never took
		// the batch in, they would be emitted a second time at the same
		// versions. Their partitions' state is read again from the snapshots
		// topic instead, which holds the batch's snapshots if it committed:
		// its commands are then remembered, and answered as duplicates.
		r.forget(records)
		if openErr := r.endOpen(ctx); openErr != nil {
			return errors.Join(err, openErr)
		}
	}
	if err != nil || !committed {
		return errors.Join(produceErr, err, errors.New("transaction aborted"))
	}
	for stream, e := range pending {
		if m, ok := r.state[e.partition]; ok {
			m[stream] = e.committed()
		}
	}
	for _, d := range deadLetters {
		dlq.Counted(d)
	}
	r.sendReplies(replies)
	return nil
}

// snapshotRecords are the snapshots-topic records that a batch's changes
// to the aggregate of stream write: its state record, then one record per
// command it now remembers and a tombstone per command it forgot. They go to
// the partition of the aggregate's commands (the topics are co-partitioned),
// where restoring that partition reads them.
func (r *Runtime[S]) snapshotRecords(stream string, e *pendingEntry[S]) []*kgo.Record {
	value, _ := json.Marshal(stateRecord{Version: e.version, State: e.stateJSON, Forgotten: e.forgotten}) // raw JSON and scalars: cannot fail
	out := make([]*kgo.Record, 0, 1+len(e.written))
	out = append(out, &kgo.Record{Topic: r.cfg.Topics.Snapshots, Partition: e.partition, Key: []byte(stream), Value: value})
	for key, kept := range e.written {
		rec := &kgo.Record{Topic: r.cfg.Topics.Snapshots, Partition: e.partition, Key: rememberedKey(stream, key)}
		if kept {
			rec.Value, _ = json.Marshal(e.keys[key]) // strings, numbers, times and raw JSON: cannot fail
		}
		out = append(out, rec)
	}
	return out
}

// sendReplies hands the replies of a committed batch to the reply client,
// without waiting. They travel outside the transaction on purpose: a reply
// topic may be gone (a gateway deletes its own when it stops, a hostile
// record may name any topic), and a produce that fails inside the
// transaction would abort it again and again and stall the partition. A
// reply that does not arrive costs the waiting gateway only its fallback
// lookup of the recorded outcome.
func (r *Runtime[S]) sendReplies(replies []*kgo.Record) {
	for _, rec := range replies {
		// rec carries its command's trace context (decideOne): the reply's
		// producer span continues that trace.
		_, span := tracing.StartProducer(tracing.Extract(context.Background(), rec), "reply", rec)
		r.replies.TryProduce(context.Background(), rec, func(rec *kgo.Record, err error) {
			tracing.End(span, err)
			if err != nil {
				r.log.Debug("reply not delivered", "topic", rec.Topic, "err", err)
			}
		})
	}
}

// startHandle starts the consumer span of one command record, child of the
// span its traceparent header names.
func startHandle(ctx context.Context, rec *kgo.Record) (context.Context, trace.Span) {
	name := "handle command"
	if typ, _ := envelope.Header(rec, envelope.HCommandType); typ != "" {
		name = "handle " + typ
	}
	return tracing.StartConsumer(tracing.Extract(ctx, rec), name, rec)
}

// endOpen aborts a transaction that a failed End may have left open: End
// returns early, without ending the transaction, when its context ends while
// it flushes (the broker was away longer than the batch's bound). Without
// this every later Begin fails and the partition stalls for good — as the
// chaos suite's broker restart showed. It retries until the abort goes
// through or ctx's run ends, and returns an error wrapping ErrProducerFenced
// at once when the broker's answer says the producer is fenced or otherwise
// failed for good (retrying that would stall the partitions for good too).
func (r *Runtime[S]) endOpen(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
		_, err := r.sess.End(abortCtx, kgo.TryAbort)
		cancel()
		if err == nil {
			return nil
		}
		if producerFailed(err) {
			return fmt.Errorf("%w: %w", ErrProducerFenced, err)
		}
		r.log.Warn("aborting the open transaction failed; retrying", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 2*time.Second)):
		}
	}
}

// producerFailed reports whether err is the broker's definitive answer that
// the transactional producer cannot go on: a non-retriable Kafka error such
// as PRODUCER_FENCED or INVALID_PRODUCER_EPOCH.
func producerFailed(err error) bool {
	var ke *kerr.Error
	return errors.As(err, &ke) && !ke.Retriable && ke.Code != kerr.UnknownServerError.Code
}

// decideOne decides one command record, producing its consequences.
// Records of the transaction go to produce, replies to reply. It returns the
// command's outcome (outcomeApplied…) for the metrics. ctx carries the
// command's span: its events and replies carry that span's trace context.
func (r *Runtime[S]) decideOne(ctx context.Context, rec *kgo.Record, pending map[string]*pendingEntry[S], produce, reply func(*kgo.Record)) string {
	send := reply
	reply = func(rec *kgo.Record) {
		tracing.Inject(ctx, rec)
		send(rec)
	}
	cmd, err := envelope.DecodeCommand(rec)
	trace.SpanFromContext(ctx).SetAttributes(tracing.MetaAttributes(cmd.Meta)...)
	if err != nil {
		r.log.Warn("malformed command dead-lettered", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		return outcomeDeadLettered
	}
	if len(r.def.CommandTypes) > 0 && !slices.Contains(r.def.CommandTypes, cmd.Type) {
		err := fmt.Errorf("unknown command type %q for %s", cmd.Type, r.def.Name)
		r.log.Warn("command of unknown type dead-lettered", append(cmd.LogAttrs(), "partition", rec.Partition, "offset", rec.Offset, "type", cmd.Type)...)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		body, _ := json.Marshal(envelope.Problem{Type: "unknown-command", Title: "unknown command type", Detail: err.Error(), CommandID: cmd.CommandID})
		replyIfAwaited(cmd, envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Rejected, Body: body}, reply)
		return outcomeDeadLettered
	}
	if err := validStreamKey(rec.Key); err != nil {
		r.log.Warn("command with an invalid key dead-lettered", append(cmd.LogAttrs(), "partition", rec.Partition, "offset", rec.Offset, "err", err)...)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		return outcomeDeadLettered
	}
	// The aggregate's state is its stream's: the record key names the
	// tenant and the ID (envelope.StreamKey), as its snapshots' keys do.
	stream := string(rec.Key)
	cur := r.state[rec.Partition][stream]
	pe, touched := pending[stream]
	if touched {
		cur = pe.entry
	}
	now := time.Now().UTC()
	key := dedupeKey(cmd)
	seen, remembered := cur.remembers(key, now, r.cfg.IdempotencyWindow)
	// A record older than the window, or one the aggregate does not remember
	// though it was sent before commands it has forgotten, may have been
	// applied: a replay of the commands topic must not apply it twice. It goes
	// to the dead letters (an operator may redrive it, as a new record, once sure).
	sent := rec.Timestamp
	if now.Sub(sent) > r.cfg.IdempotencyWindow || !remembered && !cur.forgotten.IsZero() && !sent.After(cur.forgotten) {
		err := fmt.Errorf("stale command: sent %s, before what %s remembers (%s window, %d commands)",
			sent.UTC().Format(time.RFC3339), cmd.AggregateID, r.cfg.IdempotencyWindow, r.cfg.MaxRemembered)
		r.log.Warn("stale command dead-lettered", append(cmd.LogAttrs(), "partition", rec.Partition, "offset", rec.Offset, "sent", sent)...)
		produce(dlq.Record(r.cfg.Topics.DLQ, "aggregator", rec, err))
		r.answerStale(cmd, err, produce, reply)
		return outcomeDeadLettered
	}
	if remembered {
		r.answerDuplicate(cmd, seen, reply)
		return outcomeDuplicate
	}
	// commit makes state at version the aggregate's in this transaction,
	// remembering the command as decided (its records are produced once per
	// batch, in process); it fails, changing nothing, when state cannot be
	// encoded. stateJSON is state encoded when the caller has it already.
	commit := func(state *S, version int64, stateJSON json.RawMessage, decided keyRecord) bool {
		if stateJSON == nil {
			var err error
			if stateJSON, err = json.Marshal(state); err != nil {
				r.log.Error("state could not be encoded", append(cmd.LogAttrs(), "err", err)...)
				return false
			}
		}
		if !touched {
			pe, touched = newPending(cur, rec.Partition), true
			pending[stream] = pe
		}
		pe.state, pe.version, pe.stateJSON = state, version, stateJSON
		pe.remember(key, decided, r.cfg.MaxRemembered)
		return true
	}
	reject := func(p *envelope.Problem) string {
		p.CommandID = cmd.CommandID
		body, _ := json.Marshal(p)
		rejection := envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Rejected, Version: cur.version, Body: body}
		produce(envelope.EncodeOutcome(r.cfg.Topics.Outcomes, cmd.AggregateID, cmd.Tenant, rejection))
		replyIfAwaited(cmd, rejection, reply)
		var curJSON json.RawMessage
		if touched {
			curJSON = pe.stateJSON
		}
		_ = commit(cur.state, cur.version, curJSON, keyRecord{CommandID: cmd.CommandID, Version: cur.version, Rejection: body, At: now, Sent: rec.Timestamp})
		return outcomeRejected
	}
	if cmd.ExpectedVersion != envelope.NoVersion && cmd.ExpectedVersion != cur.version {
		v := cur.version
		return reject(&envelope.Problem{
			Type: "version-mismatch", Title: "the aggregate is at another version",
			Detail:         fmt.Sprintf("expected version %d, current version %d", cmd.ExpectedVersion, cur.version),
			CurrentVersion: &v,
		})
	}
	decision := r.def.Decide(cur.state, cur.version, cmd)
	if decision.Reject != nil {
		return reject(decision.Reject)
	}
	if len(decision.Events) == 0 {
		return reject(&envelope.Problem{Type: "internal", Title: "the command changed nothing"})
	}
	state, version := cur.state, cur.version
	var out []*kgo.Record
	meta := cmd.Meta
	meta.TraceParent = tracing.TraceParent(ctx) // the projector continues the trace from this command's span
	for i, ne := range decision.Events {
		data, err := json.Marshal(ne.Data)
		if err != nil {
			r.log.Error("event encoding failed", append(cmd.LogAttrs(), "type", ne.Type, "err", err)...)
			return reject(&envelope.Problem{Type: "internal", Title: "event could not be encoded"})
		}
		ev := envelope.Event{
			Meta: meta, Type: ne.Type, Version: version + 1, Time: now,
			Index: i + 1, Count: len(decision.Events), Data: data,
		}
		if state, err = r.def.Evolve(state, ev); err != nil {
			r.log.Error("evolve failed", append(cmd.LogAttrs(), "type", ne.Type, "err", err)...)
			return reject(&envelope.Problem{Type: "internal", Title: "event could not be applied"})
		}
		version = ev.Version
		out = append(out, envelope.EncodeEvent(r.cfg.Topics.Events, "/answerback/"+r.def.Name, ev))
	}
	if !commit(state, version, nil, keyRecord{CommandID: cmd.CommandID, Version: version, At: now, Sent: rec.Timestamp}) {
		return reject(&envelope.Problem{Type: "internal", Title: "state could not be encoded"})
	}
	for _, rec := range out {
		produce(rec)
	}
	return outcomeApplied
}

// answerStale records a stale command's rejection on the outcomes topic, so
// that its status is final, and replies when somebody still waits (a replayed
// record's gateway is usually long gone).
func (r *Runtime[S]) answerStale(cmd envelope.Command, reason error, produce, send func(*kgo.Record)) {
	body, _ := json.Marshal(envelope.Problem{Type: "stale-command", Title: "command too old to be applied safely", Detail: reason.Error(), CommandID: cmd.CommandID})
	reply := envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Rejected, Body: body}
	produce(envelope.EncodeOutcome(r.cfg.Topics.Outcomes, cmd.AggregateID, cmd.Tenant, reply))
	replyIfAwaited(cmd, reply, send)
}

// replyIfAwaited sends reply to cmd's reply topic while its gateway still
// waits; past the deadline nobody listens.
func replyIfAwaited(cmd envelope.Command, reply envelope.Reply, send func(*kgo.Record)) {
	if cmd.WantsReply(time.Now()) {
		send(envelope.EncodeReply(cmd.ReplyTo, reply))
	}
}

// answerDuplicate answers a command whose idempotency key was seen: with the
// first rejection again, or with a duplicate notice naming the first command,
// whose recorded outcome the gateway then returns. Nothing is emitted.
func (r *Runtime[S]) answerDuplicate(cmd envelope.Command, seen keyRecord, send func(*kgo.Record)) {
	reply := envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Duplicate, Version: seen.Version}
	reply.Body, _ = json.Marshal(map[string]string{"commandId": seen.CommandID})
	if seen.Rejection != nil {
		reply.Outcome, reply.Body = envelope.Rejected, seen.Rejection
	}
	replyIfAwaited(cmd, reply, send)
}

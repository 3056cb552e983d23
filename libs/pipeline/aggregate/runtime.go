// Package aggregate is the command side of the pipeline: a consumer group on
// <domain>.commands in which the owner of a partition is the single writer of
// every aggregate keyed to it.
//
// Each owned partition has a worker of its own (partition.go) with its own
// transactional producer, whose transactional ID names the partition
// (TransactionalID). Per batch of the partition's commands, one Kafka
// transaction holds everything they caused: their events, their aggregates'
// state records and remembered commands (compacted <domain>.snapshots,
// co-partitioned with the commands; memory.go), rejections
// (<domain>.outcomes), dead letters, and a checkpoint record holding the
// offset of the next command to decide. The consumed offsets live in that
// checkpoint, not in the group: a transaction costs a Produce and an EndTxn.
// The partitions' transactions are independent; an instance runs up to
// TransactionSlots of them at once, and a partition waiting for a slot
// gathers its commands into a larger transaction.
//
// Whoever takes a partition over first initializes its transactional ID,
// which fences the previous owner (a zombie's later transactions fail) and
// aborts its open transaction; it then restores the partition's state and
// checkpoint from the snapshots topic (restore.go) and consumes from the
// checkpoint. So a command is decided exactly once: a crash, a rebalance or
// a zombie aborts the transaction, and the commands are decided again from
// the last committed state. Replies to waiting gateways (rejections,
// duplicates) are sent after the commit, outside the transaction.
//
// Tracing: each command is a consumer span "handle <command type>", child of
// the span its traceparent header names, ended when its transaction ends; the
// events and replies it causes carry this span's trace context, so the
// projector and the gateway continue the trace.
package aggregate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	// InstanceID names this instance in logs. Required. (Transactional IDs
	// belong to partitions, not instances: see TransactionalID.)
	InstanceID string
	// MaxPollRecords bounds the commands of one transaction; default 500.
	// A partition with more than four times as many commands waiting is
	// paused until its owner catches up.
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
	// TransactionSlots bounds the transactions that the instance's
	// partitions run at once; default 2, negative: no bound. A partition
	// that finds every slot taken waits for one — at most SlotWait — and
	// its transaction then takes every command that arrived meanwhile: under
	// load transactions grow, and with them fall the broker's work per
	// command (an EndTxn and its markers per transaction) and the Fetch
	// requests. At low load a slot is free and nothing waits.
	TransactionSlots int
	// SlotWait bounds a partition's wait for a slot, after which it begins
	// its transaction anyway, so that a partition whose transaction
	// coordinator is away does not hold the others up; default 20ms.
	SlotWait time.Duration
	// ShutdownDrain is how long a shutdown, or the revocation of a
	// partition, waits for the batch in hand to commit; default twice
	// TransactionTimeout. Negative: abort it at once, as a crash would (its
	// commands are decided again by the next owner).
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
	if c.TransactionSlots == 0 {
		c.TransactionSlots = 1
	}
	if c.SlotWait == 0 {
		c.SlotWait = 20 * time.Millisecond
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
	def Definition[S]
	cfg Config
	log *slog.Logger
	// consumer is the group member that fetches commands and hands each
	// partition's to its worker.
	consumer *kgo.Client
	// replies sends rejection and duplicate replies after the transaction
	// that decided them committed, outside it (see sendReplies).
	replies *kgo.Client

	mu sync.Mutex
	// workers are the owned partitions' workers, by partition.
	workers map[int32]*partition[S]
	// seeks are partitions restored and waiting, paused, for the poll loop to
	// move the consumer to their checkpoint (-1: where the group left off).
	seeks map[int32]int64
	// resumes are partitions paused for backpressure whose workers caught up.
	resumes map[int32]bool
	// committed is the checkpoint of each partition's last committed
	// transaction, reported to the group now and then (for lag; the
	// checkpoint itself is what counts).
	committed map[int32]int64
	// slots holds a token per transaction in flight (TransactionSlots); nil
	// when unbounded.
	slots chan struct{}
	// fatal is the first error a worker cannot recover from.
	fatal error
	// wake ends the poll in progress, so that the poll loop sees seeks,
	// resumes and fatal errors at once.
	wake context.CancelFunc
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
	var slots chan struct{}
	if cfg.TransactionSlots > 0 {
		slots = make(chan struct{}, cfg.TransactionSlots)
	}
	return &Runtime[S]{
		slots:     slots,
		def:       def,
		cfg:       cfg,
		log:       cfg.Logger.With("aggregate", def.Name, "instance", cfg.InstanceID),
		workers:   map[int32]*partition[S]{},
		seeks:     map[int32]int64{},
		resumes:   map[int32]bool{},
		committed: map[int32]int64{},
	}, nil
}

// TransactionalID is the transactional ID of the owner of commands
// partition p of group: "<group>.p<p>". Whoever owns the partition uses it,
// so a new owner fences the previous one, whatever instance that was.
func TransactionalID(group string, p int32) string {
	return group + ".p" + strconv.Itoa(int(p))
}

// ErrProducerFenced marks a transactional producer that franz-go cannot
// bring back: fenced (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH — an epoch
// bumped by the partition's new owner, or by the coordinator after a
// transaction timeout, as when a broker was away for longer than the
// timeout) or otherwise in a fatal state. Run then returns it: the instance
// must stop, as Kafka's own clients do — if another live instance fenced
// it, it is the zombie; otherwise its supervisor restarts it, and the
// restart joins the group afresh and takes its partitions' IDs again.
// Recovering in place instead could fence the partition's new owner in
// turn, and two instances fencing each other over and over broke the order
// of events (the integration suite caught it).
var ErrProducerFenced = errors.New("transactional producer fenced or failed for good")

// Run consumes commands until ctx ends, then lets every partition's batch
// in hand commit (ShutdownDrain), leaves the group and returns nil. It
// returns an error when a client cannot be created, and one wrapping
// ErrProducerFenced when a partition's transactional producer is fenced.
func (r *Runtime[S]) Run(ctx context.Context) (err error) {
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
	if r.consumer, err = kgo.NewClient(append([]kgo.Opt{
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
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.DisableAutoCommit(),
		// Seeks to restored checkpoints happen between polls, never while
		// a revocation runs.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			r.assigned(cl, m[r.cfg.Topics.Commands])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.release(m[r.cfg.Topics.Commands], r.cfg.ShutdownDrain)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.release(m[r.cfg.Topics.Commands], -1) }),
	}, r.cfg.ClientOpts...)...); err != nil {
		return fmt.Errorf("aggregate %s: %w", r.def.Name, err)
	}
	// With BlockRebalanceOnPoll, leaving the group waits for AllowRebalance.
	defer r.consumer.CloseAllowingRebalance()
	r.log.Info("aggregator started", "group", r.cfg.Group, "commands", r.cfg.Topics.Commands)
	defer func() {
		r.release(r.owned(), r.cfg.ShutdownDrain)
		if err == nil {
			err = r.fatalErr()
		}
		if err == nil {
			r.reportPositions(context.WithoutCancel(ctx), true)
		}
	}()
	lastReport := time.Now()
	for {
		r.applySeeks()
		// While checkpoints wait to be reported, the poll ends in time to
		// report them, even when no command comes.
		pollCtx, cancel := context.WithCancel(ctx)
		r.mu.Lock()
		if len(r.committed) > 0 {
			cancel()
			pollCtx, cancel = context.WithDeadline(ctx, lastReport.Add(time.Second))
		}
		r.wake = cancel
		r.mu.Unlock()
		fetches := r.consumer.PollRecords(pollCtx, r.cfg.MaxPollRecords)
		r.mu.Lock()
		r.wake = nil
		r.mu.Unlock()
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			r.log.Info("aggregator stopping")
			return nil
		}
		if err := r.fatalErr(); err != nil {
			r.log.Error("a partition's transactional producer is fenced or failed for good; stopping so that a restart rejoins the group", "err", err)
			return fmt.Errorf("aggregate %s: %w", r.def.Name, err)
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		lag.Observe(r.cfg.Group, fetches)
		r.dispatch(fetches)
		if time.Since(lastReport) >= time.Second {
			r.reportPositions(ctx, false)
			lastReport = time.Now()
		}
		r.consumer.AllowRebalance()
	}
}

// assigned starts a worker for each partition newly assigned, its fetching
// paused until the worker has restored the partition (applySeeks).
func (r *Runtime[S]) assigned(cl *kgo.Client, ps []int32) {
	if len(ps) == 0 {
		return
	}
	cl.PauseFetchPartitions(map[string][]int32{r.cfg.Topics.Commands: ps})
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		if _, ok := r.workers[p]; !ok {
			r.workers[p] = startPartition(r, p)
		}
	}
}

// release stops the workers of partitions revoked or lost, each letting its
// batch in hand commit for up to drain (negative: aborting it at once).
func (r *Runtime[S]) release(ps []int32, drain time.Duration) {
	var stopping []*partition[S]
	r.mu.Lock()
	for _, p := range ps {
		if w, ok := r.workers[p]; ok {
			stopping = append(stopping, w)
			delete(r.workers, p)
			delete(r.seeks, p)
			delete(r.resumes, p)
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range stopping {
		wg.Go(func() { w.stop(drain) })
	}
	wg.Wait()
}

// owned lists the partitions that have a worker.
func (r *Runtime[S]) owned() []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int32, 0, len(r.workers))
	for p := range r.workers {
		out = append(out, p)
	}
	return out
}

// restored is a worker's report that partition p is restored: fetching
// resumes at next, the checkpoint (-1: where the group left off).
func (r *Runtime[S]) restored(p int32, next int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seeks[p] = next
	r.wakeLocked()
}

// caughtUp is a worker's report that partition p, paused for backpressure,
// may be fetched again.
func (r *Runtime[S]) caughtUp(p int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resumes[p] = true
	r.wakeLocked()
}

// failed records a worker's unrecoverable error: Run returns it.
func (r *Runtime[S]) failed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fatal == nil {
		r.fatal = err
	}
	r.wakeLocked()
}

func (r *Runtime[S]) fatalErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fatal
}

func (r *Runtime[S]) wakeLocked() {
	if r.wake != nil {
		r.wake()
	}
}

// applySeeks moves the consumer of each restored partition to its
// checkpoint and resumes fetching it, and resumes partitions whose workers
// caught up. It runs on the polling goroutine between polls, when no
// revocation can run.
func (r *Runtime[S]) applySeeks() {
	r.mu.Lock()
	seeks, resumes := r.seeks, r.resumes
	r.seeks, r.resumes = map[int32]int64{}, map[int32]bool{}
	r.mu.Unlock()
	if len(seeks) == 0 && len(resumes) == 0 {
		return
	}
	at := map[int32]kgo.EpochOffset{}
	var resume []int32
	for p, next := range seeks {
		if next >= 0 {
			at[p] = kgo.EpochOffset{Epoch: -1, Offset: next}
		}
		resume = append(resume, p)
	}
	for p := range resumes {
		resume = append(resume, p)
	}
	if len(at) > 0 {
		r.consumer.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.cfg.Topics.Commands: at})
	}
	r.consumer.ResumeFetchPartitions(map[string][]int32{r.cfg.Topics.Commands: resume})
}

// dispatch hands each partition's records to its worker, and pauses the
// partitions whose workers are too far behind.
func (r *Runtime[S]) dispatch(fetches kgo.Fetches) {
	var behind []int32
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Topic != r.cfg.Topics.Commands || len(fp.Records) == 0 {
			return
		}
		r.mu.Lock()
		w := r.workers[fp.Partition]
		r.mu.Unlock()
		if w != nil && w.offer(fp.Records, 4*r.cfg.MaxPollRecords) {
			behind = append(behind, fp.Partition)
		}
	})
	if len(behind) > 0 {
		r.consumer.PauseFetchPartitions(map[string][]int32{r.cfg.Topics.Commands: behind})
	}
}

// reportPositions commits each partition's checkpoint to the group, so that
// lag shows in the usual tools. Nothing reads it back but a deployment
// whose partitions have no checkpoint yet.
func (r *Runtime[S]) reportPositions(ctx context.Context, wait bool) {
	r.mu.Lock()
	at := make(map[int32]kgo.EpochOffset, len(r.committed))
	for p, next := range r.committed {
		at[p] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	clear(r.committed)
	r.mu.Unlock()
	if len(at) == 0 {
		return
	}
	done := make(chan struct{})
	r.consumer.CommitOffsets(ctx, map[string]map[int32]kgo.EpochOffset{r.cfg.Topics.Commands: at}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		defer close(done)
		if err != nil {
			r.log.Debug("reporting positions to the group failed", "err", err)
		}
	})
	if wait {
		<-done
	}
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

// producerFailed reports whether err is the broker's definitive answer that
// the transactional producer cannot go on: a non-retriable Kafka error such
// as PRODUCER_FENCED or INVALID_PRODUCER_EPOCH.
func producerFailed(err error) bool {
	var ke *kerr.Error
	return errors.As(err, &ke) && !ke.Retriable && ke.Code != kerr.UnknownServerError.Code
}

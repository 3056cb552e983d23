package aggregate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/tracing"
)

// partition is the owner's work on one commands partition: a goroutine with
// a transactional producer of its own, the state of the partition's
// aggregates and the commands handed to it and not yet decided.
//
// Its life: initialize the partition's transactional ID (fencing the
// previous owner and aborting its open transaction), restore the state and
// the checkpoint, report the checkpoint so that the consumer fetches from it,
// then decide the commands handed to it in transactions of up to
// MaxPollRecords, each taking every command waiting when it begins. It ends
// when stopped, or when its producer is fenced (Runtime.failed).
type partition[S any] struct {
	r        *Runtime[S]
	id       int32
	log      *slog.Logger
	producer *kgo.Client

	// state and next belong to the worker's goroutine: the aggregates'
	// committed entries and the offset of the next command to decide (-1
	// until the first command when the partition has no checkpoint yet).
	state map[string]entry[S]
	next  int64

	mu       sync.Mutex
	queue    []*kgo.Record // handed over, not yet taken into a transaction
	restored bool          // commands are taken from now on
	paused   bool          // the consumer paused the partition: too much waits
	stopping bool
	signal   chan struct{} // capacity 1: commands queued, or stop

	cancel context.CancelFunc // aborts the work in hand
	done   chan struct{}
}

// startPartition starts the worker of commands partition p.
func startPartition[S any](r *Runtime[S], p int32) *partition[S] {
	ctx, cancel := context.WithCancel(context.Background())
	w := &partition[S]{
		r: r, id: p, log: r.log.With("partition", p), next: -1,
		signal: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}),
	}
	go w.run(ctx) // owned by w: ends when stopped (stop waits for it)
	return w
}

// offer queues records fetched for the partition; it reports whether the
// queue is now longer than limit, so that fetching should pause.
func (w *partition[S]) offer(records []*kgo.Record, limit int) (full bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.restored || w.stopping {
		return false // fetched before the seek to the checkpoint: fetched again after it
	}
	w.queue = append(w.queue, records...)
	w.notify()
	if len(w.queue) > limit {
		w.paused = true
	}
	return w.paused
}

func (w *partition[S]) notify() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// take removes up to max queued commands.
func (w *partition[S]) take(max int) []*kgo.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(len(w.queue), max)
	batch := w.queue[:n:n]
	w.queue = w.queue[n:]
	if w.paused && len(w.queue) < max {
		w.paused = false
		w.r.caughtUp(w.id)
	}
	return batch
}

// stop ends the worker: the transaction in hand may commit for up to drain
// (negative: it is aborted at once, as a crash would), the commands waiting
// are left to the next owner. It waits for the worker to end.
func (w *partition[S]) stop(drain time.Duration) {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	w.notify()
	if drain < 0 {
		w.cancel()
	} else {
		t := time.AfterFunc(drain, w.cancel)
		defer t.Stop()
	}
	<-w.done
}

func (w *partition[S]) isStopping() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

func (w *partition[S]) run(ctx context.Context) {
	defer close(w.done)
	defer w.cancel()
	if err := w.open(ctx); err != nil {
		if ctx.Err() == nil && !w.isStopping() {
			w.r.failed(err)
		}
		return
	}
	defer w.producer.Close()
	var retry []*kgo.Record // commands of a batch that did not commit
	for {
		if len(retry) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.signal:
			}
		}
		release, ok := w.r.acquireSlot(ctx)
		if !ok || w.isStopping() {
			release()
			return
		}
		batch := append(retry, w.take(w.r.cfg.MaxPollRecords-len(retry))...)
		retry = nil
		if len(batch) == 0 {
			release()
			continue
		}
		err := w.transact(ctx, batch)
		release()
		switch {
		case err == nil:
			continue
		case errors.Is(err, ErrProducerFenced):
			w.log.Error("transactional producer fenced or failed for good", "commands", len(batch), "err", err)
			w.r.failed(err)
			return
		case ctx.Err() != nil:
			return
		}
		w.log.Warn("batch not committed; its commands will be decided again", "commands", len(batch), "err", err)
		if err := w.recover(ctx); err != nil {
			if ctx.Err() == nil {
				w.r.failed(err)
			}
			return
		}
		retry = w.undecided(batch)
	}
}

// acquireSlot waits for a transaction slot (Config.TransactionSlots), at
// most SlotWait; past it the transaction goes ahead without one. It returns
// the slot's release (a no-op without one), and false when ctx ended.
func (r *Runtime[S]) acquireSlot(ctx context.Context) (release func(), ok bool) {
	noop := func() {}
	if r.slots == nil {
		return noop, true
	}
	held := func() { <-r.slots }
	select {
	case r.slots <- struct{}{}:
		return held, true
	default:
	}
	t := time.NewTimer(r.cfg.SlotWait)
	defer t.Stop()
	select {
	case r.slots <- struct{}{}:
		return held, true
	case <-t.C:
		return noop, true
	case <-ctx.Done():
		return noop, false
	}
}

// open creates the partition's transactional producer and initializes its
// transactional ID — which fences the previous owner and aborts its open
// transaction — then restores the partition and reports its checkpoint.
func (w *partition[S]) open(ctx context.Context) error {
	r := w.r
	var err error
	w.producer, err = kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(r.cfg.Brokers...),
		kgo.TransactionalID(TransactionalID(r.cfg.Group, w.id)),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
		// A transaction begun right after the last one committed finds the
		// coordinator still writing that one's markers and is told
		// CONCURRENT_TRANSACTIONS; franz-go's default 20 ms backoff then
		// adds 20 ms to nearly every transaction of a busy partition.
		kgo.ConcurrentTransactionsBackoff(2 * time.Millisecond),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(snapshotsPartitioner{snapshots: r.cfg.Topics.Snapshots, others: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}),
	}, r.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("partition %d: producer: %w", w.id, err)
	}
	for attempt := 0; ; attempt++ {
		_, _, err := w.producer.ProducerID(ctx)
		if err == nil {
			break
		}
		if producerFailed(err) {
			w.producer.Close()
			return fmt.Errorf("%w: partition %d: %w", ErrProducerFenced, w.id, err)
		}
		w.log.Warn("initializing the partition's transactional ID failed; retrying", "attempt", attempt+1, "err", err)
		if !sleep(ctx, backoff(attempt)) {
			w.producer.Close()
			return ctx.Err()
		}
	}
	if err := w.restore(ctx); err != nil {
		w.producer.Close()
		return err
	}
	w.mu.Lock()
	w.restored = true
	w.mu.Unlock()
	r.restored(w.id, w.next)
	return nil
}

// restore reads the partition's state and checkpoint, retrying until it
// succeeds or ctx ends: without them no command can be decided.
func (w *partition[S]) restore(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		state, next, err := w.r.loadPartition(ctx, w.id)
		if err == nil {
			w.state, w.next = state, next
			return nil
		}
		w.log.Error("restoring the partition failed; retrying", "attempt", attempt+1, "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// recover brings the partition back after a batch whose outcome is unknown
// (an End that failed: the broker may have committed it): it ends the
// transaction left open, then reads state and checkpoint again, which hold
// the batch if it committed.
func (w *partition[S]) recover(ctx context.Context) error {
	if err := w.endOpen(ctx); err != nil {
		return err
	}
	return w.restore(ctx)
}

// undecided keeps the commands of batch at or after the checkpoint.
func (w *partition[S]) undecided(batch []*kgo.Record) []*kgo.Record {
	out := batch[:0]
	for _, rec := range batch {
		if w.next < 0 || rec.Offset >= w.next {
			out = append(out, rec)
		}
	}
	return out
}

// transact decides records in one transaction. The state changes only when
// the transaction commits.
func (w *partition[S]) transact(ctx context.Context, records []*kgo.Record) (err error) {
	r := w.r
	// Commands before the checkpoint were decided already (fetched again
	// after a seek, or before the consumer moved to the checkpoint).
	if records = w.undecided(records); len(records) == 0 {
		return nil
	}
	began, outcomes := time.Now(), map[string]int{}
	defer func() { observeTransaction(r.def.Name, began, err == nil, outcomes) }()
	if err := w.producer.BeginTransaction(); err != nil {
		// A transaction left open by a failed End blocks every Begin: end
		// it, then begin. A Begin that still fails has a producer ID that
		// franz-go could not recover.
		if err := w.endOpen(ctx); err != nil {
			return err
		}
		if err := w.producer.BeginTransaction(); err != nil {
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
		w.producer.Produce(ctx, rec, func(_ *kgo.Record, err error) {
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
		outcome := r.decideOne(cmdCtx, rec, w.state, pending, produce, reply)
		span.SetAttributes(tracing.AttrOutcome.String(outcome))
		if outcome == outcomeDeadLettered {
			span.SetStatus(codes.Error, "command dead-lettered")
		}
		outcomes[outcome]++
	}
	// One state record per changed aggregate and batch (the topic is
	// compacted: only the last counts), not one per command, one record per
	// command remembered or forgotten (memory.go), and the checkpoint.
	cutoff := time.Now().Add(-r.cfg.IdempotencyWindow)
	for stream, e := range pending {
		e.pruneOlderThan(cutoff)
		for _, rec := range r.snapshotRecords(stream, e) {
			produce(rec)
		}
	}
	next := records[len(records)-1].Offset + 1
	produce(checkpointRecord(r.cfg.Topics.Snapshots, w.id, next))
	// Await every produce before End (franz-go #729).
	if err := w.producer.Flush(ctx); err != nil {
		produceErr = errors.Join(produceErr, err)
	}
	try := kgo.TryCommit
	if produceErr != nil {
		try = kgo.TryAbort
	}
	if err := w.producer.EndTransaction(ctx, try); err != nil {
		if producerFailed(err) {
			return fmt.Errorf("%w: %w", ErrProducerFenced, err)
		}
		// The outcome is unknown: the broker may have committed (an EndTxn
		// carried out whose answer was lost). The caller reads the state
		// and checkpoint again (recover): if the batch committed, its
		// commands are behind the checkpoint and not decided again.
		return errors.Join(produceErr, fmt.Errorf("ending the transaction: %w", err))
	}
	if try == kgo.TryAbort {
		return errors.Join(produceErr, errors.New("transaction aborted"))
	}
	for stream, e := range pending {
		w.state[stream] = e.committed()
	}
	w.next = next
	w.r.mu.Lock()
	w.r.committed[w.id] = next
	w.r.mu.Unlock()
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
	value, _ := json.Marshal(stateRecord{Version: e.version, State: e.stateJSON, Forgotten: e.forgotten, ForgottenAt: slices.Sorted(maps.Keys(e.forgottenAt))}) // raw JSON, strings and scalars: cannot fail
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

// endOpen aborts a transaction that a failed End may have left open: End
// returns early, without ending the transaction, when its context ends while
// it flushes (the broker was away longer than the batch's bound). Without
// this every later Begin fails and the partition stalls for good — as the
// chaos suite's broker restart showed. It retries until the abort goes
// through or ctx ends, and returns an error wrapping ErrProducerFenced at
// once when the broker's answer says the producer is fenced or otherwise
// failed for good (retrying that would stall the partition for good too).
func (w *partition[S]) endOpen(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		abortCtx, cancel := context.WithTimeout(ctx, w.r.cfg.TransactionTimeout)
		err := w.producer.AbortBufferedRecords(abortCtx)
		if err == nil {
			err = w.producer.EndTransaction(abortCtx, kgo.TryAbort)
		}
		cancel()
		if err == nil {
			return nil
		}
		if producerFailed(err) {
			return fmt.Errorf("%w: %w", ErrProducerFenced, err)
		}
		w.log.Warn("aborting the open transaction failed; retrying", "attempt", attempt+1, "err", err)
		if !sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// backoff is the wait before retry attempt+1: 200 ms more each time, at most 2 s.
func backoff(attempt int) time.Duration {
	return min(time.Duration(attempt+1)*200*time.Millisecond, 2*time.Second)
}

// sleep waits for d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

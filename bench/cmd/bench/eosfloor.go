package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/answerback/answerback/libs/domain/catalog"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// The exactly-once floor's names: an Answerback domain's topics (commands,
// events, compacted snapshots…) named "eos", and one reply topic.
const (
	nameEOSFloor         = "exactly-once floor"
	nameEOSFloorEmbedded = "exactly-once floor, embedded (kfake)"
	eosReplies           = "eos.replies"
	eosPartitions        = 6
)

var eosTopics = topics.For("", "eos")

// startEOSFloor serves the same API as Answerback with the same guarantees
// and nothing more, built directly on franz-go and pgx in the bench process,
// on the run's broker and PostgreSQL (database eosfloor):
//
//  1. The HTTP handler produces the command (key: the aggregate) and waits,
//     10 s at most, for the reply with its command ID.
//  2. The aggregate (a kgo.GroupTransactSession) decides each poll with the
//     domain code on state held in memory for the session's lifetime, and
//     produces the events, one snapshot per changed aggregate, the
//     rejections (as replies) and the consumed offsets in one Kafka
//     transaction.
//  3. The projector reads the events read_committed from the offsets it
//     stored in PostgreSQL and applies each poll to the view with the next
//     offsets in one PostgreSQL transaction, deriving each command's reply in
//     it right after the command's last event; the replies go out once it
//     committed.
//  4. The reply consumer hands each reply to the request waiting for it.
//
// Not reproduced: state restored from the snapshots after a rebalance or an
// End whose outcome is unknown (the floor owns every partition for its
// lifetime), the gateway's refusal of unknown SKUs (the bench sends known
// ones), idempotency keys, dead letters, tracing, metrics.
func startEOSFloor(ctx context.Context, e *env, log *slog.Logger) (*system, error) {
	pool, err := e.pool(ctx, "eosfloor", 32) // as the gateway's pool
	if err != nil {
		return nil, err
	}
	sys, err := runEOSFloor(ctx, nameEOSFloor, e.brokers, pool, log)
	return closingPool(sys, err, pool)
}

// startEOSFloorEmbedded is startEOSFloor on a kfake cluster of its own, as
// the embedded default's (one broker, its data on disk), and database
// eosfloor_embedded; the system counts the broker's requests.
func startEOSFloorEmbedded(ctx context.Context, e *env, log *slog.Logger) (*system, error) {
	pool, err := e.pool(ctx, "eosfloor_embedded", 32)
	if err != nil {
		return nil, err
	}
	sys, err := startEOSFloorOnKfake(ctx, pool, filepath.Join(e.dir, "eosfloor-kafka"), log)
	return closingPool(sys, err, pool)
}

// closingPool makes sys's stop close pool as well; pool is closed at once
// when err says that sys did not start.
func closingPool(sys *system, err error, pool *pgxpool.Pool) (*system, error) {
	if err != nil {
		pool.Close()
		return nil, err
	}
	stop := sys.stop
	sys.stop = func() { stop(); pool.Close() }
	return sys, nil
}

// startEOSFloorOnKfake runs the floor on pool and a new kfake cluster keeping
// its data in dataDir; stopping the system stops the cluster, not the pool.
func startEOSFloorOnKfake(ctx context.Context, pool *pgxpool.Pool, dataDir string, log *slog.Logger) (*system, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(dataDir), kfake.DefaultNumPartitions(eosPartitions))
	if err != nil {
		return nil, fmt.Errorf("embedded Kafka (kfake): %w", err)
	}
	var mu sync.Mutex
	requests := map[string]float64{} // by API name
	cluster.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		mu.Lock()
		requests[kmsg.NameForKey(req.Key())]++
		mu.Unlock()
		return nil, nil, false // not handled: the cluster serves it as usual
	})
	sys, err := runEOSFloor(ctx, nameEOSFloorEmbedded, cluster.ListenAddrs(), pool, log)
	if err != nil {
		cluster.Close()
		return nil, err
	}
	stop := sys.stop
	sys.stop = func() { stop(); cluster.Close() }
	sys.brokerRequests = func(context.Context) (map[string]float64, error) {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(requests), nil
	}
	return sys, nil
}

// eosFloor is one running floor.
type eosFloor struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	domains  map[string]*wmDomain // the domain code, by domain name (the command type's prefix)
	producer *kgo.Client          // the HTTP side's: commands
	mu       sync.Mutex
	waiters  map[string]chan envelope.Reply // by command ID
	// state is the aggregate's, by domain and record key: the last
	// committed version and state of each aggregate. Only the aggregate's
	// goroutine touches it.
	state map[string]eosAggregate
}

type eosAggregate struct {
	version int64
	state   []byte // JSON
}

// runEOSFloor starts the floor on brokers and pool (whose database gets the
// view and eos_offsets) and seeds the bench's catalog through it; its stop
// ends every goroutine and client it started, not the pool.
func runEOSFloor(ctx context.Context, name string, brokers []string, pool *pgxpool.Pool, log *slog.Logger) (*system, error) {
	if err := view.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE eos_offsets (topic text, partition int, next_offset bigint NOT NULL, PRIMARY KEY (topic, partition))`); err != nil {
		return nil, err
	}
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	if _, err := topics.Ensure(ctx, kadm.NewClient(producer), eosTopics, eosPartitions, -1); err != nil {
		producer.Close()
		return nil, err
	}
	if err := createTopics(ctx, brokers, eosPartitions, eosReplies); err != nil {
		producer.Close()
		return nil, err
	}
	ds := wmDomains()
	f := &eosFloor{pool: pool, log: log.With("system", name), producer: producer, waiters: map[string]chan envelope.Reply{},
		domains: map[string]*wmDomain{orders.Name: ds["orderCommand"], catalog.Name: ds["catalogCommand"]}, state: map[string]eosAggregate{}}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	stopAll := func() {
		cancel()
		wg.Wait()
		producer.Close()
	}
	// loop hands each poll to handle until the floor stops, then closes the client.
	loop := func(role string, poll func(context.Context) kgo.Fetches, handle func(context.Context, kgo.Fetches) error, closeClient func()) {
		wg.Add(1)
		go func() { // ends when runCtx does
			defer wg.Done()
			defer closeClient()
			for {
				fetches := poll(runCtx)
				if runCtx.Err() != nil {
					return
				}
				fetches.EachError(func(topic string, p int32, err error) {
					f.log.Warn("fetch failed", "role", role, "topic", topic, "partition", p, "err", err)
				})
				if err := handle(runCtx, fetches); err != nil && runCtx.Err() == nil {
					f.log.Warn("batch failed", "role", role, "err", err)
				}
			}
		}()
	}
	consumerOpts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0), kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())} // topics of its own: nothing before
	sess, err := kgo.NewGroupTransactSession(append(consumerOpts, kgo.ConsumerGroup("eosfloor.aggregate"), kgo.ConsumeTopics(eosTopics.Commands),
		kgo.TransactionalID("eosfloor.aggregate"), kgo.TransactionTimeout(10*time.Second), kgo.ConcurrentTransactionsBackoff(2*time.Millisecond))...)
	if err != nil {
		stopAll()
		return nil, err
	}
	loop("aggregate", sess.PollFetches, func(ctx context.Context, fs kgo.Fetches) error { return f.decideBatch(ctx, sess, fs) }, sess.Close)
	offsets, err := f.storedOffsets(ctx)
	var projector, replies *kgo.Client
	if err == nil {
		projector, err = kgo.NewClient(append(consumerOpts, kgo.ConsumePartitions(offsets))...)
	}
	if err == nil {
		loop("projector", projector.PollFetches, func(ctx context.Context, fs kgo.Fetches) error { return f.projectBatch(ctx, projector, fs) }, projector.Close)
		replies, err = kgo.NewClient(append(consumerOpts, kgo.ConsumeTopics(eosReplies))...)
	}
	if err != nil {
		stopAll()
		return nil, err
	}
	loop("replies", replies.PollFetches, f.deliverBatch, replies.Close)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", f.handle(orders.CommandCreate, http.StatusCreated))
	mux.HandleFunc("POST /v1/orders/{id}/items", f.handle(orders.CommandAddItem, http.StatusOK))
	mux.HandleFunc("PUT /v1/catalog/{id}", f.handle(catalog.CommandUpsert, http.StatusOK))
	url, shutdown, err := serveLocal(mux)
	if err != nil {
		stopAll()
		return nil, err
	}
	sys := &system{name: name, url: url, createOrder: createOrderAt(url, ""), stop: func() { shutdown(); stopAll() }}
	// The aggregate's group joins in the background: seeding waits for it.
	if err := seedCatalog(ctx, url, ""); err != nil {
		sys.stop()
		return nil, fmt.Errorf("seeding the %s's catalog: %w", name, err)
	}
	f.log.Info("exactly-once floor up", "url", url)
	return sys, nil
}

// handle sends a commandType command for the aggregate the path names (a
// new order: the body's "id") and answers with its reply: okStatus and the
// reply derived from the view, or 422 and the problem when the aggregate
// refused the command.
func (f *eosFloor) handle(commandType string, okStatus int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		aggregate := struct{ ID string }{ID: r.PathValue("id")}
		if aggregate.ID == "" {
			_ = json.Unmarshal(body, &aggregate)
		}
		cmd := envelope.Command{Meta: envelope.Meta{CommandID: uuid.NewString(), AggregateID: aggregate.ID, Tenant: benchTenant,
			ReplyTo: eosReplies, Deadline: time.Now().Add(wmReplyWait), ExpectedVersion: envelope.NoVersion}, Type: commandType, Data: body}
		done := make(chan envelope.Reply, 1)
		f.mu.Lock()
		f.waiters[cmd.CommandID] = done
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.waiters, cmd.CommandID)
			f.mu.Unlock()
		}()
		if err := f.producer.ProduceSync(r.Context(), envelope.EncodeCommand(eosTopics.Commands, cmd)).FirstErr(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		select {
		case reply := <-done:
			status := okStatus
			if reply.Outcome == envelope.Rejected {
				status = http.StatusUnprocessableEntity
			}
			writeJSONStatus(w, status, reply.Body)
		case <-time.After(wmReplyWait):
			http.Error(w, "no reply", http.StatusGatewayTimeout)
		case <-r.Context().Done():
		}
	}
}

// decideBatch decides one poll's commands in one Kafka transaction: their
// events, their rejections (replies), one snapshot per changed aggregate and
// the consumed offsets commit together or not at all. The state in memory
// takes the batch in only once it committed; an aborted batch comes again.
func (f *eosFloor) decideBatch(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) error {
	if fetches.NumRecords() == 0 {
		return nil
	}
	if err := sess.Begin(); err != nil {
		// A failed End may have left its transaction open: abort it (which
		// rewinds to the committed offsets: these commands come again).
		_, abortErr := sess.End(ctx, kgo.TryAbort)
		return errors.Join(fmt.Errorf("begin: %w", err), abortErr)
	}
	now := time.Now().UTC()
	changed := map[string]eosAggregate{}
	var out []*kgo.Record
	fetches.EachRecord(func(r *kgo.Record) {
		cmd, err := envelope.DecodeCommand(r)
		domain, _, _ := strings.Cut(cmd.Type, ".")
		d := f.domains[domain]
		if err != nil || d == nil {
			f.log.Warn("command dropped", "partition", r.Partition, "offset", r.Offset, "type", cmd.Type, "err", err)
			return
		}
		key := domain + "/" + string(r.Key)
		agg, ok := changed[key]
		if !ok {
			agg = f.state[key]
		}
		evs, reject, state, err := d.decide(agg.state, agg.version, cmd, now)
		var problem json.RawMessage
		switch {
		case err != nil: // deciding again would fail again: refuse it
			f.log.Warn("command refused", "command", cmd.CommandID, "err", err)
			problem = problemBody(cmd, "internal")
		case reject != nil:
			reject.CommandID = cmd.CommandID
			problem, _ = json.Marshal(reject)
		}
		if problem != nil {
			if cmd.WantsReply(now) {
				out = append(out, envelope.EncodeReply(eosReplies, envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Rejected, Version: agg.version, Body: problem}))
			}
			return
		}
		changed[key] = eosAggregate{version: evs[len(evs)-1].Version, state: state}
		for _, ev := range evs {
			out = append(out, envelope.EncodeEvent(eosTopics.Events, domain, ev))
		}
	})
	for key, agg := range changed {
		out = append(out, &kgo.Record{Topic: eosTopics.Snapshots, Key: []byte(key), Value: agg.state,
			Headers: []kgo.RecordHeader{{Key: envelope.HVersion, Value: []byte(strconv.FormatInt(agg.version, 10))}}})
	}
	end := kgo.TryCommit
	produceErr := sess.ProduceSync(ctx, out...).FirstErr()
	if produceErr != nil {
		end = kgo.TryAbort
	}
	committed, err := sess.End(ctx, end)
	if err != nil || !committed {
		return errors.Join(produceErr, err, fmt.Errorf("transaction of %d commands not committed", fetches.NumRecords()))
	}
	maps.Copy(f.state, changed)
	return nil
}

// storedOffsets returns where the projector resumes: the next offset of each
// events partition as its last committed batch stored it, else the start.
func (f *eosFloor) storedOffsets(ctx context.Context) (map[string]map[int32]kgo.Offset, error) {
	next := map[int32]kgo.Offset{}
	for p := range int32(eosPartitions) {
		next[p] = kgo.NewOffset().AtStart()
	}
	rows, err := f.pool.Query(ctx, `SELECT partition, next_offset FROM eos_offsets WHERE topic = $1`, eosTopics.Events)
	if err != nil {
		return nil, err
	}
	var (
		p      int32
		offset int64
	)
	_, err = pgx.ForEachRow(rows, []any{&p, &offset}, func() error {
		next[p] = kgo.NewOffset().At(offset)
		return nil
	})
	return map[string]map[int32]kgo.Offset{eosTopics.Events: next}, err
}

// projectBatch projects one poll's events until that commits (or the floor
// stops), then produces their replies: what the view shows and the offsets
// past those events are committed together or not at all.
func (f *eosFloor) projectBatch(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) error {
	if fetches.NumRecords() == 0 {
		return nil
	}
	for {
		replies, err := f.project(ctx, fetches)
		if err == nil {
			for _, reply := range replies {
				cl.Produce(ctx, reply, func(r *kgo.Record, err error) {
					if err != nil {
						f.log.Warn("reply not sent", "command", string(r.Key), "err", err)
					}
				})
			}
			return nil
		}
		f.log.Warn("projection failed; trying again", "events", fetches.NumRecords(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// project applies fetches to the view and stores the offsets past them in
// one PostgreSQL transaction, and returns the replies derived in it.
func (f *eosFloor) project(ctx context.Context, fetches kgo.Fetches) ([]*kgo.Record, error) {
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var replies []*kgo.Record
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		for _, r := range p.Records {
			if err == nil {
				replies, err = f.applyOne(ctx, tx, r, replies)
			}
		}
		if err == nil && len(p.Records) > 0 {
			_, err = tx.Exec(ctx, `INSERT INTO eos_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
				ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset`, p.Topic, p.Partition, p.Records[len(p.Records)-1].Offset+1)
		}
	})
	if err != nil {
		return nil, err
	}
	return replies, tx.Commit(ctx)
}

// applyOne applies the event r to the view in tx and, when it completes a
// command somebody still waits for, appends the command's reply to replies.
// An event the view can never take is skipped.
func (f *eosFloor) applyOne(ctx context.Context, tx pgx.Tx, r *kgo.Record, replies []*kgo.Record) ([]*kgo.Record, error) {
	skip := func(err error) ([]*kgo.Record, error) {
		f.log.Warn("event skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
		return replies, nil
	}
	ev, err := envelope.DecodeEvent(r)
	if err != nil {
		return skip(err)
	}
	source, _ := envelope.Header(r, envelope.CESource)
	d := f.domains[source]
	if d == nil {
		return skip(fmt.Errorf("%w: source %q", view.ErrUnknownEvent, source))
	}
	if err := d.apply(ctx, tx, ev); err != nil {
		if errors.Is(err, view.ErrUnknownEvent) || errors.Is(err, view.ErrBadEvent) || errors.Is(err, view.ErrNotFound) {
			return skip(err)
		}
		return replies, err
	}
	if !ev.LastOfCommand() || !ev.WantsReply(time.Now()) {
		return replies, nil
	}
	body, err := d.reply(ctx, tx, ev.Tenant, ev.CommandID, ev.AggregateID)
	if err != nil {
		return replies, err
	}
	return append(replies, envelope.EncodeReply(eosReplies, envelope.Reply{CommandID: ev.CommandID, Outcome: envelope.Applied, Version: ev.Version, Body: body})), nil
}

// deliverBatch hands each reply to the request waiting for it, if any.
func (f *eosFloor) deliverBatch(_ context.Context, fetches kgo.Fetches) error {
	fetches.EachRecord(func(r *kgo.Record) {
		reply, err := envelope.DecodeReply(r)
		if err != nil {
			f.log.Warn("reply dropped", "offset", r.Offset, "err", err)
			return
		}
		f.mu.Lock()
		if done, ok := f.waiters[reply.CommandID]; ok {
			select {
			case done <- reply:
			default: // answered already
			}
		}
		f.mu.Unlock()
	})
	return nil
}

package aggregate

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

// counter is the smallest aggregate: "inc" adds one.
type counter struct{ N int }

var counterDef = Definition[counter]{
	Name:         "counters",
	CommandTypes: []string{"inc"},
	Decide: func(_ *counter, _ int64, _ envelope.Command) Decision {
		return Emit(NewEvent{Type: "incremented", Data: struct{}{}})
	},
	Evolve: func(s *counter, _ envelope.Event) (*counter, error) {
		n := 1
		if s != nil {
			n = s.N + 1
		}
		return &counter{N: n}, nil
	},
}

// TestRememberedCommandsSurviveRestore runs the runtime on kfake: a restarted
// instance restores the state and exactly the commands remembered (the
// newest MaxRemembered), a retry of one of them emits nothing, and each
// batch writes records whose size does not grow with the commands
// remembered — the state record stays small, a command is a record of its
// own, and a command forgotten leaves a tombstone.
func TestRememberedCommandsSurviveRestore(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "counters.commands", "counters.events", "counters.snapshots", "counters.outcomes", "counters.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	seeds := cluster.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	names := topics.For("", "counters")
	const remember = 3
	run := func(instance string) (stop func()) {
		rt, err := New(counterDef, Config{Brokers: seeds, Topics: names, InstanceID: instance, MaxRemembered: remember,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rt.Run(runCtx) }() // ended by stop
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("runtime %s: %v", instance, err)
			}
		}
	}
	producer, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	send := func(commandID, idempotencyKey string) {
		t.Helper()
		rec := envelope.EncodeCommand(names.Commands, envelope.Command{
			Meta: envelope.Meta{CommandID: commandID, AggregateID: "c-1", Tenant: "t", IdempotencyKey: idempotencyKey, ExpectedVersion: envelope.NoVersion},
			Type: "inc", Data: json.RawMessage(`{}`),
		})
		if err := producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	stream := envelope.StreamKey("t", "c-1")

	stop := run("a")
	for i := range 10 {
		send(fmt.Sprint("cmd-", i), fmt.Sprint("k", i))
	}
	waitEvents(ctx, t, seeds, names.Events, 10)
	stop()

	// What the snapshots partition holds: the state records are small, and
	// remembered commands come and go as records of their own.
	var stateSizes []int
	latest := map[string]bool{} // dedupe key → its last record is a put (true) or a tombstone
	for _, rec := range readAll(ctx, t, seeds, names.Snapshots) {
		s, dedupe, isCommand, err := parseRememberedKey(rec.Key)
		switch {
		case err != nil:
			t.Fatalf("snapshot key %q: %v", rec.Key, err)
		case !isCommand:
			stateSizes = append(stateSizes, len(rec.Value))
		case s != stream:
			t.Errorf("remembered command of stream %q, want %q", s, stream)
		default:
			latest[dedupe] = rec.Value != nil
		}
	}
	for i := range 10 {
		k := fmt.Sprint("k", i)
		if kept, ok := latest[k]; i >= 10-remember && (!ok || !kept) {
			t.Errorf("%s: no record that keeps it remembered", k)
		} else if i < 10-remember && kept {
			t.Errorf("%s: still remembered past the limit of %d, want a tombstone", k, remember)
		}
	}
	for _, n := range stateSizes {
		if n > 200 {
			t.Errorf("a state record of %d bytes: it must not carry the remembered commands", n)
		}
	}
	// What a new owner restores from them.
	rt, err := New(counterDef, Config{Brokers: seeds, Topics: names, InstanceID: "probe", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	restored, next, err := rt.loadPartition(ctx, partitionOf(ctx, t, seeds, names.Snapshots, stream))
	if err != nil {
		t.Fatal(err)
	}
	if next < 10 {
		t.Errorf("restored checkpoint %d, want past the 10 commands decided", next)
	}
	if e := restored[stream]; e.version != 10 || e.state == nil || e.state.N != 10 || len(e.keys) != remember {
		t.Errorf("restored version %d, state %+v, %d commands; want version 10, N 10, %d commands", e.version, e.state, len(e.keys), remember)
	}

	// A new owner restores the partition: the retry of the newest command is
	// a duplicate (no event), a new command takes version 11.
	stop = run("b")
	defer stop()
	send("cmd-9-retry", "k9")
	send("cmd-10", "k10")
	events := waitEvents(ctx, t, seeds, names.Events, 11)
	last, err := envelope.DecodeEvent(events[len(events)-1])
	if err != nil {
		t.Fatal(err)
	}
	if last.CommandID != "cmd-10" || last.Version != 11 {
		t.Errorf("last event: command %s at version %d, want cmd-10 at 11 (the retry of k9 must emit nothing)", last.CommandID, last.Version)
	}
}

// readAll reads topic from its start to its end, committed records only.
func readAll(ctx context.Context, t *testing.T, seeds []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // the markers end each partition: its end offset is reached
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out
}

// waitEvents waits until topic holds n committed records and returns them.
func waitEvents(ctx context.Context, t *testing.T, seeds []string, topic string, n int) []*kgo.Record {
	t.Helper()
	for {
		if recs := readAll(ctx, t, seeds, topic); len(recs) >= n {
			return recs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d records on %s: %v", n, topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// partitionOf is the partition of topic that holds key's state record.
func partitionOf(ctx context.Context, t *testing.T, seeds []string, topic, key string) int32 {
	t.Helper()
	for _, rec := range readAll(ctx, t, seeds, topic) {
		if string(rec.Key) == key {
			return rec.Partition
		}
	}
	t.Fatalf("no record keyed %q on %s", key, topic)
	return -1
}

// TestTransactionSlots: with every slot taken a partition waits for one and
// takes it once freed; past SlotWait it goes ahead without one; a stopped
// partition stops waiting; without a bound nothing waits.
func TestTransactionSlots(t *testing.T) {
	t.Parallel()
	newRuntime := func(slots int, wait time.Duration) *Runtime[counter] {
		cfg := Config{Brokers: []string{"127.0.0.1:1"}, Topics: topics.For("", "counters"), InstanceID: "a", TransactionSlots: slots, SlotWait: wait}
		rt, err := New(counterDef, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	ctx := context.Background()

	rt := newRuntime(1, time.Minute)
	release, ok := rt.acquireSlot(ctx)
	if !ok {
		t.Fatal("the free slot was not taken")
	}
	time.AfterFunc(50*time.Millisecond, release)
	start := time.Now()
	second, ok := rt.acquireSlot(ctx)
	if waited := time.Since(start); !ok || waited < 40*time.Millisecond {
		t.Fatalf("second acquire: ok %v after %s; want the slot once the first released it", ok, waited)
	}
	if len(rt.slots) != 1 {
		t.Fatalf("%d slots held, want the second partition's", len(rt.slots))
	}
	second()
	if len(rt.slots) != 0 {
		t.Fatal("release left the slot taken")
	}

	rt = newRuntime(1, 30*time.Millisecond)
	held, _ := rt.acquireSlot(ctx)
	start = time.Now()
	without, ok := rt.acquireSlot(ctx)
	if waited := time.Since(start); !ok || waited < 25*time.Millisecond || len(rt.slots) != 1 {
		t.Fatalf("past SlotWait: ok %v after %s with %d slots held; want to go ahead without a slot", ok, waited, len(rt.slots))
	}
	without() // a no-op: it holds no slot
	if len(rt.slots) != 1 {
		t.Fatal("releasing no slot freed the one held")
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	rt.cfg.SlotWait = time.Minute
	if _, ok := rt.acquireSlot(stopped); ok {
		t.Error("a stopped partition's acquire succeeded")
	}
	held()

	rt = newRuntime(-1, time.Minute)
	for range 3 {
		if _, ok := rt.acquireSlot(ctx); !ok || rt.slots != nil {
			t.Fatal("without a bound an acquire waited or held a slot")
		}
	}
}

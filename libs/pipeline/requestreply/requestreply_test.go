package requestreply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/registry"
	"github.com/answerback/answerback/libs/testenv"
)

// outcomes is an OutcomeStore in memory: what the read side recorded.
type outcomes struct {
	mu sync.Mutex
	m  map[string]Outcome // tenant/command ID → outcome
}

func (o *outcomes) record(tenant string, out Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[tenant+"/"+out.CommandID] = out
}

func (o *outcomes) Outcome(_ context.Context, tenant, commandID string) (Outcome, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if out, ok := o.m[tenant+"/"+commandID]; ok {
		return out, nil
	}
	return Outcome{}, ErrNoOutcome
}

// readSide stands in for the aggregator and the projector on a real
// (kfake) broker: it consumes the commands topic, records each command's
// outcome at the version its data names, and replies on the command's
// ReplyTo — unless the command's type is "lost" (the projector died after
// its commit: outcome recorded, no reply), "silent" (not decided yet: no
// outcome, no reply) or "dup" (a duplicate notice, with the outcome
// recorded a moment later, as when the first command is still in flight).
func readSide(ctx context.Context, t *testing.T, seeds []string, topic string, store *outcomes) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	go func() { // owned by the test: ends with ctx
		defer cl.Close()
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(rec *kgo.Record) {
				cmd, err := envelope.DecodeCommand(rec)
				if err != nil {
					t.Errorf("command record: %v", err)
					return
				}
				var data struct{ Version int64 }
				_ = json.Unmarshal(cmd.Data, &data)
				out := Outcome{CommandID: cmd.CommandID, AggregateID: cmd.AggregateID, Outcome: envelope.Applied, Version: data.Version,
					Reply: json.RawMessage(`{"version":` + strconv.FormatInt(data.Version, 10) + `}`), DecidedAt: time.Now()}
				switch cmd.Type {
				case "silent":
					return
				case "lost":
					store.record(cmd.Tenant, out)
					return
				case "dup":
					cl.Produce(ctx, envelope.EncodeReply(cmd.ReplyTo, envelope.Reply{CommandID: cmd.CommandID, Outcome: envelope.Duplicate, Body: json.RawMessage(`{}`)}), nil)
					time.AfterFunc(200*time.Millisecond, func() { store.record(cmd.Tenant, out) })
					return
				}
				store.record(cmd.Tenant, out)
				cl.Produce(ctx, envelope.EncodeReply(cmd.ReplyTo, out.asReply()), nil)
			})
		}
	}()
}

// TestSendAndStatus drives a Client against the read side above: a reply
// answers; a lost reply or a duplicate notice is answered from the recorded
// outcome; no outcome in time is ErrPending and the status says the command
// was sent here; a wait of zero returns ErrPending once acknowledged; Close
// deletes the reply topic and leaves the registry.
func TestSendAndStatus(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders.commands"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	seeds := cluster.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store := &outcomes{m: map[string]Outcome{}}
	readSide(ctx, t, seeds, "orders.commands", store)

	c, err := Open(ctx, Config{Brokers: seeds, InstanceID: "gw-1", Outcomes: store})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }() // ended by stopRun below
	if c.ReplyTopic() != "replies.gw-1" {
		t.Errorf("reply topic %q, want replies.gw-1", c.ReplyTopic())
	}

	send := func(typ string, version int64, wait time.Duration) (Result, error) {
		t.Helper()
		data, _ := json.Marshal(map[string]int64{"version": version})
		return c.Send(ctx, Request{Topic: "orders.commands", Wait: wait, Command: envelope.Command{
			Meta: envelope.Meta{AggregateID: "o-1", Tenant: "acme", ExpectedVersion: envelope.NoVersion},
			Type: typ, Data: data,
		}})
	}

	res, err := send("add", 1, 10*time.Second)
	if err != nil || res.FromRecord || res.Reply.Version != 1 || res.Reply.Outcome != envelope.Applied || res.CommandID == "" {
		t.Fatalf("a reply: %+v, %v; want version 1 applied, not from the record", res, err)
	}
	if testutil.CollectAndCount(replyWait) == 0 {
		t.Error("the reply wait was not observed")
	}

	res, err = send("lost", 2, 2*time.Second)
	if err != nil || !res.FromRecord || res.Reply.Version != 2 {
		t.Errorf("a lost reply: %+v, %v; want the recorded outcome at version 2", res, err)
	}

	res, err = send("dup", 3, 10*time.Second)
	if err != nil || !res.FromRecord || res.Reply.Version != 3 || res.Reply.Outcome != envelope.Applied {
		t.Errorf("a duplicate notice: %+v, %v; want the first command's recorded outcome at version 3", res, err)
	}

	res, err = send("silent", 4, 300*time.Millisecond)
	if !errors.Is(err, ErrPending) {
		t.Errorf("no outcome in time: %+v, %v; want ErrPending", res, err)
	}
	st, err := c.Status(ctx, "acme", res.CommandID)
	if err != nil || st.Outcome != nil || !st.SentHere {
		t.Errorf("status of a pending command: %+v, %v; want sent here, no outcome", st, err)
	}
	if st, err := c.Status(ctx, "other-tenant", res.CommandID); err != nil || st.SentHere || st.Outcome != nil {
		t.Errorf("another tenant's view of it: %+v, %v; want unknown", st, err)
	}

	res, err = send("add", 5, 0)
	if !errors.Is(err, ErrPending) || res.CommandID == "" {
		t.Errorf("no wait: %+v, %v; want ErrPending with the command's ID", res, err)
	}
	testenv.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := c.Status(ctx, "acme", res.CommandID)
		if err != nil || st.Outcome == nil {
			return fmt.Errorf("the command sent without waiting is not decided: %+v, %w", st, err)
		}
		if st.Outcome.Version != 5 || st.Outcome.CommandID != res.CommandID {
			t.Errorf("status once decided: %+v", st.Outcome)
		}
		return nil
	})

	stopRun()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := c.Close(ctx, true); err != nil {
		t.Fatal(err)
	}
	probe, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	live, err := registry.Read(ctx, probe, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := live["gw-1"]; ok {
		t.Error("a clean Close left the instance in the registry")
	}
}

// TestSendUnavailable: a command Kafka cannot acknowledge in time is
// ErrUnavailable, with its command ID.
func TestSendUnavailable(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, Config{Brokers: cluster.ListenAddrs(), InstanceID: "gw-2", ProduceTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close(ctx, false) }()
	// The topic does not exist: the produce cannot complete.
	res, err := c.Send(ctx, Request{Topic: "nowhere.commands", Wait: time.Second, Command: envelope.Command{
		Meta: envelope.Meta{CommandID: "c-1", AggregateID: "o-1", Tenant: "acme", ExpectedVersion: envelope.NoVersion}, Type: "add",
	}})
	if !errors.Is(err, ErrUnavailable) || res.CommandID != "c-1" {
		t.Errorf("%+v, %v; want ErrUnavailable for c-1", res, err)
	}
}

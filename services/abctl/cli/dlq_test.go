package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/libs/testenv"
)

type dlqListOut struct {
	DeadLetters []deadLetter `json:"deadLetters"`
	Total       int          `json:"total"`
}

type dlqRedriveOut struct {
	Redrives []redriveItem `json:"redrives"`
	DryRun   bool          `json:"dryRun"`
}

// A poison event is dead-lettered by the real projector runtime; once the
// projection is fixed, redrive sends it back and it is applied exactly once:
// a second redrive is refused without --force, and with it changes nothing.
// purge deletes nothing unconfirmed.
func TestDLQRedriveAppliesOnce(t *testing.T) {
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		pg := testenv.NewPostgres(t)
		n := topics.For(k.Prefix+".", "orders")
		k.CreateTopic(t, n.Events, 2, nil)
		k.CreateTopic(t, n.DLQ, 2, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := pg.Pool.Exec(ctx, `CREATE TABLE dlq_applied (event_id text PRIMARY KEY, type text NOT NULL)`); err != nil {
			t.Fatal(err)
		}

		// The projection refuses poison events until it is fixed; it
		// applies events idempotently by event ID, as the pipeline requires.
		const poisonType, goodType = "test.poison.v1", "test.good.v1"
		var fixed atomic.Bool
		var poisonApplies atomic.Int32 // Apply calls for the poison event once fixed
		rt, err := projector.New(projector.Projection{
			Name:   "dlq-test",
			Topics: map[string]string{n.Events: n.DLQ},
			Apply: func(b *pgx.Batch, _ string, ev envelope.Event) error {
				if ev.Type == poisonType {
					if !fixed.Load() {
						return fmt.Errorf("%w: %s is not understood yet", projector.ErrPermanent, ev.Type)
					}
					poisonApplies.Add(1)
				}
				b.Queue(`INSERT INTO dlq_applied (event_id, type) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING`, ev.ID(), ev.Type)
				return nil
			},
			Reply: func(_ *pgx.Batch, _ string, _ envelope.Event, done func(json.RawMessage, error)) {
				done(json.RawMessage(`{}`), nil)
			},
		}, projector.Config{Brokers: k.Seeds, Pool: pg.Pool, Group: k.Name("dlq-test"), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(runCtx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("projector: %v", err)
			}
		})

		event := func(id, typ string) *kgo.Record {
			return envelope.EncodeEvent(n.Events, "/test", envelope.Event{
				Meta: envelope.Meta{AggregateID: id}, Type: typ, Version: 1, Time: time.Now(), Index: 1, Count: 1,
				Data: json.RawMessage(`{"sku":"x-1"}`),
			})
		}
		poison, good := event("order-poison", poisonType), event("order-good", goodType)
		if err := k.Client(t).ProduceSync(ctx, poison, good).FirstErr(); err != nil {
			t.Fatal(err)
		}
		applied := func(id string) int {
			var c int
			if err := pg.Pool.QueryRow(ctx, `SELECT count(*) FROM dlq_applied WHERE event_id = $1`, id).Scan(&c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		poisonID, goodID := "order-poison@1", "order-good@1"
		dlqEventually(t, "the good event applied", func() bool { return applied(goodID) == 1 })

		// list: the poison event is a dead letter, with its reason and origin.
		cli := func(args ...string) []string { return append(target(k, nil), append([]string{"dlq"}, args...)...) }
		var list dlqListOut
		dlqEventually(t, "the poison event in the DLQ", func() bool {
			jsonOf(t, ExitOK, &list, cli("list")...)
			return list.Total > 0
		})
		if list.Total != 1 || len(list.DeadLetters) != 1 {
			t.Fatalf("want one dead letter, got %+v", list)
		}
		d := list.DeadLetters[0]
		if d.Topic != n.DLQ || d.Stage != "projector" || d.SourceTopic != n.Events || d.SourcePartition != poison.Partition ||
			d.SourceOffset != poison.Offset || !strings.Contains(d.Error, "is not understood yet") || d.Redriven || d.FailedAt.IsZero() {
			t.Fatalf("dead letter %+v, want the poison event from %s/%d/%d with its reason", d, n.Events, poison.Partition, poison.Offset)
		}
		id := d.id()
		if applied(poisonID) != 0 {
			t.Fatal("the poison event was applied before the fix")
		}
		if r := abctl(t, "", cli("list", "--domain", "orders")...); r.code != ExitOK || !strings.Contains(r.out, id) || !strings.Contains(r.out, "1 of 1 dead letters") {
			t.Errorf("list table: exit %d\n%s%s", r.code, r.out, r.errOut)
		}

		// show: everything about it; a position without a dead letter is not found.
		var shown struct {
			deadLetter
			Key         string          `json:"key"`
			Headers     []shownHeader   `json:"headers"`
			Value       json.RawMessage `json:"value"`
			ValueFormat string          `json:"valueFormat"`
		}
		jsonOf(t, ExitOK, &shown, cli("show", id)...)
		headers := map[string]string{}
		for _, h := range shown.Headers {
			headers[h.Key] = h.Value
		}
		if shown.Key != "order-poison" || shown.ValueFormat != "json" || headers[envelope.CEType] != poisonType ||
			headers[dlq.HStage] != "projector" || !strings.Contains(headers[dlq.HError], "not understood") {
			t.Errorf("show: %+v", shown)
		}
		var value map[string]string
		if err := json.Unmarshal(shown.Value, &value); err != nil || value["sku"] != "x-1" {
			t.Errorf("show: value %s (%v)", shown.Value, err)
		}
		if r := abctl(t, "", cli("show", "--topic", n.DLQ, "--partition", strconv.Itoa(int(d.Partition)), "--offset", strconv.FormatInt(d.Offset, 10))...); r.code != ExitOK ||
			!strings.Contains(r.out, "VALUE (json") || !strings.Contains(r.out, `"sku": "x-1"`) {
			t.Errorf("show table: exit %d\n%s%s", r.code, r.out, r.errOut)
		}
		var notFound struct{ ExitCode int }
		jsonOf(t, ExitNotFound, &notFound, cli("show", fmt.Sprintf("%s/%d/%d", n.DLQ, d.Partition, d.Offset+100))...)

		// A dry run sends nothing.
		var dry dlqRedriveOut
		jsonOf(t, ExitOK, &dry, cli("redrive", "--all", "--stage", "projector", "--source-topic", n.Events, "--dry-run")...)
		if len(dry.Redrives) != 1 || dry.Redrives[0].Status != "would-redrive" || !dry.DryRun {
			t.Fatalf("dry run: %+v", dry)
		}

		// Fixed: the redriven record reaches the projector and is applied.
		fixed.Store(true)
		var first dlqRedriveOut
		jsonOf(t, ExitOK, &first, cli("redrive", "--record", id)...)
		if len(first.Redrives) != 1 || first.Redrives[0].Status != "redriven" {
			t.Fatalf("redrive: %+v", first)
		}
		dlqEventually(t, "the redriven event applied", func() bool { return applied(poisonID) == 1 })
		to, err := parseDLQPosition(first.Redrives[0].To)
		if err != nil || to.Topic != n.Events || to.Partition != poison.Partition {
			t.Fatalf("redriven to %q, want %s/%d/...", first.Redrives[0].To, n.Events, poison.Partition)
		}
		sent := dlqReadAt(t, k, to)
		if from, _ := envelope.Header(sent, dlq.HRedrivenFrom); from != id || string(sent.Key) != "order-poison" {
			t.Errorf("redriven record: key %q, %s %q; want %q", sent.Key, dlq.HRedrivenFrom, from, id)
		}
		for _, h := range sent.Headers {
			if strings.HasPrefix(h.Key, dlq.Prefix) && h.Key != dlq.HRedrivenFrom {
				t.Errorf("redriven record carries %s", h.Key)
			}
		}
		jsonOf(t, ExitOK, &list, cli("list")...)
		if list.Total != 1 || !list.DeadLetters[0].Redriven || len(list.DeadLetters[0].Redrives) != 1 || list.DeadLetters[0].Redrives[0].To != first.Redrives[0].To {
			t.Fatalf("after the redrive, list: %+v (markers are no dead letters; the record shows redriven)", list)
		}

		// Again: refused without --force (exit 4, the report then the error);
		// --all only reports it.
		r := abctl(t, "", append(cli("redrive", "--record", id), "--json")...)
		var again dlqRedriveOut
		var refusal struct {
			Error    string
			ExitCode int
		}
		dec := json.NewDecoder(strings.NewReader(r.out))
		if r.code != ExitRefused || dec.Decode(&again) != nil || dec.Decode(&refusal) != nil || refusal.ExitCode != ExitRefused ||
			len(again.Redrives) != 1 || again.Redrives[0].Status != "skipped" {
			t.Fatalf("second redrive: exit %d, want %d with a skipped record\n%s%s", r.code, ExitRefused, r.out, r.errOut)
		}
		jsonOf(t, ExitOK, &again, cli("redrive", "--all")...)
		if len(again.Redrives) != 1 || again.Redrives[0].Status != "skipped" {
			t.Fatalf("redrive --all: %+v", again)
		}

		// --force sends it again; the projection, idempotent, applies it once.
		jsonOf(t, ExitOK, &again, cli("redrive", "--record", id, "--force")...)
		if len(again.Redrives) != 1 || again.Redrives[0].Status != "redriven" || again.Redrives[0].To == first.Redrives[0].To {
			t.Fatalf("redrive --force: %+v", again)
		}
		dlqEventually(t, "the forced redrive delivered", func() bool { return poisonApplies.Load() >= 2 })
		if c := applied(poisonID); c != 1 {
			t.Fatalf("the poison event applied %d times, want once", c)
		}
		jsonOf(t, ExitOK, &list, cli("list")...)
		if list.Total != 1 || len(list.DeadLetters[0].Redrives) != 2 {
			t.Fatalf("after the forced redrive, list: %+v", list)
		}

		// purge: unconfirmed (no input, a wrong name) it deletes nothing.
		for _, in := range []string{"", "orders.dlq\n"} {
			if r := abctl(t, in, cli("purge", "--all")...); r.code != ExitRefused {
				t.Fatalf("purge with input %q: exit %d, want %d\n%s%s", in, r.code, ExitRefused, r.out, r.errOut)
			}
		}
		var refused struct{ ExitCode int }
		jsonOf(t, ExitRefused, &refused, cli("purge", "--domain", "orders", "--all")...)
		jsonOf(t, ExitOK, &list, cli("list")...)
		if list.Total != 1 {
			t.Fatalf("an unconfirmed purge deleted dead letters: %+v", list)
		}
		// Confirmed by typing the topic name: the dead letter alone goes; its
		// markers, which follow it, stay and are still not dead letters.
		if r := abctl(t, n.DLQ+"\n", cli("purge", "--before", fmt.Sprintf("%s/%d/%d", n.DLQ, d.Partition, d.Offset+1))...); r.code != ExitOK {
			t.Fatalf("confirmed purge: exit %d\n%s%s", r.code, r.out, r.errOut)
		}
		jsonOf(t, ExitOK, &list, cli("list")...)
		if list.Total != 0 {
			t.Fatalf("after purging the dead letter, list: %+v", list)
		}
		var purged struct{ Purged []purgeItem }
		jsonOf(t, ExitOK, &purged, cli("purge", "--all", "--yes")...)
		if len(purged.Purged) != 1 || purged.Purged[0].LowWatermark != purged.Purged[0].Before || purged.Purged[0].Error != "" {
			t.Fatalf("purge --all --yes: %+v, want the markers' partition purged", purged)
		}
		starts, err := k.Admin(t).ListStartOffsets(ctx, n.DLQ)
		if err != nil {
			t.Fatal(err)
		}
		ends, err := k.Admin(t).ListEndOffsets(ctx, n.DLQ)
		if err != nil {
			t.Fatal(err)
		}
		for p := range int32(2) {
			s, _ := starts.Lookup(n.DLQ, p)
			e, _ := ends.Lookup(n.DLQ, p)
			if s.Offset != e.Offset {
				t.Errorf("%s/%d holds offsets %d..%d after purge --all", n.DLQ, p, s.Offset, e.Offset-1)
			}
		}
	})
}

// The aggregator dead-letters in transactions: list reads committed dead
// letters only, and ends on a partition whose last record is a transaction
// marker.
func TestDLQListReadsCommitted(t *testing.T) {
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		n := topics.For(k.Prefix+".", "catalog")
		k.CreateTopic(t, n.DLQ, 1, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cl := k.Client(t, kgo.TransactionalID(k.Name("dlq-txn")))
		for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			src := &kgo.Record{Topic: n.Commands, Partition: 0, Offset: int64(7 + i), Key: []byte("sku-1"), Value: []byte("not json")}
			if err := cl.ProduceSync(ctx, dlq.Record(n.DLQ, "aggregator", src, fmt.Errorf("payload: not valid JSON (%d)", i))).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if err := cl.EndTransaction(ctx, commit); err != nil {
				t.Fatal(err)
			}
		}
		cli := func(args ...string) []string { return append(target(k, nil), append([]string{"dlq"}, args...)...) }
		var list dlqListOut
		jsonOf(t, ExitOK, &list, cli("list", "--domain", "catalog")...)
		if list.Total != 1 || list.DeadLetters[0].Stage != "aggregator" || list.DeadLetters[0].source() != n.Commands+"/0/7" ||
			list.DeadLetters[0].Error != "payload: not valid JSON (0)" {
			t.Fatalf("want the committed dead letter alone, got %+v", list)
		}
		var shown struct {
			Value       json.RawMessage `json:"value"`
			ValueFormat string          `json:"valueFormat"`
		}
		jsonOf(t, ExitOK, &shown, cli("show", list.DeadLetters[0].id())...)
		if shown.ValueFormat != "text" || string(shown.Value) != `"not json"` {
			t.Errorf("show: value %s as %q, want the text", shown.Value, shown.ValueFormat)
		}
		var dry dlqRedriveOut
		jsonOf(t, ExitOK, &dry, cli("redrive", "--all", "--stage", "aggregator", "--dry-run")...)
		if len(dry.Redrives) != 1 || dry.Redrives[0].Status != "would-redrive" || dry.Redrives[0].Source != n.Commands+"/0" {
			t.Fatalf("dry run: %+v", dry)
		}
		jsonOf(t, ExitOK, &dry, cli("redrive", "--all", "--stage", "projector")...)
		if len(dry.Redrives) != 0 {
			t.Fatalf("redrive --stage projector selected %+v", dry)
		}
	})
}

// Bad selections are usage errors, found before anything is read.
func TestDLQUsage(t *testing.T) {
	for _, args := range [][]string{
		{"list", "--limit", "-1"},
		{"list", "--domain", "nope"},
		{"show"},
		{"show", "orders.dlq/0"},
		{"redrive"},
		{"redrive", "--all", "--record", "orders.dlq/0/1"},
		{"redrive", "--record", "orders.dlq/0/1", "--stage", "projector"},
		{"redrive", "--record", "orders.dlq/x/1"},
		{"purge"},
		{"purge", "--all", "--before", "orders.dlq/0/1"},
		{"purge", "--before", "orders.dlq/0/1", "--domain", "orders"},
	} {
		var e struct {
			Error    string
			ExitCode int
		}
		jsonOf(t, ExitUsage, &e, append([]string{"--brokers", "127.0.0.1:1", "--timeout", "1s", "dlq"}, args...)...)
		if e.Error == "" {
			t.Errorf("dlq %s: no error message", strings.Join(args, " "))
		}
	}
}

// dlqEventually waits up to a minute for cond.
func dlqEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dlqReadAt reads the record at pos.
func dlqReadAt(t *testing.T, k *testenv.Kafka, pos dlqPosition) *kgo.Record {
	t.Helper()
	cl := k.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{pos.Topic: {pos.Partition: kgo.NewOffset().At(pos.Offset)}}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fetches := cl.PollFetches(ctx)
		if err := fetches.Err0(); err != nil {
			t.Fatalf("reading %s: %v", pos, err)
		}
		for _, r := range fetches.Records() {
			if r.Offset == pos.Offset {
				return r
			}
		}
	}
}

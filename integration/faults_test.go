package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/answerback/answerback/deploy/local/procs"
	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/pipeline/aggregate"
	"github.com/answerback/answerback/libs/pipeline/dlq"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/testenv"
)

// TestAggregatorCrashLosesNothing kills the aggregator while commands flow —
// in-process (closed with its transaction aborted, not committed) and as a
// real process (SIGKILL) — and restarts it. Afterwards every order's event versions on the
// topic are 1..n with no gap and no duplicate, the view is at version n, and
// every command answered 200 is in the view.
func TestAggregatorCrashLosesNothing(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		for _, mode := range []string{"in-process", "sigkill"} {
			t.Run(mode, func(t *testing.T) {
				k := &testenv.Kafka{Kind: k.Kind, Seeds: k.Seeds, Prefix: testenv.UniqueName("t"), Version: k.Version}
				s := startStack(t, k, stackOptions{})
				s.seedCatalog(defaultCatalog)
				s.stop("aggregator-agg-1")

				start, kill := s.inProcessAggregator, func(instance string) { s.stop("aggregator-" + instance) }
				if mode == "sigkill" {
					start, kill = s.processAggregator(t), s.killProcess
				}
				start("agg-1")

				const orders, clients, perClient = 4, 8, 15
				for o := range orders {
					s.mustCall(o, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": fmt.Sprintf("o%d", o), "customerId": "c"})
				}
				var (
					mu      sync.Mutex
					applied = map[string]string{} // command ID → order
					counts  = map[int]int{}
					sent    atomic.Int64
				)
				var wg sync.WaitGroup
				for c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range perClient {
							order := fmt.Sprintf("o%d", (c+i)%orders)
							r := s.call(c+i, http.MethodPost, "/v1/orders/"+order+"/items", map[string]any{"sku": "apple", "quantity": 1})
							sent.Add(1)
							mu.Lock()
							counts[r.Status]++
							if r.Status == http.StatusOK {
								applied[r.json(t)["commandId"].(string)] = order
							}
							mu.Unlock()
						}
					}()
				}
				for sent.Load() < clients*perClient/3 {
					time.Sleep(10 * time.Millisecond)
				}
				kill("agg-1")
				t.Logf("aggregator killed (%s) after %d commands", mode, sent.Load())
				start("agg-1")
				wg.Wait()
				t.Logf("answers: %v", counts)
				if counts[http.StatusOK] == 0 {
					t.Fatal("no command was answered 200")
				}
				for status, n := range counts {
					if status != http.StatusOK && status != http.StatusAccepted {
						t.Errorf("%d commands answered %d: want only 200 or 202", n, status)
					}
				}

				for o := range orders {
					id := fmt.Sprintf("o%d", o)
					events := s.eventsOf("orders", id)
					for i, ev := range events {
						if ev.Version != int64(i+1) {
							t.Fatalf("order %s: event %d has version %d; versions must be 1..%d", id, i, ev.Version, len(events))
						}
					}
					view := s.mustCall(o, http.StatusOK, http.MethodGet, fmt.Sprintf("/v1/orders/%s?minVersion=%d", id, len(events)), nil).json(t)
					if view["version"] != float64(len(events)) {
						t.Errorf("order %s: view at version %v, events topic at %d", id, view["version"], len(events))
					}
				}
				for commandID, order := range applied {
					st := s.mustCall(0, http.StatusOK, http.MethodGet, "/v1/commands/"+commandID, nil).json(t)
					if st["status"] != "applied" || st["aggregateId"] != order {
						t.Errorf("command %s answered 200 but its status is %v", commandID, st)
					}
				}
			})
		}
	})
}

// inProcessAggregator starts an aggregator whose stop aborts the open
// transaction instead of committing it: the in-process stand-in for a crash.
func (s *stack) inProcessAggregator(instance string) { s.startAggregatorDrain(instance, -1) }

// processAggregator builds the aggregator binary once and returns a function
// starting it as a child process under the given instance ID.
func (s *stack) processAggregator(t *testing.T) func(string) {
	bin := buildAggregator(t)
	return func(instance string) {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+strings.Join(s.k.Seeds, ","), "TOPIC_PREFIX="+s.prefix, "INSTANCE_ID="+instance, "LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }() // reaps the child
		s.mu.Lock()
		s.procs["aggregator-"+instance] = &component{cancel: func() { _ = cmd.Process.Signal(syscall.SIGTERM) }, done: done}
		s.mu.Unlock()
		s.killers.Store(instance, cmd.Process)
	}
}

// killProcess SIGKILLs the aggregator process started for instance.
func (s *stack) killProcess(instance string) {
	if p, ok := s.killers.Load(instance); ok {
		_ = p.(*os.Process).Signal(syscall.SIGKILL)
	}
	s.stop("aggregator-" + instance)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildAggregator builds the service binaries once and returns the aggregator's.
func buildAggregator(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "answerback-bin")
		if err == nil {
			dir, err = procs.Build("..", dir)
		}
		builtBin, buildErr = filepath.Join(dir, "aggregator"), err
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// TestMalformedRecordsAreDeadLettered: hostile records on the commands topic
// (not JSON, an unknown command type, over the size limit, no key and no
// headers), on the events topic (no CloudEvents headers) and on the outcomes
// topic (no headers, not JSON) each land in
// orders.dlq with headers naming the error and the source; the records after
// them are processed.
func TestMalformedRecordsAreDeadLettered(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(defaultCatalog)
		ctx := testenv.Context(t, time.Minute)
		tp := s.topics("orders")
		producer := k.Client(t)
		valid := func(commandType string, value []byte) *kgo.Record {
			return &kgo.Record{Topic: tp.Commands, Key: []byte("o-bad"), Value: value, Headers: []kgo.RecordHeader{
				{Key: "command-id", Value: []byte(commandType)}, {Key: "command-type", Value: []byte(commandType)}}}
		}
		oversized := append(append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), 300<<10)...), '"', '}')
		bad := []*kgo.Record{
			{Topic: tp.Commands, Key: []byte("o-bad"), Value: []byte("not json")},
			valid("orders.explode", []byte(`{}`)),     // unknown command type
			valid("orders.add-item", oversized),       // over the size limit
			{Topic: tp.Commands, Value: []byte(`{}`)}, // no key, no headers
			{Topic: tp.Events, Key: []byte("o-bad"), Value: []byte(`{"orderId":"o-bad"}`),
				Headers: []kgo.RecordHeader{{Key: "ce_type", Value: []byte("orders.created.v1")}}},
			{Topic: tp.Outcomes, Key: []byte("o-bad"), Value: []byte("not an outcome")}, // no headers, not JSON
			// Well-formed events the view refuses for good (the projector's
			// savepoint path): an unknown type, and malformed data.
			envelope.EncodeEvent(tp.Events, "/test", envelope.Event{Meta: envelope.Meta{AggregateID: "o-bad", CommandID: "x1"},
				Type: "orders.exploded.v1", Version: 1, Time: time.Now(), Index: 1, Count: 1, Data: []byte(`{}`)}),
			envelope.EncodeEvent(tp.Events, "/test", envelope.Event{Meta: envelope.Meta{AggregateID: "o-bad", CommandID: "x2"},
				Type: orders.EventItemAdded, Version: 1, Time: time.Now(), Index: 1, Count: 1, Data: []byte(`{"sku":""}`)}),
		}
		if err := producer.ProduceSync(ctx, bad...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		s.mustCall(0, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": "o-bad", "customerId": "c"})
		s.mustCall(1, http.StatusOK, http.MethodPost, "/v1/orders/o-bad/items", map[string]any{"sku": "apple", "quantity": 1})

		dead := s.dlqRecords(tp.DLQ)
		sources := map[string]bool{}
		for _, r := range dead {
			if headerOf(r, dlq.HError) == "" || headerOf(r, dlq.HSourceOffset) == "" || headerOf(r, dlq.HSourcePartition) == "" {
				t.Errorf("dead letter without error or origin headers: %v", r.Headers)
			}
			sources[headerOf(r, dlq.HSourceTopic)] = true
		}
		if len(dead) != len(bad) || !sources[tp.Commands] || !sources[tp.Events] || !sources[tp.Outcomes] {
			t.Fatalf("%d dead letters from %v, want %d: four from %s, three from %s and one from %s", len(dead), sources, len(bad), tp.Commands, tp.Events, tp.Outcomes)
		}
		// answerback_dead_letters_total counts them by stage and source topic
		// (the stack runs in this process, on the default registry).
		want := map[string]float64{"aggregator " + tp.Commands: 4, "projector " + tp.Events: 3, "projector " + tp.Outcomes: 1}
		deadline := time.Now().Add(5 * time.Second)
		for {
			got := deadLetterMetric(t, tp.Commands, tp.Events, tp.Outcomes)
			if fmt.Sprint(got) == fmt.Sprint(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("answerback_dead_letters_total: %v, want %v", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestReplayedCommandsAreNotAppliedTwice: a command record produced again
// (an operator's replay, a duplicating bridge) is not applied twice even
// without an Idempotency-Key — the aggregate remembers it by command ID —
// and a record older than the aggregate's memory (24h) goes to orders.dlq
// as stale instead of being applied. Commands after them are processed.
func TestReplayedCommandsAreNotAppliedTwice(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{})
		tp := s.topics("orders")
		added := s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1}).json(t)
		var original *kgo.Record
		for _, r := range s.readTopic(tp.Commands) {
			if headerOf(r, envelope.HCommandID) == added["commandId"] {
				original = r
			}
		}
		if original == nil {
			t.Fatalf("command %v not found on %s", added["commandId"], tp.Commands)
		}
		replay := func(sent time.Time) {
			rec := &kgo.Record{Topic: tp.Commands, Key: original.Key, Value: original.Value, Headers: original.Headers, Timestamp: sent}
			if err := k.Client(t).ProduceSync(testenv.Context(t, 10*time.Second), rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
			// A command after it on the same order's partition is answered
			// only once the replayed record has been decided.
			s.mustCall(1, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
		}
		replay(time.Now())                      // within the window: a duplicate, nothing emitted
		replay(time.Now().Add(-48 * time.Hour)) // older than the window: dead-lettered

		events := s.eventsOf("orders", "o")
		checkVersionsOnce(t, events)
		if len(events) != 4 { // created, the original and two barrier commands
			t.Errorf("%d events on o, want 4", len(events))
		}
		dead := s.dlqRecords(tp.DLQ)
		if len(dead) != 1 || !strings.Contains(headerOf(dead[0], dlq.HError), "stale command") || headerOf(dead[0], dlq.HSourceTopic) != tp.Commands {
			t.Fatalf("dead letters %d (%v), want one stale command from %s", len(dead), dead, tp.Commands)
		}
		status := s.mustCall(0, http.StatusOK, http.MethodGet, "/v1/commands/"+added["commandId"].(string), nil).json(t)
		if status["status"] != "applied" {
			t.Errorf("status of the replayed command: %v, want applied (its first outcome)", status)
		}
	})
}

// deadLetterMetric reads answerback_dead_letters_total from the default
// Prometheus registry: "stage source_topic" → value, for the given topics.
func deadLetterMetric(t *testing.T, topics ...string) map[string]float64 {
	t.Helper()
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "answerback_dead_letters_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for _, topic := range topics {
				if labels["source_topic"] == topic {
					out[labels["stage"]+" "+topic] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestReplyToMissingTopicDoesNotStall: a command whose reply topic does not
// exist (its gateway stopped and deleted it; or a hostile record) and that
// is rejected while its deadline runs does not stall its partition: the
// reply is sent outside the aggregator's transaction, and the next command
// on the same order is answered as usual.
func TestReplyToMissingTopicDoesNotStall(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{})
		orphan := envelope.EncodeCommand(s.topics("orders").Commands, envelope.Command{
			Meta: envelope.Meta{
				CommandID: "orphan-1", AggregateID: "o", ReplyTo: s.prefix + "replies.gone",
				Deadline: time.Now().Add(time.Minute), Tenant: testTenant, ExpectedVersion: 99, // rejected: version-mismatch
			},
			Type: "orders.add-item", Data: []byte(`{"sku":"apple","quantity":1}`),
		})
		if err := k.Client(t).ProduceSync(testenv.Context(t, 10*time.Second), orphan).FirstErr(); err != nil {
			t.Fatal(err)
		}
		s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
		status := s.mustCall(1, http.StatusOK, http.MethodGet, "/v1/commands/orphan-1", nil).json(t)
		if status["status"] != "rejected" {
			t.Errorf("status of the orphan command: %v, want rejected", status)
		}
	})
}

// TestFencedAggregatorRecovers fences the aggregator's transactional
// producers the way the broker or a partition's next owner does — an
// InitProducerID for each partition's transactional ID, which bumps the
// epoch — so its next transaction
// fails with PRODUCER_FENCED, a state franz-go cannot recover from. The
// aggregator must stop with aggregate.ErrProducerFenced — here the stack
// restarts it, as a supervisor would — instead of retrying the dead session
// for ever (as it did after a broker restart in the chaos suite); the
// commands are then answered, each applied once.
func TestFencedAggregatorRecovers(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStackWithOrder(t, k, stackOptions{replyWait: 25 * time.Second})
		s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
		for round := range 2 {
			// The owner of each commands partition uses the partition's
			// transactional ID: fence them all.
			for p := range int32(3) {
				txnID := aggregate.TransactionalID(s.prefix+"orders-aggregator", p)
				init := kmsg.NewPtrInitProducerIDRequest()
				init.TransactionalID = &txnID
				init.TransactionTimeoutMillis = 60_000
				resp, err := init.RequestWith(testenv.Context(t, 10*time.Second), k.Client(t))
				if err != nil {
					t.Fatal(err)
				}
				if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
					t.Fatalf("fencing %s: %v", txnID, err)
				}
			}
			for i := range 2 {
				s.mustCall((round+i)%2, http.StatusOK, http.MethodPost, "/v1/orders/o/items", map[string]any{"sku": "apple", "quantity": 1})
			}
		}
		events := s.eventsOf("orders", "o")
		checkVersionsOnce(t, events)
		if len(events) != 6 { // created and five items added
			t.Errorf("%d events on o, want 6", len(events))
		}
		if n := s.fencedRestarts.Load(); n < 1 {
			t.Errorf("the aggregator was restarted %d times after being fenced; want at least 1 (was it fenced?)", n)
		}
	})
}

// checkVersionsOnce reports events whose versions are not 1..n in order, or
// whose command already has an event: a command applied twice.
func checkVersionsOnce(t *testing.T, events []envelope.Event) {
	t.Helper()
	seen := map[string]bool{}
	for i, ev := range events {
		if ev.Version != int64(i+1) || seen[ev.CommandID] {
			t.Errorf("event %d: version %d of command %s (seen before: %v)", i, ev.Version, ev.CommandID, seen[ev.CommandID])
		}
		seen[ev.CommandID] = true
	}
}

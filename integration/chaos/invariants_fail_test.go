package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/orders"
	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/libs/testenv"
)

// Each invariant of the chaos suite is broken here once, on purpose, and
// must be caught: a checker that cannot fail proves nothing.

// TestAnswersCheckCatchesAWrongAnswer: an answer whose version or reply
// differs from the record, or whose command's status is not applied, is a
// violation; the faithful answer is none.
func TestAnswersCheckCatchesAWrongAnswer(t *testing.T) {
	t.Parallel()
	answer := outcome{commandID: "c1", status: http.StatusOK, version: 4, body: []byte(`{"version":4,"order":{"total":300}}`)}
	recorded := commandStatus{HTTPStatus: http.StatusOK, Status: "applied", Version: 4, Reply: json.RawMessage(`{"order": {"total": 300}, "version": 4}`)}
	if v := answerViolations(answer, recorded); len(v) != 0 {
		t.Fatalf("a faithful answer: %v", v)
	}
	wrongVersion := answer
	wrongVersion.version = 5
	wrongReply := answer
	wrongReply.body = []byte(`{"version":4,"order":{"total":200}}`)
	pending := recorded
	pending.Status = "pending"
	for name, c := range map[string]struct {
		o  outcome
		st commandStatus
	}{"wrong version": {wrongVersion, recorded}, "wrong reply": {wrongReply, recorded}, "status not applied": {answer, pending}} {
		if v := answerViolations(c.o, c.st); len(v) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}

// TestOutcomeRowsCheckCatchesAMismatch: a recorded outcome whose version is
// not its event's, an applied one without an event, and a rejected one with
// an event are violations.
func TestOutcomeRowsCheckCatchesAMismatch(t *testing.T) {
	t.Parallel()
	log := indexEvents([]envelope.Event{{Meta: envelope.Meta{CommandID: "c1"}, Version: 2}, {Meta: envelope.Meta{CommandID: "c3"}, Version: 3}})
	good := []outcomeRow{{"c1", 2, "applied"}, {"c2", 0, "rejected"}}
	if v := outcomeRowViolations(good, log); len(v) != 0 {
		t.Fatalf("faithful outcomes: %v", v)
	}
	for _, bad := range []outcomeRow{{"c1", 3, "applied"}, {"c9", 1, "applied"}, {"c3", 0, "rejected"}} {
		if v := outcomeRowViolations([]outcomeRow{bad}, log); len(v) != 1 {
			t.Errorf("outcome %+v: %d violations, want 1", bad, len(v))
		}
	}
}

// TestServerErrorsCheck: a 503 with Retry-After during a fault passes; one
// without Retry-After, one after the fault, a 500, a 504 and a 4xx fail.
func TestServerErrorsCheck(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	windows := []faultWindow{{fault: "f", from: t0, to: t0.Add(5 * time.Second)}}
	ok := []attempt{{status: 200, at: t0}, {status: 503, retryAfter: true, at: t0.Add(time.Second)}, {status: 503, retryAfter: true, at: t0.Add(12 * time.Second)}}
	if v := serverErrorViolations(ok, windows, serverErrorGrace); len(v) != 0 {
		t.Fatalf("allowed answers: %v", v)
	}
	for _, bad := range []attempt{
		{status: 503, at: t0.Add(time.Second)},
		{status: 503, retryAfter: true, at: t0.Add(time.Minute)},
		{status: 500, at: t0.Add(time.Second)},
		{status: 504, retryAfter: true, at: t0.Add(time.Second)},
		{status: 409, problem: "conflict", at: t0.Add(time.Second)},
	} {
		if v := serverErrorViolations([]attempt{bad}, windows, serverErrorGrace); len(v) != 1 {
			t.Errorf("answer %+v: %d violations, want 1", bad, len(v))
		}
	}
}

// TestDeadLettersCounted: a record on a dead-letter topic is counted.
func TestDeadLettersCounted(t *testing.T) {
	t.Parallel()
	k := testenv.EmbeddedKafka(t)
	ctx := testenv.Context(t, 30*time.Second)
	names := topics.For(k.Prefix+".", orders.Name)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := topics.Ensure(ctx, adm, names, 2, -1); err != nil {
		t.Fatal(err)
	}
	if n, err := deadLetters(ctx, adm, names.DLQ); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) before any, want 0", n, err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: names.DLQ, Value: []byte("refused")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if n, err := deadLetters(ctx, adm, names.DLQ); err != nil || n != 1 {
		t.Errorf("%d dead letters (%v), want 1", n, err)
	}
}

// TestViewCheckCatchesASkippedEvent: a view projected from the events equals
// the same events projected afresh; once one order line is missing from it,
// as if its projector had skipped that event, the check names the table.
func TestViewCheckCatchesASkippedEvent(t *testing.T) {
	t.Parallel()
	k := testenv.EmbeddedKafka(t)
	pg := testenv.NewPostgres(t)
	ctx := testenv.Context(t, time.Minute)
	prefix := k.Prefix + "."
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	names := topics.For(prefix, orders.Name)
	if _, err := topics.Ensure(ctx, kadm.NewClient(cl), names, 2, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := topics.Ensure(ctx, kadm.NewClient(cl), topics.For(prefix, "catalog"), 2, -1); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	event := func(order string, version int64, typ string, data any) *kgo.Record {
		b, _ := json.Marshal(data)
		return envelope.EncodeEvent(names.Events, "/test", envelope.Event{
			Meta: envelope.Meta{CommandID: fmt.Sprint(order, "-", version), AggregateID: "acme/" + order, Tenant: "acme"},
			Type: typ, Version: version, Time: at, Index: 1, Count: 1, Data: b,
		})
	}
	var recs []*kgo.Record
	for _, order := range []string{"o1", "o2"} {
		recs = append(recs,
			event(order, 1, orders.EventCreated, orders.Created{CustomerID: "c", Currency: "EUR"}),
			event(order, 2, orders.EventItemAdded, orders.ItemAdded{SKU: "apple", Quantity: 2}),
			event(order, 3, orders.EventItemAdded, orders.ItemAdded{SKU: "pear", Quantity: 1}))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The live view, as the projector leaves it: applied, offsets stored.
	if err := view.Migrate(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	if err := projector.EnsureSchema(ctx, pg.Pool); err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, names.Events)
	if err != nil {
		t.Fatal(err)
	}
	var ranges []projector.Range
	ends.Each(func(o kadm.ListedOffset) {
		ranges = append(ranges, projector.Range{Topic: o.Topic, Partition: o.Partition, From: 0, To: o.Offset})
	})
	if _, err := projector.Replay(ctx, view.Projection(prefix), projector.ReplayConfig{Brokers: k.Seeds, Pool: pg.Pool, Tracked: true}, ranges); err != nil {
		t.Fatal(err)
	}
	check := func(pool *pgxpool.Pool) []string {
		t.Helper()
		diffs, err := viewMismatches(ctx, k.Seeds, pool, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return diffs
	}
	if diffs := check(pg.Pool); len(diffs) != 0 {
		t.Fatalf("the view projected from the events differs from them projected afresh: %v", diffs)
	}
	if _, err := pg.Pool.Exec(ctx, `DELETE FROM order_lines WHERE ctid = (SELECT min(ctid) FROM order_lines)`); err != nil {
		t.Fatal(err)
	}
	if diffs := check(pg.Pool); len(diffs) != 1 {
		t.Errorf("a view with an event skipped: %d differences %v, want the order_lines table's", len(diffs), diffs)
	}
}

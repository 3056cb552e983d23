package chaos

// The invariants the chaos suite holds the system to, as functions of what
// it recorded — the clients' answers, the events topic, the command
// statuses, the recorded outcomes, the view — so that each can be shown to
// fail (invariants_fail_test.go) without a chaos run. This file has no build
// tag: `make test` runs those tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/projector"
)

// outcome of one command, as its client saw it in the end.
type outcome struct {
	fault     string
	order     string
	status    int // final HTTP status; 0 for a transport error on every attempt
	commandID string
	version   int64
	body      []byte // the final answer's body
	attempts  int
	hung      bool // a request ran into the client timeout
	start, at time.Time
}

// eventLog indexes the events topic by command ID.
type eventLog struct {
	count   map[string]int   // events per command
	version map[string]int64 // the version of the command's last event
}

func indexEvents(events []envelope.Event) eventLog {
	log := eventLog{count: map[string]int{}, version: map[string]int64{}}
	for _, ev := range events {
		log.count[ev.CommandID]++
		log.version[ev.CommandID] = max(log.version[ev.CommandID], ev.Version)
	}
	return log
}

// commandStatus is what GET /v1/commands/{id} answered.
type commandStatus struct {
	HTTPStatus int             `json:"-"`
	Status     string          `json:"status"`
	Version    int64           `json:"version"`
	Reply      json.RawMessage `json:"reply"`
}

// answerViolations holds a command answered 200 or 201 against the record:
// its status must say applied, at the version the client was answered,
// with the reply the client was given (JSON-equal). That the events topic
// gives the command that version is check's (lost, duplicated, wrong version).
func answerViolations(o outcome, st commandStatus) []string {
	var v []string
	switch {
	case st.HTTPStatus != http.StatusOK || st.Status != string(envelope.Applied):
		v = append(v, fmt.Sprintf("command %s answered %d: its status is %d %q, want applied", o.commandID, o.status, st.HTTPStatus, st.Status))
	case st.Version != o.version:
		v = append(v, fmt.Sprintf("command %s answered version %d: its status says %d", o.commandID, o.version, st.Version))
	case !jsonEqual(st.Reply, o.body):
		v = append(v, fmt.Sprintf("command %s: the reply its client got differs from the recorded one (%s, recorded %s)", o.commandID, o.body, st.Reply))
	}
	return v
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// outcomeRow is one row of command_outcomes.
type outcomeRow struct {
	CommandID string
	Version   int64
	Outcome   string
}

// outcomeRowViolations holds every recorded outcome against the events: an
// applied command has exactly one event, at the recorded version; a
// rejected one has none.
func outcomeRowViolations(rows []outcomeRow, log eventLog) []string {
	var v []string
	for _, r := range rows {
		n := log.count[r.CommandID]
		switch {
		case r.Outcome == string(envelope.Applied) && n != 1:
			v = append(v, fmt.Sprintf("outcome of %s: applied at version %d, with %d events", r.CommandID, r.Version, n))
		case r.Outcome == string(envelope.Applied) && log.version[r.CommandID] != r.Version:
			v = append(v, fmt.Sprintf("outcome of %s: applied at version %d, its event has version %d", r.CommandID, r.Version, log.version[r.CommandID]))
		case r.Outcome == string(envelope.Rejected) && n != 0:
			v = append(v, fmt.Sprintf("outcome of %s: rejected, yet %d events carry it", r.CommandID, n))
		}
	}
	return v
}

// readOutcomeRows reads the recorded outcomes of the commands whose topics
// start with prefix ("orders.": the orders' events and rejections).
func readOutcomeRows(ctx context.Context, db *pgxpool.Pool, prefix string) ([]outcomeRow, error) {
	rows, err := db.Query(ctx, `SELECT command_id, version, outcome FROM command_outcomes WHERE starts_with(topic, $1)`, prefix)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[outcomeRow])
}

// attempt is one HTTP answer a client had.
type attempt struct {
	fault      string
	status     int
	retryAfter bool   // the answer had a Retry-After header
	problem    string // the problem's type, for an error
	at         time.Time
}

// faultWindow is while one injection of a fault was active: from its
// injection to the first round trip that succeeded after it was mended.
type faultWindow struct {
	fault    string
	from, to time.Time
}

// serverErrorGrace is how long after a fault's window a 503 is still the
// fault's: the first round trip that succeeds after the mend shows the
// system answering again, not every partition and connection back yet.
const serverErrorGrace = 10 * time.Second

// serverErrorViolations holds every answer the clients had against the
// faults: a 503 is allowed only with Retry-After and while a fault is
// active (within grace of its window); any other 5xx, and any 4xx — valid
// traffic has none — is a violation.
func serverErrorViolations(attempts []attempt, windows []faultWindow, grace time.Duration) []string {
	var v []string
	for _, a := range attempts {
		switch {
		case a.status >= 400 && a.status < 500:
			v = append(v, fmt.Sprintf("%s: unexpected %d %s at %s", a.fault, a.status, a.problem, a.at.Format(time.TimeOnly)))
		case a.status == http.StatusServiceUnavailable && !a.retryAfter:
			v = append(v, fmt.Sprintf("%s: 503 %s without Retry-After at %s", a.fault, a.problem, a.at.Format(time.TimeOnly)))
		case a.status == http.StatusServiceUnavailable && !duringFault(a.at, windows, grace):
			v = append(v, fmt.Sprintf("%s: 503 %s at %s, with no fault active", a.fault, a.problem, a.at.Format(time.TimeOnly)))
		case a.status >= 500 && a.status != http.StatusServiceUnavailable:
			v = append(v, fmt.Sprintf("%s: %d %s at %s", a.fault, a.status, a.problem, a.at.Format(time.TimeOnly)))
		}
	}
	return v
}

func duringFault(at time.Time, windows []faultWindow, grace time.Duration) bool {
	for _, w := range windows {
		if !at.Before(w.from) && !at.After(w.to.Add(grace)) {
			return true
		}
	}
	return false
}

// deadLetters counts the records on the dead-letter topics.
func deadLetters(ctx context.Context, adm *kadm.Client, dlqs ...string) (int64, error) {
	starts, err := adm.ListStartOffsets(ctx, dlqs...)
	if err != nil {
		return 0, err
	}
	ends, err := adm.ListEndOffsets(ctx, dlqs...)
	if err != nil {
		return 0, err
	}
	var n int64
	var errs []error
	ends.Each(func(end kadm.ListedOffset) {
		if end.Err != nil {
			errs = append(errs, end.Err)
			return
		}
		start, _ := starts.Lookup(end.Topic, end.Partition)
		n += end.Offset - start.Offset
	})
	return n, errors.Join(errs...)
}

// viewMismatches projects the events afresh, from offset 0 into a scratch
// schema, up to the offsets the live projector stored with its view, and
// compares the two views table by table. It first copies the live view,
// with its stored offsets, in one repeatable-read transaction, so that the
// comparison holds while the live projector goes on. pool is the live
// view's database (its search_path's first schema); prefix the topics'.
// It returns one line per difference, none when the views are equal.
func viewMismatches(ctx context.Context, brokers []string, pool *pgxpool.Pool, prefix string, opts ...kgo.Opt) ([]string, error) {
	suffix := fmt.Sprint(time.Now().UnixNano())
	scratch, snapshot := "chaos_replayed_"+suffix, "chaos_live_"+suffix
	defer func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+ident(scratch)+", "+ident(snapshot)+" CASCADE")
	}()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+ident(scratch)+"; CREATE SCHEMA "+ident(snapshot)); err != nil {
		return nil, err
	}
	cfg := pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["search_path"] = scratch
	replayed, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer replayed.Close()
	if err := view.Migrate(ctx, replayed); err != nil {
		return nil, fmt.Errorf("the scratch view: %w", err)
	}
	var tables []string
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = $1 AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations' ORDER BY table_name`, scratch)
	if err != nil {
		return nil, err
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, err
	}

	// The live view as of its stored offsets: copied with them in one
	// repeatable-read transaction, so that they agree while the live
	// projector goes on.
	projection := view.Projection(prefix)
	var ranges []projector.Range
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		offsets, err := projector.StoredOffsets(ctx, tx, projection.Name)
		if err != nil {
			return err
		}
		for _, o := range offsets {
			if _, isEvents := projection.Topics[o.Topic]; isEvents && o.Next > 0 {
				ranges = append(ranges, projector.Range{Topic: o.Topic, Partition: o.Partition, From: 0, To: o.Next})
			}
		}
		for _, t := range tables {
			if _, err := tx.Exec(ctx, "CREATE TABLE "+ident(snapshot)+"."+ident(t)+" AS TABLE "+ident(t)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copying the live view: %w", err)
	}
	if _, err := projector.Replay(ctx, projection, projector.ReplayConfig{Brokers: brokers, Pool: replayed, ClientOpts: opts}, ranges); err != nil {
		return nil, fmt.Errorf("projecting the events afresh: %w", err)
	}
	var diffs []string
	for _, t := range tables {
		live, fresh := ident(snapshot)+"."+ident(t), ident(scratch)+"."+ident(t)
		var onlyLive, onlyFresh []string
		q := `SELECT x::text FROM (TABLE %s EXCEPT ALL TABLE %s) x ORDER BY 1 LIMIT 3`
		if err := collect(ctx, pool, fmt.Sprintf(q, live, fresh), &onlyLive); err != nil {
			return nil, err
		}
		if err := collect(ctx, pool, fmt.Sprintf(q, fresh, live), &onlyFresh); err != nil {
			return nil, err
		}
		if len(onlyLive)+len(onlyFresh) > 0 {
			diffs = append(diffs, fmt.Sprintf("table %s: rows only in the live view %v, only in the view projected afresh %v", t, onlyLive, onlyFresh))
		}
	}
	return diffs, nil
}

func collect(ctx context.Context, pool *pgxpool.Pool, sql string, into *[]string) error {
	rows, err := pool.Query(ctx, sql)
	if err != nil {
		return err
	}
	*into, err = pgx.CollectRows(rows, pgx.RowTo[string])
	return err
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

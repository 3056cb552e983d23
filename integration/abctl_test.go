package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain/view"
	"github.com/answerback/answerback/libs/pipeline/envelope"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
	"github.com/answerback/answerback/libs/testenv"
	"github.com/answerback/answerback/services/abctl/cli"
)

// abctl runs the operations tool against the stack and decodes its --json
// output into v; it fails the test unless the exit code is 0.
func (s *stack) abctl(v any, args ...string) {
	s.t.Helper()
	var out, errOut bytes.Buffer
	args = append([]string{"--brokers", strings.Join(s.k.Seeds, ","), "--topic-prefix", s.prefix, "--database-url", s.pg.DSN, "--json"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if code := cli.Main(ctx, args, strings.NewReader(""), &out, &errOut); code != 0 {
		s.t.Fatalf("abctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		s.t.Fatalf("abctl %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out.String())
	}
}

// viewChecksum digests the view's tables — of every order when ids is
// empty, else of those orders and their lines, with the whole catalog and
// the reservations.
func viewChecksum(t testing.TB, pool *pgxpool.Pool, ids []string) string {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	var sums []string
	for _, q := range []string{
		`SELECT coalesce(md5(string_agg(c::text, E'\n' ORDER BY c::text)), '') FROM catalog_items c`,
		`SELECT coalesce(md5(string_agg(r::text, E'\n' ORDER BY r::text)), '') FROM sku_reservations r`,
		`SELECT coalesce(md5(string_agg(o::text, E'\n' ORDER BY o::text)), '') FROM orders o WHERE cardinality($1::text[]) = 0 OR o.id = ANY($1)`,
		`SELECT coalesce(md5(string_agg(l::text, E'\n' ORDER BY l::text)), '') FROM order_lines l WHERE cardinality($1::text[]) = 0 OR l.order_id = ANY($1)`,
	} {
		var sum string
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, ids)
		}
		if err := pool.QueryRow(ctx, q, args...).Scan(&sum); err != nil {
			t.Fatalf("checksum: %v", err)
		}
		sums = append(sums, sum)
	}
	return strings.Join(sums, "/")
}

// load sends add-item commands to orders until stop is closed, through
// both gateways, and counts the answers that are not 200.
type load struct {
	sent, failed atomic.Int64
	stop         chan struct{}
	wg           sync.WaitGroup
	halt         func() // stops the load and waits for it; also when the test fails
}

func (s *stack) startLoad(orders []string) *load {
	l := &load{stop: make(chan struct{})}
	l.halt = sync.OnceFunc(func() { close(l.stop); l.wg.Wait() })
	s.t.Cleanup(l.halt)
	for w, id := range orders {
		l.wg.Add(1)
		go func() { // owned by the test: stopLoad waits for it
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				r := s.call(w+i, http.MethodPost, "/v1/orders/"+id+"/items", map[string]any{"sku": "kiwi", "quantity": 1})
				l.sent.Add(1)
				if r.Status != http.StatusOK {
					l.failed.Add(1)
					s.t.Errorf("live load: add to %s: %d %s", id, r.Status, r.Body)
				}
			}
		}()
	}
	return l
}

// loadCatalog is the default catalog and kiwis, which the live load adds
// without ever running out.
var loadCatalog = map[string]map[string]any{
	"apple":  defaultCatalog["apple"],
	"pear":   defaultCatalog["pear"],
	"banana": defaultCatalog["banana"],
	"kiwi":   {"name": "Kiwi", "unitPrice": 30, "stock": 1_000_000_000, "maxPerOrder": 1_000_000_000, "active": true},
}

// createOrders creates n orders named prefix-i, each with an item; with
// submit, every fourth is submitted. It returns their IDs.
func (s *stack) createOrders(prefix string, n int, submit bool) []string {
	s.t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		s.mustCall(i, http.StatusCreated, http.MethodPost, "/v1/orders", map[string]any{"id": id, "customerId": "c"})
		s.mustCall(i+1, http.StatusOK, http.MethodPost, "/v1/orders/"+id+"/items", map[string]any{"sku": "apple", "quantity": 1 + i%3})
		if submit && i%4 == 0 {
			s.mustCall(i, http.StatusOK, http.MethodPost, "/v1/orders/"+id+"/submit", nil)
		}
		ids = append(ids, id)
	}
	return ids
}

// repliesByCommand counts the replies on the gateways' reply topics by command ID.
func (s *stack) repliesByCommand() map[string]int {
	s.t.Helper()
	counts := map[string]int{}
	for i := range s.gateways {
		for _, r := range s.readTopic(topics.ReplyTopic(s.prefix, fmt.Sprintf("gw%d-%s", i+1, s.k.Prefix))) {
			reply, err := envelope.DecodeReply(r)
			if err != nil {
				s.t.Errorf("undecodable reply: %v", err)
				continue
			}
			counts[reply.CommandID]++
		}
	}
	return counts
}

// TestReplayUnderLoad: replaying every partition of the orders' events
// into the live view while commands keep coming changes nothing the replay
// covers (the checksum of those orders, the catalog and the reservations is
// the same after) and answers nobody: every command has one reply.
func TestReplayUnderLoad(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(loadCatalog)
		replayed := s.createOrders("r", 12, true)
		live := s.createOrders("live", 3, false)
		before := viewChecksum(t, s.pg.Pool, replayed)

		l := s.startLoad(live)
		var out struct {
			Records int64
			Skipped int64
			Ranges  []projector.Range
		}
		s.abctl(&out, "replay", "--view", "views", "--topic", s.topics("orders").Events, "--partition", "0,1,2", "--from-offset", "0")
		l.halt()

		if out.Records < int64(len(replayed)*2) || out.Skipped != 0 || len(out.Ranges) != 3 {
			t.Errorf("replay: %+v, want at least %d records over 3 ranges, none left out", out, len(replayed)*2)
		}
		if after := viewChecksum(t, s.pg.Pool, replayed); after != before {
			t.Errorf("the view changed under replay: checksum %s, before %s", after, before)
		}
		if l.sent.Load() == 0 {
			t.Error("no live load ran during the replay")
		}
		// From a time: everything of the last hour, which is all of it.
		var since struct{ Records int64 }
		s.abctl(&since, "replay", "--view", "views", "--partition", "0,1,2", "--from-time", "1h")
		if since.Records < out.Records {
			t.Errorf("replay --from-time 1h: %d records, want at least the %d from offset 0", since.Records, out.Records)
		}
		if after := viewChecksum(t, s.pg.Pool, replayed); after != before {
			t.Errorf("the view changed under replay --from-time: checksum %s, before %s", after, before)
		}
		for id, n := range s.repliesByCommand() {
			if n != 1 {
				t.Errorf("command %s: %d replies, want 1 (a replay must answer nobody)", id, n)
			}
		}
	})
}

// TestRebuildUnderLoad: rebuilding the view while commands keep coming and
// clients keep reading swaps in a view equal to one built from scratch,
// and no read fails, during the swap either.
func TestRebuildUnderLoad(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(loadCatalog)
		existing := s.createOrders("old", 15, true)
		live := s.createOrders("live", 3, false)

		var reads, readFailures atomic.Int64
		stopReads := make(chan struct{})
		var readers sync.WaitGroup
		for g := range 2 {
			readers.Add(1)
			go func() { // owned by the test: waited for below
				defer readers.Done()
				for i := 0; ; i++ {
					select {
					case <-stopReads:
						return
					default:
					}
					id := existing[i%len(existing)]
					for _, path := range []string{"/v1/orders/" + id, "/v1/orders/" + id + "/valid-items", "/v1/catalog"} {
						r := s.call(g+i, http.MethodGet, path, nil)
						reads.Add(1)
						if r.Status != http.StatusOK {
							readFailures.Add(1)
							t.Errorf("read %s during the rebuild: %d %s", path, r.Status, r.Body)
						}
					}
				}
			}()
		}
		stopReaders := sync.OnceFunc(func() { close(stopReads); readers.Wait() })
		t.Cleanup(stopReaders)
		l := s.startLoad(live)
		var out projector.RebuildStats
		s.abctl(&out, "rebuild", "--view", "views", "--swap-within", "20")
		readsAtSwap := reads.Load()
		time.Sleep(300 * time.Millisecond) // reads and writes go on after the swap
		l.halt()
		stopReaders()

		if len(out.Tables) == 0 || out.Records == 0 {
			t.Fatalf("rebuild: %+v", out)
		}
		if readsAtSwap == 0 || reads.Load() == readsAtSwap || readFailures.Load() != 0 {
			t.Errorf("reads: %d before the swap ended, %d in all, %d failed", readsAtSwap, reads.Load(), readFailures.Load())
		}
		t.Logf("rebuild: %d records, %d passes, swap locked the view for %s (%d records in it); %d reads, %d live commands",
			out.Records, out.Passes, out.SwapLocked, out.SwapRecords, reads.Load(), l.sent.Load())

		// Every command was answered, so the live projector has applied all:
		// a view built from scratch up to its offsets must be equal.
		scratch := testenv.NewPostgres(t)
		ctx := testenv.Context(t, time.Minute)
		if err := view.Migrate(ctx, scratch.Pool); err != nil {
			t.Fatal(err)
		}
		if err := projector.EnsureSchema(ctx, scratch.Pool); err != nil {
			t.Fatal(err)
		}
		p := view.Projection(s.prefix)
		offsets, err := projector.StoredOffsets(ctx, s.pg.Pool, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		var ranges []projector.Range
		for _, o := range offsets {
			if _, ok := p.Topics[o.Topic]; ok {
				ranges = append(ranges, projector.Range{Topic: o.Topic, Partition: o.Partition, To: o.Next})
			}
		}
		if _, err := projector.Replay(ctx, p, projector.ReplayConfig{Brokers: k.Seeds, Pool: scratch.Pool, Tracked: true}, ranges); err != nil {
			t.Fatal(err)
		}
		if got, want := viewChecksum(t, s.pg.Pool, nil), viewChecksum(t, scratch.Pool, nil); got != want {
			t.Errorf("the rebuilt view differs from one built from scratch: %s, want %s", got, want)
		}
		// The swapped-in view goes on living: a new command is projected into it.
		s.mustCall(0, http.StatusOK, http.MethodPost, "/v1/orders/"+existing[1]+"/items", map[string]any{"sku": "apple", "quantity": 1})
		var schemas int
		if err := s.pg.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'views_rebuild%'`).Scan(&schemas); err != nil || schemas != 0 {
			t.Errorf("rebuild schemas left: %d (%v)", schemas, err)
		}
	})
}

// TestStatus: status reports both aggregator groups with their members,
// the view caught up with its event topics (no lag at rest, although every
// transaction leaves a marker offset behind), both gateways live with their
// reply topics, and a dead letter pending.
func TestStatus(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(defaultCatalog)
		s.createOrders("s", 6, true)
		ctx := testenv.Context(t, time.Minute)
		if err := k.Client(t).ProduceSync(ctx, &kgo.Record{Topic: s.topics("orders").Commands, Key: []byte("s-0"), Value: []byte("not json")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		type lagged struct {
			Partitions []struct {
				Topic     string
				Partition int32
				Committed int64
				End       int64
				Lag       int64
			}
			Lag int64
		}
		var st struct {
			Aggregators []struct {
				Group   string
				State   string
				Members int
				lagged
			}
			Views []struct {
				View string
				lagged
			}
			DLQ []struct {
				Topic                          string
				DeadLetters, Redriven, Pending int
			}
			Gateways []struct{ Instance, State, Topic string }
			Lag      int64
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			s.abctl(&st, "status")
			pending := 0
			for _, d := range st.DLQ {
				pending += d.Pending
			}
			if st.Lag == 0 && pending == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never settled at no lag and one dead letter: %+v", st)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if len(st.Aggregators) != 2 || len(st.Views) != 1 || st.Views[0].View != "views" {
			t.Fatalf("status: %+v", st)
		}
		for _, g := range st.Aggregators {
			if g.Members != 1 || g.State != "Stable" || len(g.Partitions) != 3 {
				t.Errorf("aggregator group %+v: want one member, Stable, 3 partitions", g)
			}
		}
		if len(st.Gateways) != 2 {
			t.Errorf("gateways %+v: want the stack's two", st.Gateways)
		}
		for _, g := range st.Gateways {
			if g.State != "live" || g.Topic != topics.ReplyTopic(s.prefix, g.Instance) {
				t.Errorf("gateway %+v: want live, with its reply topic", g)
			}
		}
		var ends int64
		for _, p := range st.Views[0].Partitions {
			ends += p.End
			if p.Committed < 0 && p.End > 0 {
				t.Errorf("view partition %+v: records, but no offset stored", p)
			}
		}
		if len(st.Views[0].Partitions) != 6 || ends == 0 {
			t.Errorf("view partitions %+v: want 6 (3 per event topic), with records", st.Views[0].Partitions)
		}
	})
}

// TestRebuildResumes: a rebuild interrupted part way is resumed by the next
// one, which applies only what the first left and swaps in a view equal to
// the one it replaces.
func TestRebuildResumes(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		s := startStack(t, k, stackOptions{})
		s.seedCatalog(loadCatalog)
		s.createOrders("o", 20, true)
		before := viewChecksum(t, s.pg.Pool, nil)

		ctx, interrupt := context.WithCancel(testenv.Context(t, time.Minute))
		defer interrupt()
		var first int64
		_, err := projector.Rebuild(ctx, view.Projection(s.prefix), projector.RebuildConfig{
			Brokers: k.Seeds, Pool: s.pg.Pool, Migrate: view.Migrate, BatchSize: 10, SwapWithin: 1,
			Progress: func(_, done int64) {
				if first = done; done >= 10 {
					interrupt() // as an operator's Ctrl-C would
				}
			},
		})
		if !errors.Is(err, context.Canceled) || first < 10 {
			t.Fatalf("interrupted rebuild: %v after %d records, want context.Canceled after 10 or more", err, first)
		}
		var out projector.RebuildStats
		s.abctl(&out, "rebuild", "--view", "views")
		if !out.Resumed || out.Records == 0 || len(out.Tables) == 0 {
			t.Fatalf("resumed rebuild: %+v, want resumed, with records applied and tables swapped", out)
		}
		var total int64
		offsets, err := projector.StoredOffsets(testenv.Context(t, 10*time.Second), s.pg.Pool, "views")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range offsets {
			if strings.HasSuffix(o.Topic, ".events") {
				total += o.Next
			}
		}
		if out.Records+first > total {
			t.Errorf("resumed rebuild applied %d records after the first's %d, more than the %d offsets of the events", out.Records, first, total)
		}
		if after := viewChecksum(t, s.pg.Pool, nil); after != before {
			t.Errorf("rebuilt view %s, want the one it replaced, %s", after, before)
		}
	})
}

// TestReplayAppliesEveryRange: a replay in many small transactions over six
// partitions applies every record of its ranges, and a second replay of the
// same ranges (untracked, into the built view) changes nothing.
func TestReplayAppliesEveryRange(t *testing.T) {
	t.Parallel()
	testenv.EachKafka(t, func(t *testing.T, k *testenv.Kafka) {
		t.Parallel()
		ctx := testenv.Context(t, 2*time.Minute)
		prefix, ranges := produceOrderEvents(ctx, t, k, 300, 5)
		pg := emptyView(ctx, t)
		p := view.Projection(prefix)
		st, err := projector.Replay(ctx, p, projector.ReplayConfig{Brokers: k.Seeds, Pool: pg.Pool, Tracked: true, BatchSize: 40}, ranges)
		if err != nil || st.Records != 1500 || st.Skipped != 0 {
			t.Fatalf("replay: %+v, %v; want 1,500 records, none left out", st, err)
		}
		var orders, lines int
		if err := pg.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders WHERE version = 5), (SELECT count(*) FROM order_lines)`).Scan(&orders, &lines); err != nil {
			t.Fatal(err)
		}
		if orders != 300 || lines != 1200 {
			t.Errorf("view: %d orders at version 5, %d lines; want 300 and 1,200", orders, lines)
		}
		before := viewChecksum(t, pg.Pool, nil)
		if _, err := projector.Replay(ctx, p, projector.ReplayConfig{Brokers: k.Seeds, Pool: pg.Pool, BatchSize: 40}, ranges); err != nil {
			t.Fatal(err)
		}
		if after := viewChecksum(t, pg.Pool, nil); after != before {
			t.Errorf("a second replay changed the view: %s, want %s", after, before)
		}
	})
}

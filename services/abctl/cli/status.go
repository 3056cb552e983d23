package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/answerback/answerback/libs/domain"
	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/libs/pipeline/topics"
	"github.com/answerback/answerback/libs/projector"
)

func init() { register(newStatusCmd) }

// partitionLag is how far a consumer is behind one partition.
type partitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"` // the next offset to process; -1 when none is stored
	End       int64  `json:"end"`       // the partition's end (for event topics: the last stable offset)
	Lag       int64  `json:"lag"`
}

// groupStatus is one aggregator consumer group.
type groupStatus struct {
	Group      string         `json:"group"`
	State      string         `json:"state"`
	Members    int            `json:"members"`
	Partitions []partitionLag `json:"partitions"`
	Lag        int64          `json:"lag"`
}

// viewStatus is one view: the offsets its projector stored in PostgreSQL
// against its event topics.
type viewStatus struct {
	View       string         `json:"view"`
	Partitions []partitionLag `json:"partitions"`
	Lag        int64          `json:"lag"`
}

// dlqStatus is one dead-letter topic.
type dlqStatus struct {
	Topic       string `json:"topic"`
	DeadLetters int    `json:"deadLetters"`
	Redriven    int    `json:"redriven"`
	Pending     int    `json:"pending"` // neither redriven nor purged
}

type status struct {
	Aggregators []groupStatus `json:"aggregators"`
	Views       []viewStatus  `json:"views"`
	// Gateways are the reply topics and the gateway registry's entries,
	// as `abctl replies list` shows them.
	Gateways []replyRow  `json:"gateways"`
	DLQ      []dlqStatus `json:"dlq"`
	Lag      int64       `json:"lag"` // the sum of every lag above
}

func newStatusCmd(a *App) *cobra.Command {
	var maxLag int64
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Lag of the aggregators and views, live gateways, dead letters",
		Long: `status shows, per aggregator consumer group and partition, the committed
offset, the log end and the lag; per view, the offsets its projector stored
in PostgreSQL against the end of the event topics; the gateways in the
registry and their reply topics (as replies list shows them); and the dead letters per topic, with how
many were redriven.

With --max-lag N it exits 5 when any lag is over N (for scripts and probes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			adm, err := a.Admin()
			if err != nil {
				return err
			}
			var st status
			if st.Aggregators, err = aggregatorStatus(ctx, adm, a.Prefix); err != nil {
				return err
			}
			if st.Views, err = a.viewStatus(ctx, adm); err != nil {
				return err
			}
			if st.DLQ, err = dlqStatusOf(ctx, a); err != nil {
				return err
			}
			if st.Gateways, _, err = a.surveyReplies(ctx, defaultStaleAfter, true); err != nil {
				return err
			}
			if st.Gateways == nil {
				st.Gateways = []replyRow{}
			}
			worst := int64(0)
			for _, g := range st.Aggregators {
				st.Lag += g.Lag
				for _, p := range g.Partitions {
					worst = max(worst, p.Lag)
				}
			}
			for _, v := range st.Views {
				st.Lag += v.Lag
				for _, p := range v.Partitions {
					worst = max(worst, p.Lag)
				}
			}
			if err := a.Print(st, func(t *Table) { printStatus(t, st) }); err != nil {
				return err
			}
			if maxLag > 0 && worst > maxLag {
				return withCode(ExitPending, fmt.Errorf("a partition lags by %d records, over --max-lag %d", worst, maxLag))
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&maxLag, "max-lag", 0, "exit 5 when a partition's lag is over this (0: never)")
	return cmd
}

func aggregatorStatus(ctx context.Context, adm *kadm.Client, prefix string) ([]groupStatus, error) {
	var groups []string
	for _, d := range domain.Names {
		groups = append(groups, prefix+d+"-aggregator")
	}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("aggregator groups: %w", err)
	}
	var out []groupStatus
	for _, g := range groups {
		l := lags[g]
		if errors.Is(l.DescribeErr, kerr.GroupIDNotFound) {
			out = append(out, groupStatus{Group: g, State: "NotFound", Partitions: []partitionLag{}})
			continue // no aggregator ever ran
		}
		if err := cmpErr(l.DescribeErr, l.FetchErr); err != nil {
			return nil, fmt.Errorf("group %s: %w", g, err)
		}
		gs := groupStatus{Group: g, State: l.State, Members: len(l.Members), Partitions: []partitionLag{}}
		for _, ml := range l.Lag.Sorted() {
			pl := partitionLag{Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At, End: ml.End.Offset, Lag: ml.Lag}
			if ml.Lag < 0 { // no commit yet: everything is left
				pl.Lag = ml.End.Offset - max(ml.Start.Offset, 0)
			}
			gs.Partitions = append(gs.Partitions, pl)
			gs.Lag += pl.Lag
		}
		out = append(out, gs)
	}
	return out, nil
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}

func (a *App) viewStatus(ctx context.Context, adm *kadm.Client) ([]viewStatus, error) {
	pool, err := a.Pool(ctx)
	if err != nil {
		return nil, err
	}
	var out []viewStatus
	for name, v := range a.views() {
		stored, err := projector.StoredOffsets(ctx, pool, v.projection.Name)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			stored, err = nil, nil // no projector has run on this database yet
		}
		if err != nil {
			return nil, err
		}
		ends, err := adm.ListCommittedOffsets(ctx, v.eventTopics()...)
		if err != nil {
			return nil, fmt.Errorf("end offsets of %v: %w", v.eventTopics(), err)
		}
		if err := ends.Error(); errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, withCode(ExitNotFound, fmt.Errorf("the event topics %v of view %s do not exist: is --topic-prefix right? (abctl topics ensure creates them)", v.eventTopics(), name))
		} else if err != nil {
			return nil, fmt.Errorf("end offsets of %v: %w", v.eventTopics(), err)
		}
		var listed []kadm.ListedOffset
		ends.Each(func(o kadm.ListedOffset) { listed = append(listed, o) })
		slices.SortFunc(listed, func(x, y kadm.ListedOffset) int {
			return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition))
		})
		vs := viewStatus{View: name, Partitions: []partitionLag{}}
		for _, e := range listed {
			pl := partitionLag{Topic: e.Topic, Partition: e.Partition, Committed: -1, End: e.Offset}
			for _, s := range stored {
				if s.Topic == e.Topic && s.Partition == e.Partition {
					pl.Committed = s.Next
				}
			}
			pl.Lag = max(e.Offset-max(pl.Committed, 0), 0)
			vs.Partitions = append(vs.Partitions, pl)
		}
		if err := a.countCommitted(ctx, vs.Partitions); err != nil {
			return nil, err
		}
		for _, p := range vs.Partitions {
			vs.Lag += p.Lag
		}
		out = append(out, vs)
	}
	slices.SortFunc(out, func(x, y viewStatus) int { return cmp.Compare(x.View, y.View) })
	return out, nil
}

func dlqStatusOf(ctx context.Context, a *App) ([]dlqStatus, error) {
	parts, err := dlqTopics(ctx, a, "")
	var coded *codedError
	if errors.As(err, &coded) && coded.code == ExitNotFound {
		return []dlqStatus{}, nil
	}
	if err != nil {
		return nil, err
	}
	letters, err := scanDLQ(ctx, a, parts)
	if err != nil {
		return nil, err
	}
	var out []dlqStatus
	for _, d := range domain.Names {
		name := topics.For(a.Prefix, d).DLQ
		if _, ok := parts[name]; !ok {
			continue
		}
		s := dlqStatus{Topic: name}
		for _, l := range letters {
			if l.Topic != name {
				continue
			}
			s.DeadLetters++
			if l.Redriven {
				s.Redriven++
			} else {
				s.Pending++
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func printStatus(t *Table, st status) {
	t.Line("AGGREGATORS")
	t.Row("GROUP", "STATE", "MEMBERS", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG")
	for _, g := range st.Aggregators {
		if len(g.Partitions) == 0 {
			t.Row(g.Group, g.State, g.Members, "-", "-", "-", "-", 0)
		}
		for _, p := range g.Partitions {
			t.Row(g.Group, g.State, g.Members, p.Topic, p.Partition, offsetCell(p.Committed), p.End, p.Lag)
		}
	}
	t.Line("\nVIEWS (offsets stored in PostgreSQL)")
	t.Row("VIEW", "TOPIC", "PARTITION", "STORED", "END", "LAG")
	for _, v := range st.Views {
		for _, p := range v.Partitions {
			t.Row(v.View, p.Topic, p.Partition, offsetCell(p.Committed), p.End, p.Lag)
		}
	}
	t.Line("\nGATEWAYS (live: a heartbeat in the last %s)", defaultStaleAfter)
	t.Row("INSTANCE", "STATE", "LAST HEARTBEAT", "REPLY TOPIC")
	for _, g := range st.Gateways {
		beat := "-"
		if g.LastHeartbeat != nil {
			beat = g.LastHeartbeat.Format(time.RFC3339)
		}
		t.Row(g.Instance, g.State, beat, cmp.Or(g.Topic, "-"))
	}
	t.Line("\nDEAD LETTERS")
	t.Row("TOPIC", "DEAD LETTERS", "REDRIVEN", "PENDING")
	for _, d := range st.DLQ {
		t.Row(d.Topic, d.DeadLetters, d.Redriven, d.Pending)
	}
}

// countCommitted replaces a small lag by the committed records in it: the
// offsets of an event topic include a transaction marker after every
// transaction, which the projector never stores an offset past — at rest a
// view would seem to lag by one per partition.
func (a *App) countCommitted(ctx context.Context, parts []partitionLag) error {
	const small = 100
	consume := map[string]map[int32]kgo.Offset{}
	todo := map[string]*partitionLag{}
	key := func(t string, p int32) string { return fmt.Sprintf("%s/%d", t, p) }
	for i := range parts {
		p := &parts[i]
		if p.Lag == 0 || p.Lag > small {
			continue
		}
		if consume[p.Topic] == nil {
			consume[p.Topic] = map[int32]kgo.Offset{}
		}
		consume[p.Topic][p.Partition] = kgo.NewOffset().At(max(p.Committed, 0))
		todo[key(p.Topic, p.Partition)] = p
		p.Lag = 0
	}
	if len(todo) == 0 {
		return nil
	}
	sec, err := a.kafkaSecurity()
	if err != nil {
		return err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(service.List(a.Brokers)...), kgo.ConsumePartitions(consume),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200 * time.Millisecond),
	}
	cl, err := kgo.NewClient(append(opts, sec...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(todo) > 0 {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fetches.NumRecords() == 0 {
			return nil // the rest is markers or aborted records
		}
		fetches.EachRecord(func(r *kgo.Record) {
			p, ok := todo[key(r.Topic, r.Partition)]
			if !ok {
				return
			}
			if r.Offset < p.End {
				p.Lag++
			}
			if r.Offset >= p.End-1 {
				delete(todo, key(r.Topic, r.Partition))
			}
		})
	}
	return nil
}

// offsetCell shows an offset, or "-" when none is stored.
func offsetCell(o int64) any {
	if o < 0 {
		return "-"
	}
	return o
}

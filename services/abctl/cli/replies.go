package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"

	gateways "github.com/answerback/answerback/libs/pipeline/registry"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

func init() { register(newRepliesCmd) }

// States of a reply topic or registry entry.
const (
	replyLive         = "live"         // its instance heartbeats: kept
	replyStale        = "stale"        // its instance's last heartbeat is too old: the instance is gone
	replyUnregistered = "unregistered" // no registry entry names it: its instance is gone
)

// replyRow is one reply topic, or one registry entry without a topic.
type replyRow struct {
	Topic         string     `json:"topic,omitempty"`
	Instance      string     `json:"instance"`
	Host          string     `json:"host,omitempty"`
	LastHeartbeat *time.Time `json:"lastHeartbeat,omitempty"`
	State         string     `json:"state"`
	// Action: keep, would-delete (list, --dry-run), deleted, already-gone,
	// skipped-live-again, failed; none for an entry without a topic.
	Action string `json:"action,omitempty"`
	Error  string `json:"error,omitempty"`
}

type repliesReport struct {
	StaleAfter string     `json:"staleAfter"`
	DryRun     bool       `json:"dryRun"`
	Replies    []replyRow `json:"replies"`
}

// defaultStaleAfter is when a gateway's last heartbeat makes it gone.
const defaultStaleAfter = 30 * time.Second

func newRepliesCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replies",
		Short: "List gateways' reply topics; delete those of departed gateways",
		Long: `Every gateway instance owns a reply topic, <prefix>replies.<instance>, and
heartbeats into the gateway registry (<prefix>answerback.gateways) while it
runs. A topic is live while its instance's last heartbeat is younger than
--stale-after (and than two of the instance's own heartbeat intervals);
stale when the heartbeat is older; unregistered when no registry entry
names it. A crashed gateway leaves a stale or unregistered topic behind.`,
	}
	var staleAfter time.Duration
	cmd.PersistentFlags().DurationVar(&staleAfter, "stale-after", defaultStaleAfter, "a heartbeat older than this is stale (heartbeats come every 5s; clocks must agree to well within this)")

	list := &cobra.Command{
		Use:   "list",
		Short: "Show every reply topic and registry entry with its state",
		Long: `list shows every reply topic and every registry entry with its state (live,
stale, unregistered) and what gc would do with it now.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if staleAfter <= 0 {
				return usageErrorf("--stale-after must be positive")
			}
			rows, _, err := a.surveyReplies(cmd.Context(), staleAfter, true)
			if err != nil {
				return err
			}
			for i := range rows {
				rows[i].Action = replyPlan(rows[i])
			}
			return a.printReplies(repliesReport{StaleAfter: staleAfter.String(), Replies: rows})
		},
	}

	var dryRun bool
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Delete the reply topics of gateways that are gone",
		Long: `gc deletes every reply topic that is not live: stale or unregistered. It
lists the topics first and reads the registry afterwards, so a gateway that
is starting (it registers before it creates its topic) is seen as live; just
before deleting it reads the registry again and skips any instance that
became live meanwhile. What remains is a gateway restarting under the same
instance ID during those milliseconds.

gc refuses (exit 4) when the registry topic does not exist: gateways that
predate the registry may be running. Run it only once every gateway runs a
version that registers. --dry-run only reports.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if staleAfter <= 0 {
				return usageErrorf("--stale-after must be positive")
			}
			ctx := cmd.Context()
			rows, registered, err := a.surveyReplies(ctx, staleAfter, false)
			if err != nil {
				return err
			}
			if !registered && len(rows) > 0 {
				return withCode(ExitRefused, fmt.Errorf("no gateway registry (%s): gateways that predate it may be live; nothing deleted", topics.GatewayRegistry(a.Prefix)))
			}
			for i := range rows {
				rows[i].Action = replyPlan(rows[i])
			}
			failed := 0
			if !dryRun && slices.ContainsFunc(rows, func(r replyRow) bool { return r.Action == "would-delete" }) {
				if failed, err = a.deleteReplyTopics(ctx, rows, staleAfter); err != nil {
					return err
				}
			}
			if err := a.printReplies(repliesReport{StaleAfter: staleAfter.String(), DryRun: dryRun, Replies: rows}); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("replies: %d reply topics could not be deleted", failed)
			}
			return nil
		},
	}
	gc.Flags().BoolVar(&dryRun, "dry-run", false, "only report what would be deleted")
	cmd.AddCommand(list, gc)
	return cmd
}

// replyPlan is what gc does with a row now, before it checks again.
func replyPlan(r replyRow) string {
	switch {
	case r.Topic == "":
		return ""
	case r.State == replyLive:
		return "keep"
	default:
		return "would-delete"
	}
}

// surveyReplies lists the reply topics under the prefix, then reads the
// registry — in that order, so that every topic of a starting gateway has its
// entry — and returns one row per reply topic, plus, with withEntries, one per
// registry entry that names no existing topic; and whether the registry topic
// exists.
func (a *App) surveyReplies(ctx context.Context, staleAfter time.Duration, withEntries bool) ([]replyRow, bool, error) {
	adm, err := a.Admin()
	if err != nil {
		return nil, false, err
	}
	listed, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("list topics: %w", err)
	}
	entries, err := a.readRegistry(ctx)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	namePrefix := topics.ReplyTopic(a.Prefix, "")
	var rows []replyRow
	named := map[string]bool{}
	for _, topic := range listed.Names() {
		instance, ok := strings.CutPrefix(topic, namePrefix)
		if !ok || instance == "" {
			continue
		}
		rows = append(rows, replyRowFor(entries, topic, instance, now, staleAfter))
		named[instance] = true
	}
	if withEntries {
		for instance := range entries {
			if !named[instance] && !listed.Has(entries[instance].ReplyTopic) {
				rows = append(rows, replyRowFor(entries, "", instance, now, staleAfter))
			}
		}
	}
	slices.SortFunc(rows, func(x, y replyRow) int {
		return strings.Compare(x.Instance+"\x00"+x.Topic, y.Instance+"\x00"+y.Topic)
	})
	return rows, listed.Has(topics.GatewayRegistry(a.Prefix)), nil
}

// readRegistry reads the gateway registry, bounded by --timeout.
func (a *App) readRegistry(ctx context.Context) (map[string]gateways.Entry, error) {
	cl, err := a.Kafka()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	entries, err := gateways.Read(ctx, cl, a.Prefix)
	if err != nil {
		return nil, fmt.Errorf("gateway registry: %w", err)
	}
	return entries, nil
}

// replyRowFor classifies topic (empty: the entry of instance alone). Its owner is
// the entry of instance or, when that is missing or stale, a live entry that
// names topic as its reply topic.
func replyRowFor(entries map[string]gateways.Entry, topic, instance string, now time.Time, staleAfter time.Duration) replyRow {
	e, ok := entries[instance]
	for _, other := range entries {
		if topic != "" && other.ReplyTopic == topic && (!ok || other.LiveAt(now, staleAfter)) {
			e, ok = other, true
		}
	}
	row := replyRow{Topic: topic, Instance: instance, State: replyUnregistered}
	if ok {
		at := e.HeartbeatAt
		row.Host, row.LastHeartbeat, row.State = e.Host, &at, replyStale
		if e.LiveAt(now, staleAfter) {
			row.State = replyLive
		}
	}
	return row
}

// deleteReplyTopics reads the registry again, skips the rows marked
// would-delete whose instance became live, deletes the others' topics and
// records the outcome in each row. It returns how many deletions failed.
func (a *App) deleteReplyTopics(ctx context.Context, rows []replyRow, staleAfter time.Duration) (int, error) {
	entries, err := a.readRegistry(ctx)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	var doomed []string
	for i, r := range rows {
		if r.Action != "would-delete" {
			continue
		}
		if again := replyRowFor(entries, r.Topic, r.Instance, now, staleAfter); again.State == replyLive {
			rows[i] = again
			rows[i].Action = "skipped-live-again"
			continue
		}
		doomed = append(doomed, r.Topic)
	}
	if len(doomed) == 0 {
		return 0, nil
	}
	adm, err := a.Admin()
	if err != nil {
		return 0, err
	}
	resps, err := adm.DeleteTopics(ctx, doomed...)
	if err != nil {
		return 0, fmt.Errorf("delete topics: %w", err)
	}
	failed := 0
	for i, r := range rows {
		if !slices.Contains(doomed, r.Topic) {
			continue
		}
		resp, err := resps.On(r.Topic, nil)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			rows[i].Action = "deleted"
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			rows[i].Action = "already-gone"
		default:
			rows[i].Action, rows[i].Error = "failed", err.Error()
			failed++
		}
	}
	return failed, nil
}

func (a *App) printReplies(rep repliesReport) error {
	if rep.Replies == nil {
		rep.Replies = []replyRow{}
	}
	return a.Print(rep, func(t *Table) {
		t.Row("TOPIC", "INSTANCE", "HOST", "LAST HEARTBEAT", "STATE", "ACTION")
		for _, r := range rep.Replies {
			heartbeat := "-"
			if r.LastHeartbeat != nil {
				heartbeat = fmt.Sprintf("%s (%s ago)", r.LastHeartbeat.Format(time.RFC3339), time.Since(*r.LastHeartbeat).Round(time.Second))
			}
			action := replyCell(r.Action)
			if r.Error != "" {
				action += ": " + r.Error
			}
			t.Row(replyCell(r.Topic), r.Instance, replyCell(r.Host), heartbeat, r.State, action)
		}
		if rep.DryRun {
			t.Line("dry run: nothing deleted")
		}
	})
}

func replyCell(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

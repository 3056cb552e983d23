package cli

import (
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/libs/projector"
)

func init() { register(newReplayCmd) }

func newReplayCmd(a *App) *cobra.Command {
	var (
		viewName   string
		topics     []string
		partitions []int32
		fromOffset int64
		fromTime   string
	)
	cmd := &cobra.Command{
		Use:   "replay --view VIEW --partition P (--from-offset O | --from-time T)",
		Short: "Project part of the event topics into the live view again",
		Long: `replay applies the events of the chosen partitions again to the live view,
from an offset or a time up to where the live projector has got. The live
projector keeps running. Applying is idempotent, so events the view has
change nothing, and a replay has no other effect: no reply is sent, no
outcome recorded, no dead letter produced (events refused for good are left
out and counted). To build a view again from scratch, after a change of the
projection's code or schema, use rebuild.`,
		Example: `  abctl replay --view views --partition 2 --from-offset 0
  abctl replay --view views --topic orders.events --partition 0 --partition 1 --from-time 2026-11-24T08:00:00Z
  abctl replay --view views --partition 0 --from-time 2h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			v, err := a.view(viewName)
			if err != nil {
				return err
			}
			if len(partitions) == 0 {
				return usageErrorf("--partition is required")
			}
			fromOffsetSet, fromTimeSet := cmd.Flags().Changed("from-offset"), cmd.Flags().Changed("from-time")
			if fromOffsetSet == fromTimeSet {
				return usageErrorf("give one of --from-offset and --from-time")
			}
			if fromOffset < 0 {
				return usageErrorf("--from-offset must not be negative")
			}
			var since time.Time
			if fromTimeSet {
				if since, err = parseSince(fromTime, time.Now()); err != nil {
					return usageErrorf("--from-time: %v", err)
				}
			}
			if len(topics) == 0 {
				topics = v.eventTopics()
			}
			for _, t := range topics {
				if !slices.Contains(v.eventTopics(), t) {
					return withCode(ExitNotFound, fmt.Errorf("%s is not an event topic of view %s (its topics: %v)", t, viewName, v.eventTopics()))
				}
			}
			pool, err := a.Pool(ctx)
			if err != nil {
				return err
			}
			live, err := projector.StoredOffsets(ctx, pool, v.projection.Name)
			if err != nil {
				return err
			}
			var starts kadm.ListedOffsets
			if fromTimeSet {
				adm, err := a.Admin()
				if err != nil {
					return err
				}
				if starts, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topics...); err != nil {
					return fmt.Errorf("offsets at %s: %w", since.Format(time.RFC3339), err)
				}
			}
			var ranges []projector.Range
			for _, t := range topics {
				for _, p := range partitions {
					r := projector.Range{Topic: t, Partition: p, From: fromOffset}
					for _, o := range live {
						if o.Topic == t && o.Partition == p {
							r.To = o.Next
						}
					}
					if fromTimeSet {
						o, ok := starts.Lookup(t, p)
						if !ok || o.Err != nil {
							return withCode(ExitNotFound, fmt.Errorf("%s has no partition %d", t, p))
						}
						r.From = o.Offset
					}
					r.From = min(r.From, r.To) // nothing beyond what the live projector has applied
					ranges = append(ranges, r)
				}
			}
			var total int64
			for _, r := range ranges {
				total += r.To - r.From
			}
			sec, err := a.kafkaSecurity()
			if err != nil {
				return err
			}
			bar := a.newProgress("replay")
			var done int64
			started := time.Now()
			stats, err := projector.Replay(ctx, v.projection, projector.ReplayConfig{
				Brokers: service.List(a.Brokers), Pool: pool, Logger: a.logger(), ClientOpts: sec,
				Progress: func(n int64) { done += n; bar.set(total, done) },
			}, ranges)
			bar.finish()
			if err != nil {
				return fmt.Errorf("replay: %w", err)
			}
			out := struct {
				View    string            `json:"view"`
				Ranges  []projector.Range `json:"ranges"`
				Records int64             `json:"records"`
				Skipped int64             `json:"skipped"`
				Seconds float64           `json:"seconds"`
			}{viewName, ranges, stats.Records, stats.Skipped, time.Since(started).Seconds()}
			return a.Print(out, func(t *Table) {
				t.Row("TOPIC", "PARTITION", "FROM", "TO")
				for _, r := range ranges {
					t.Row(r.Topic, r.Partition, r.From, r.To)
				}
				t.Line("replayed %d records into view %s in %.1fs; %d refused for good and left out", stats.Records, viewName, out.Seconds, stats.Skipped)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&viewName, "view", "views", "the view to replay into")
	f.StringSliceVar(&topics, "topic", nil, "event topics to replay (default: every event topic of the view)")
	f.Int32SliceVar(&partitions, "partition", nil, "partitions to replay (repeat or comma-separate)")
	f.Int64Var(&fromOffset, "from-offset", 0, "first offset to replay")
	f.StringVar(&fromTime, "from-time", "", "replay from the first record at or after this time (RFC 3339, or a duration ago such as 2h)")
	return cmd
}

// parseSince reads an RFC 3339 time, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
	}
	return now.Add(-d), nil
}

package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/answerback/answerback/libs/pipeline/service"
	"github.com/answerback/answerback/libs/projector"
)

func init() { register(newRebuildCmd) }

func newRebuildCmd(a *App) *cobra.Command {
	var (
		viewName    string
		swapWithin  int64
		lockTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rebuild --view VIEW",
		Short: "Build a view again from offset 0 in a shadow schema, then swap it in",
		Long: `rebuild builds the view again from the start of its event topics into a
shadow schema (<view>_rebuild), with the view's current migrations, while
the live view keeps serving and the live projector keeps running. Once the
shadow is within --swap-within records of the live projector, one
transaction locks the live view's tables, catches the shadow up to exactly
the live projector's offsets, and moves the shadow's tables into place; the
old view is dropped after. Reads and the live projector wait during the
swap (its duration is printed) and never fail.

Run it after a change of the projection's code or the view's schema, with
the release that has them. Interrupted, it resumes where it was when run
again. Command outcomes and the live projector's offsets are kept.`,
		Example: `  abctl rebuild --view views`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			v, err := a.view(viewName)
			if err != nil {
				return err
			}
			pool, err := a.Pool(ctx)
			if err != nil {
				return err
			}
			sec, err := a.kafkaSecurity()
			if err != nil {
				return err
			}
			bar := a.newProgress("rebuild")
			started := time.Now()
			stats, err := projector.Rebuild(ctx, v.projection, projector.RebuildConfig{
				Brokers: service.List(a.Brokers), Pool: pool, Migrate: v.migrate,
				SwapWithin: swapWithin, LockTimeout: lockTimeout, Logger: a.logger(),
				Progress: bar.set, ClientOpts: sec,
			})
			bar.finish()
			if err != nil {
				if ctx.Err() != nil {
					return withCode(ExitPending, fmt.Errorf("rebuild interrupted; run it again to resume: %w", err))
				}
				return err
			}
			out := struct {
				View string `json:"view"`
				projector.RebuildStats
				Seconds float64 `json:"seconds"`
			}{viewName, stats, time.Since(started).Seconds()}
			return a.Print(out, func(t *Table) {
				t.Row("VIEW", "RESUMED", "RECORDS", "LEFT OUT", "PASSES", "SWAP LOCKED", "RECORDS IN SWAP", "TOOK")
				t.Row(viewName, stats.Resumed, stats.Records, stats.Skipped, stats.Passes, stats.SwapLocked.Round(time.Millisecond), stats.SwapRecords, time.Since(started).Round(time.Millisecond))
				t.Line("swapped in: %v", stats.Tables)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&viewName, "view", "views", "the view to rebuild")
	f.Int64Var(&swapWithin, "swap-within", 1000, "swap once fewer records than this are left to catch up")
	f.DurationVar(&lockTimeout, "lock-timeout", 30*time.Second, "how long the swap may keep trying to lock the live view (each try gives way before PostgreSQL's deadlock_timeout, so that readers are never aborted)")
	return cmd
}

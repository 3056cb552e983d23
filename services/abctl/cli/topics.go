package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/answerback/answerback/libs/domain"
	"github.com/answerback/answerback/libs/pipeline/topics"
)

func init() { register(newTopicsCmd) }

func newTopicsCmd(a *App) *cobra.Command {
	cmd := &cobra.Command{Use: "topics", Short: "Create or verify the domains' topics"}
	var partitions int32
	var replication int16
	ensure := &cobra.Command{
		Use:   "ensure",
		Short: "Create missing topics and set drifted configuration, as the services do at start",
		Long: `ensure creates every domain's topics that are missing — commands, events,
snapshots, outcomes and dead letters — with the given partitions and
replication, events and outcomes kept forever and snapshots compacted; it
sets the configuration of existing topics that drifted from that. It runs
the same code as the aggregator at start. It never changes the partitions
of an existing topic; commands and snapshots that are not co-partitioned
are an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if partitions < 1 {
				return usageErrorf("--partitions must be at least 1")
			}
			adm, err := a.Admin()
			if err != nil {
				return err
			}
			var all []topics.State
			var ensureErr error
			for _, d := range domain.Names {
				states, err := topics.Ensure(cmd.Context(), adm, topics.For(a.Prefix, d), partitions, replication)
				all = append(all, states...)
				if err != nil {
					ensureErr = err
					break
				}
			}
			if err := a.Print(map[string]any{"topics": all}, func(t *Table) {
				t.Row("TOPIC", "PARTITIONS", "REPLICAS", "ACTION", "CONFIGURATION")
				for _, s := range all {
					action := "verified"
					switch {
					case s.Created:
						action = "created"
					case len(s.Altered) > 0:
						action = "altered (was " + formatConfigs(s.Altered) + ")"
					}
					t.Row(s.Topic, s.Partitions, s.Replicas, action, formatConfigs(s.Configs))
				}
			}); err != nil {
				return err
			}
			if ensureErr != nil {
				return fmt.Errorf("topics: %w", ensureErr)
			}
			return nil
		},
	}
	ensure.Flags().Int32Var(&partitions, "partitions", 6, "partitions of topics created now (existing topics keep theirs)")
	ensure.Flags().Int16Var(&replication, "replication", -1, "replication factor of topics created now (-1: the broker's default)")
	cmd.AddCommand(ensure)
	return cmd
}

// formatConfigs renders configuration as k=v pairs in key order; "-" when empty.
func formatConfigs(c map[string]string) string {
	if len(c) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, k+"="+c[k])
	}
	return strings.Join(parts, " ")
}

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/processors/pipeline"
)

func newReplayCmd() *cobra.Command {
	var names []string
	var from string
	cmd := &cobra.Command{
		Use:   "replay --stage NAME... [--from TIME]",
		Short: "Rewind stopped stages' consumer groups for a backfill; nothing is sent twice",
		Long: `Moves the committed offsets of each named stage's consumer group back to --from (RFC 3339;
default: the earliest records kept), so the stage processes those records again when it next
starts. Stop the stage first. Replays are safe: event, offer and delivery IDs are derived from
their inputs, and member-state, timing and send deduplicate on them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var at time.Time
			if from != "" {
				var err error
				if at, err = time.Parse(time.RFC3339, from); err != nil {
					return fmt.Errorf("--from: %w", err)
				}
			}
			return withKafka(cmd, 0, nil, func(ctx context.Context, _ config.Config, cl *kgo.Client) error {
				adm := kadm.NewClient(cl)
				for _, n := range names {
					parts, err := pipeline.Replay(ctx, adm, n, at)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %d partitions rewound\n", n, parts)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringSliceVar(&names, "stage", nil, "stage to rewind (repeatable)")
	cmd.Flags().StringVar(&from, "from", "", "RFC 3339 time to replay from (default: earliest)")
	cmd.MarkFlagRequired("stage")
	return cmd
}

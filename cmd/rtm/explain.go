package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/explain"
)

func newExplainCmd() *cobra.Command {
	var member string
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain --member M [--since 24h] [--json]",
		Short: "Why a member got (or did not get) each message: every offer's path through the stages",
		Long: `Reads the member's partition of every member-keyed topic (offers.candidates to
delivery.results) from --since ago and prints each offer for the member: its campaign and event,
every stage's decision (with the rule table, version, row and reason of an exclusion), the channel,
the time timing held it until, and the delivery result. It reads only; nothing is written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since <= 0 {
				return fmt.Errorf("--since: %v must be positive", since)
			}
			return withKafka(cmd, 0, nil, func(ctx context.Context, cfg config.Config, cl *kgo.Client) error {
				rep, err := explain.Member(ctx, cl, cfg.Partitions, member, time.Now().Add(-since))
				if err != nil {
					return err
				}
				return printReport(cmd.OutOrStdout(), rep, asJSON)
			})
		},
	}
	cmd.Flags().StringVar(&member, "member", "", "member ID")
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back to look")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.MarkFlagRequired("member")
	return cmd
}

// textReport is a read-only command's result: rtm explain's, report's and
// simulate's.
type textReport interface{ WriteText(io.Writer) error }

// printReport prints rep for a person, or as indented JSON with --json.
func printReport(w io.Writer, rep textReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(w)
}

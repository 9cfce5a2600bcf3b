package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/report"
)

func newReportCmd() *cobra.Command {
	var campaign string
	since := days(30 * 24 * time.Hour)
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "report --campaign C [--since 30d] [--json]",
		Short: "A campaign's treatment and hold-out groups: sends, opens, clicks, conversions, and the uplift with a 95% interval",
		Long: `Reads delivery.results, behavior.events and campaign.conversions from --since ago and prints,
for the members sent campaign C's messages (treatment) and those held out of them (holdout, the
campaign table's holdout column): members, sends, opens, clicks, conversions (orders within the
conversion window after a delivery) and the conversion rate, then the uplift of the treatment's rate
over the hold-out's, absolute and relative, with Newcombe's 95% interval for the difference. It
reads only; nothing is written.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since <= 0 {
				return fmt.Errorf("--since: %v must be positive", time.Duration(since))
			}
			return withKafka(cmd, 0, nil, func(ctx context.Context, _ config.Config, cl *kgo.Client) error {
				rep, err := report.Campaign(ctx, cl, campaign, time.Now().Add(-time.Duration(since)))
				if err != nil {
					return err
				}
				return printReport(cmd.OutOrStdout(), rep, asJSON)
			})
		},
	}
	cmd.Flags().StringVar(&campaign, "campaign", "", "campaign ID (the campaign column of the campaign tables)")
	cmd.Flags().Var(&since, "since", "how far back to look: whole days (30d) or a Go duration (12h)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.MarkFlagRequired("campaign")
	return cmd
}

// days is a duration flag that also takes whole days ("30d"): campaign
// reports look back weeks, which Go durations spell only in hours.
type days time.Duration

func (d *days) String() string {
	if v := time.Duration(*d); v > 0 && v%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", v/(24*time.Hour))
	}
	return time.Duration(*d).String()
}

func (d *days) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.Atoi(n)
		if err != nil {
			return fmt.Errorf("%q: want whole days such as 30d or a duration such as 12h", s)
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want whole days such as 30d or a duration such as 12h", s)
	}
	*d = days(v)
	return nil
}

func (d *days) Type() string { return "duration" }

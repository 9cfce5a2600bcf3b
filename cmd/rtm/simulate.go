package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/simulate"
	"github.com/rtm-project/rtm/rules"
)

// simulateFlags are the flags `rtm simulate` and `rtm rules publish`
// share: the window of traffic to replay and how much to list.
type simulateFlags struct {
	from    string
	samples int
}

func (f *simulateFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.from, "from", "-24h", "start of the window of events to replay: a negative duration from now (-24h) or a time (RFC 3339)")
	cmd.Flags().IntVar(&f.samples, "samples", simulate.DefaultSamples, "members who gain, and who lose, a message to list per campaign (-1: all)")
}

// window parses --from against now.
func (f *simulateFlags) window(now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(f.from); err == nil {
		if d >= 0 {
			return time.Time{}, fmt.Errorf("--from %s: a duration must be negative (how far back)", f.from)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, f.from)
	if err != nil {
		return time.Time{}, fmt.Errorf("--from %q: want a negative duration (-24h) or an RFC 3339 time (2026-12-04T00:00:00+09:00)", f.from)
	}
	return t, nil
}

func (f *simulateFlags) options(prune bool) (simulate.Options, error) {
	from, err := f.window(time.Now())
	if err != nil {
		return simulate.Options{}, err
	}
	return simulate.Options{From: from, Prune: prune, Samples: f.samples}, nil
}

func newSimulateCmd() *cobra.Command {
	var sf simulateFlags
	var asJSON, prune bool
	cmd := &cobra.Command{
		Use:   "simulate CANDIDATE.xlsx... [--from -24h] [--json]",
		Short: "Try a rule change on the recorded traffic: what publishing it would change, per campaign",
		Long: `Loads and validates the workbooks as 'rtm rules validate' does, and replays the events since --from
(up to the end of the events topic now) through the rules in force and through the rules with the
workbooks' tables published over them, with the stages' own decision code, against the member
state and the timing ledgers as they are now. It prints, per campaign, reach, exclusions by rule,
channel mix, sends by hour, caps hit, and members who gain or lose a message with the rule that
made the difference. It reads without a consumer group and writes nothing: no topic, no offset, no
message.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			specs, err := loadWorkbooks(files)
			if err != nil {
				return err
			}
			opts, err := sf.options(prune)
			if err != nil {
				return err
			}
			return withKafka(cmd, 0, nil, func(ctx context.Context, cfg config.Config, cl *kgo.Client) error {
				rep, err := simulate.Run(ctx, cl, cfg.Partitions, specs, opts)
				if err != nil {
					return err
				}
				return printReport(cmd.OutOrStdout(), rep, asJSON)
			})
		},
	}
	sf.bind(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().BoolVar(&prune, "prune", false, "simulate publishing with --prune (live tables missing from the workbooks are removed)")
	return cmd
}

// errNeedsYes refuses a publish nobody can confirm.
var errNeedsYes = errors.New("rules publish asks for confirmation on a terminal, and stdin is not one: pass --yes to publish without asking (scripts, jobs)")

// stdinIsTerminal reports whether the command's input is a terminal,
// where a person can answer.
func stdinIsTerminal(cmd *cobra.Command) bool {
	f, ok := cmd.InOrStdin().(*os.File)
	return ok && isTerminal(f)
}

// confirm asks on the terminal whether to publish; only y or yes does.
func confirm(in io.Reader, out io.Writer, n int) (bool, error) {
	fmt.Fprintf(out, "publish %d changed table(s)? [y/N] ", n)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

// previewPublish simulates the publish on the recorded traffic and prints
// the summary; then, unless yes, asks for confirmation. It reports
// whether to go on.
func previewPublish(ctx context.Context, cmd *cobra.Command, cl *kgo.Client, specs []rules.TableSpec, opts simulate.Options, yes bool) (bool, error) {
	rep, err := simulate.Run(ctx, cl, 0, specs, opts)
	if err != nil {
		return false, fmt.Errorf("simulating the publish on the traffic since %s (--no-simulate publishes without): %w", opts.From.Format(time.RFC3339), err)
	}
	out := cmd.OutOrStdout()
	if err := rep.WriteText(out); err != nil {
		return false, err
	}
	if len(rep.Changes) == 0 || yes {
		return true, nil
	}
	ok, err := confirm(cmd.InOrStdin(), out, len(rep.Changes))
	if err != nil {
		return false, err
	}
	if !ok {
		fmt.Fprintln(out, "not published")
	}
	return ok, nil
}

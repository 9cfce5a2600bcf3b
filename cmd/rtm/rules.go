package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/rules"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rules", Short: "Decision tables: validate, test, publish, list, diff, roll back"}
	cmd.AddCommand(newRulesValidateCmd(), newRulesTestCmd(), newRulesPublishCmd(), newRulesListCmd(),
		newRulesDiffCmd(), newRulesRollbackCmd(), newRulesRenderCmd())
	return cmd
}

// loadWorkbooks reads every file; errors of all files are reported together.
func loadWorkbooks(files []string) ([]rules.TableSpec, error) {
	var specs []rules.TableSpec
	var errs []error
	for _, f := range files {
		s, err := rules.LoadWorkbook(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, s...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return specs, rules.Validate(specs)
}

func newRulesValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE.xlsx...",
		Short: "Check workbooks; every error names the workbook, sheet and cell",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			specs, err := loadWorkbooks(files)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TABLE\tKIND\tHIT POLICY\tRULES\tSHEET\tVERSION")
			for _, s := range specs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%.12s\n", s.Name, s.Kind, s.HitPolicy, len(s.Rows), s.Sheet, s.ContentHash())
			}
			fmt.Fprintf(w, "ok: %d tables\n", len(specs))
			return w.Flush()
		},
	}
}

// scenario is one entry of a --facts file.
type scenario struct {
	Name string `json:"name"`
	rules.Facts
}

func newRulesTestCmd() *cobra.Command {
	var factsFile string
	cmd := &cobra.Command{
		Use:   "test FILE.xlsx... --facts facts.json",
		Short: "Evaluate sample facts against the workbooks and print every decision",
		Long: `Evaluates each scenario of the facts file (a JSON object or array of objects with
"name", "event", "member" and "campaign", in the rule facts' field names) against every decision
table, and renders the templates a campaign decision names. Nothing is published.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			specs, err := loadWorkbooks(files)
			if err != nil {
				return err
			}
			set, err := rules.CompileSet(specs)
			if err != nil {
				return err
			}
			scenarios, err := readScenarios(factsFile)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, sc := range scenarios {
				fmt.Fprintf(out, "== %s\n", sc.Name)
				for _, t := range set.Tables() {
					if t.Kind() == rules.KindTemplate {
						continue
					}
					ds, err := t.Decide(nil, &sc.Facts)
					if err != nil {
						return err
					}
					if len(ds) == 0 {
						fmt.Fprintf(out, "  %-16s no rule matched\n", t.Name())
					}
					for _, d := range ds {
						b, _ := json.Marshal(outputsOf(d))
						fmt.Fprintf(out, "  %-16s %s → %s\n", t.Name(), d.Trace, b)
						if d.Campaign != nil {
							if err := renderVariants(out, set, d.Campaign, sc.Facts); err != nil {
								return err
							}
						}
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&factsFile, "facts", "", "JSON file of scenarios (required)")
	cmd.MarkFlagRequired("facts")
	return cmd
}

// renderVariants renders, for a campaign decision, its template's variant
// for every channel the template has one for — each looked up exactly as
// render does (Set.Template(id, channel)), since the channel stage may
// choose any of them.
func renderVariants(out io.Writer, set *rules.Set, c *rules.CampaignOutput, f rules.Facts) error {
	f.Campaign = rules.Campaign{ID: c.Campaign, Priority: c.Priority, Audience: c.Audience, Template: c.Template, Timing: c.Timing}
	channels := set.TemplateChannels(c.Template)
	if len(channels) == 0 {
		fmt.Fprintf(out, "  %-16s template %q: no variant for any channel (offers would be excluded: no_template)\n", "", c.Template)
		return nil
	}
	for _, ch := range channels {
		tp, _ := set.Template(c.Template, ch)
		r, err := tp.Render(&f)
		if err != nil {
			return err
		}
		rb, _ := json.Marshal(r)
		fmt.Fprintf(out, "  %-16s template %s\n", "", rb)
	}
	return nil
}

func outputsOf(d rules.Decision) any {
	switch {
	case d.Campaign != nil:
		return d.Campaign
	case d.Filter != nil:
		return d.Filter
	case d.Channel != nil:
		return d.Channel
	default:
		return d.Timing
	}
}

func readScenarios(path string) ([]scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var many []scenario
	if err := json.Unmarshal(b, &many); err == nil {
		return many, nil
	}
	var one scenario
	if err := json.Unmarshal(b, &one); err != nil {
		return nil, fmt.Errorf("facts %s: %w", path, err)
	}
	return []scenario{one}, nil
}

// withRulesClient runs f with a client of the configured brokers and a
// one-minute deadline. Publishing needs a transactional producer, so both
// rules topics change atomically.
func withRulesClient(cmd *cobra.Command, transactional bool, f func(context.Context, *kgo.Client) error) error {
	var opts []kgo.Opt
	if transactional {
		opts = append(opts, kgo.TransactionalID("rtm-rules-publish"), kgo.TransactionTimeout(30*time.Second))
	}
	return withKafka(cmd, time.Minute, opts, func(ctx context.Context, _ config.Config, cl *kgo.Client) error { return f(ctx, cl) })
}

// withKafka loads the command's configuration, checks that the cluster
// answers (failing at once, with the brokers and security tried), and runs
// f with a client of it, within timeout when it is positive.
func withKafka(cmd *cobra.Command, timeout time.Duration, opts []kgo.Opt, f func(context.Context, config.Config, *kgo.Client) error) error {
	cfg, err := load(cmd)
	if err != nil {
		return err
	}
	if err := checkKafka(cmd.Context(), cfg.KafkaConfig()); err != nil {
		return err
	}
	cl, err := cfg.KafkaConfig().NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := cmd.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return f(ctx, cfg, cl)
}

func author(flag string) string {
	if flag != "" {
		return flag
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}

func printChanges(w io.Writer, rep rules.PublishReport) {
	for _, c := range rep.Published {
		fmt.Fprintln(w, c)
	}
	if len(rep.Published) == 0 {
		fmt.Fprintf(w, "no changes (%d tables unchanged)\n", len(rep.Unchanged))
	}
}

func newRulesPublishCmd() *cobra.Command {
	var by string
	var prune, yes, noSimulate bool
	var sf simulateFlags
	cmd := &cobra.Command{
		Use:   "publish FILE.xlsx...",
		Short: "Validate, show what the change does to the recorded traffic, confirm, then publish changed tables atomically",
		Long: `Validates the workbooks, then shows what publishing them would change on the traffic since --from
(the summary of 'rtm simulate') and asks for confirmation on the terminal. --yes publishes without
asking (scripts and jobs must pass it: without a terminal and without --yes, publish refuses);
--no-simulate skips the summary (a cluster with no traffic or member state to read yet). Changed
tables are written to the rules topic and its history in one transaction.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if !yes && !stdinIsTerminal(cmd) {
				return errNeedsYes
			}
			specs, err := loadWorkbooks(files)
			if err != nil {
				return err
			}
			opts, err := sf.options(prune)
			if err != nil {
				return err
			}
			txn := []kgo.Opt{kgo.TransactionalID("rtm-rules-publish"), kgo.TransactionTimeout(30 * time.Second)}
			// No deadline over the whole command: the simulation reads a
			// day of traffic and the question waits for a person. The
			// publish itself gets a minute.
			return withKafka(cmd, 0, txn, func(ctx context.Context, _ config.Config, cl *kgo.Client) error {
				if !noSimulate {
					ok, err := previewPublish(ctx, cmd, cl, specs, opts, yes)
					if err != nil || !ok {
						return err
					}
				}
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				rep, err := rules.Publish(ctx, cl, specs, rules.PublishMeta{Author: author(by), Prune: prune})
				if err != nil {
					return err
				}
				printChanges(cmd.OutOrStdout(), rep)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&by, "author", "", "recorded as the publisher (default $USER)")
	cmd.Flags().BoolVar(&prune, "prune", false, "also remove live tables that are not in these workbooks")
	cmd.Flags().BoolVar(&yes, "yes", false, "publish without asking for confirmation (scripts, jobs)")
	cmd.Flags().BoolVar(&noSimulate, "no-simulate", false, "publish without simulating the change on the recorded traffic first")
	sf.bind(cmd)
	return cmd
}

func newRulesListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "The tables in force: name, kind, version, source, author, time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withRulesClient(cmd, false, func(ctx context.Context, cl *kgo.Client) error {
				live, err := rules.List(ctx, cl)
				if err != nil {
					return err
				}
				names := make([]string, 0, len(live))
				for n := range live {
					names = append(names, n)
				}
				slices.Sort(names)
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "TABLE\tKIND\tRULES\tVERSION\tSOURCE\tAUTHOR\tPUBLISHED")
				for _, n := range names {
					s := live[n]
					fmt.Fprintf(w, "%s\t%s\t%d\t%.12s\t%s\t%s\t%s\n", s.Name, s.Kind, len(s.Rows), s.Meta.Version, s.Meta.SourceFile,
						s.Meta.Author, s.Meta.PublishedAt.Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
}

func newRulesDiffCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "diff FILE.xlsx...",
		Short: "What publishing these workbooks would change",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			specs, err := loadWorkbooks(files)
			if err != nil {
				return err
			}
			return withRulesClient(cmd, false, func(ctx context.Context, cl *kgo.Client) error {
				live, err := rules.List(ctx, cl)
				if err != nil {
					return err
				}
				for _, c := range rules.Diff(live, specs) {
					fmt.Fprintln(cmd.OutOrStdout(), c)
				}
				return nil
			})
		},
	}
}

func newRulesRollbackCmd() *cobra.Command {
	var to, by string
	cmd := &cobra.Command{
		Use:   "rollback TABLE --to VERSION",
		Short: "Publish an earlier version of a table again (a version prefix is enough)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withRulesClient(cmd, true, func(ctx context.Context, cl *kgo.Client) error {
				rep, err := rules.Rollback(ctx, cl, args[0], to, rules.PublishMeta{Author: author(by)})
				if err != nil {
					return err
				}
				printChanges(cmd.OutOrStdout(), rep)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "version to restore (required)")
	cmd.Flags().StringVar(&by, "author", "", "recorded as the publisher (default $USER)")
	cmd.MarkFlagRequired("to")
	return cmd
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/rtm-project/rtm/topics"
)

func newTopicsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topics", Short: "The topic catalogue: list it, apply it to a cluster"}
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the catalogue as a table",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			cat := cfg.Catalogue()
			if err := cat.Validate(); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITIONS\tCLEANUP\tCO-PARTITIONED\tKEY\tVALUE\tOWNER")
			for _, t := range cat.Topics {
				co := "-"
				if t.CoPartitioned {
					co = "yes (" + t.Partitioner + ")"
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.Partitions, t.Cleanup, co, t.Key, t.Value, t.Owner)
			}
			return w.Flush()
		},
	}
	var dryRun bool
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Create missing catalogue topics on the cluster and report drift (idempotent)",
		Long: `Creates every catalogue topic that is missing, with its partitions and cleanup policy,
and checks existing ones. Drift (a different partition count or cleanup policy) is reported and
exits with status 2; it is never "fixed" automatically, because changing a partition count remaps
keys and breaks co-partitioned state. A second run prints "no changes".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			rep, err := applyTopics(cmd.Context(), cfg.KafkaConfig(), cfg.Catalogue(), dryRun, cfg.Logger())
			if err == nil || errors.Is(err, topics.ErrDrift) {
				fmt.Fprintln(cmd.OutOrStdout(), rep)
			}
			if errors.Is(err, topics.ErrDrift) {
				return exitCode(2)
			}
			return err
		},
	}
	apply.Flags().BoolVar(&dryRun, "dry-run", false, "report only; create nothing")
	cmd.AddCommand(list, apply)
	return cmd
}

// applyTopics provisions cat on brokers, fitting replication to the cluster.
func applyTopics(ctx context.Context, k kafka.Config, cat topics.Catalogue, dryRun bool, log *slog.Logger) (topics.ApplyReport, error) {
	if err := checkKafka(ctx, k); err != nil {
		return topics.ApplyReport{}, err
	}
	cl, err := k.NewClient()
	if err != nil {
		return topics.ApplyReport{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rf, err := topics.FitReplication(ctx, adm, cat.Replication)
	if err != nil {
		return topics.ApplyReport{}, err
	}
	if rf != cat.Replication {
		log.Warn("cluster has fewer brokers than the configured replication; creating topics with fewer replicas",
			"configured", cat.Replication, "using", rf)
		cat.Replication = rf
	}
	return topics.Apply(ctx, adm, cat, dryRun)
}

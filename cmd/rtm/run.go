package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/processors/pipeline"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
)

func newRunCmd() *cobra.Command {
	var names []string
	cmd := &cobra.Command{
		Use:   "run --stage NAME [--stage NAME...]",
		Short: "Run stages (one consumer group each) against --brokers",
		Long: fmt.Sprintf(`Runs the named stages until interrupted, each supervised: a stage that stops with an
error is rebuilt and restarted with backoff. Deploy one instance per stage and scale it by
partitions; every instance of a stage shares its consumer group.

Stages: %s`, strings.Join(pipeline.Stages(), ", ")),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			if len(names) == 0 {
				return fmt.Errorf("name at least one --stage (%s)", strings.Join(pipeline.Stages(), ", "))
			}
			return runStages(cmd.Context(), cfg, cfg.Logger(), names)
		},
	}
	cmd.Flags().StringSliceVar(&names, "stage", nil, "stage to run (repeatable, or comma-separated)")
	return cmd
}

// runStages runs stages with a rules watcher until ctx is done. Stages start
// once the watcher has applied the rules in force, so no message is decided
// by an empty rule set.
func runStages(ctx context.Context, cfg config.Config, log *slog.Logger, names []string) error {
	cl, err := newClient(cfg.Brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	w := rules.NewWatcher(cl, rules.WithLogger(log))
	ctx, cancel := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Go(func() { stage.Supervise(ctx, "rules-watcher", log, w.Run) })
	defer watching.Wait() // after cancel, before the client closes
	defer cancel()
	select {
	case <-w.Ready():
	case <-ctx.Done():
		return nil
	}
	pc, closeAdapters, err := pipelineConfig(cfg, w, log, names)
	if err != nil {
		return err
	}
	defer closeAdapters()
	return pipeline.Run(ctx, pc, names...)
}

// Command rtm is RTM's one binary: the embedded broker, topic provisioning,
// rules, and (one per consumer group) the stages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rtm:", err)
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		os.Exit(1)
	}
}

// exitCode lets a command fail with a specific status (e.g. 2 for drift)
// after printing its own report.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "rtm",
		Short:         "RTM: realtime marketing on Kafka",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	config.RegisterFlags(root.PersistentFlags())
	root.AddCommand(newBrokerCmd(), newTopicsCmd(), newConfigCmd(), newDevCmd(), newRulesCmd(), newRunCmd(), newCollectCmd(), newCDCCmd(), newReplayCmd())
	return root
}

// load reads the configuration for cmd (defaults, file, env, flags).
func load(cmd *cobra.Command) (config.Config, error) {
	return config.Load(cmd.Flags())
}

// Command rtm is RTM's one binary: the embedded broker, topic provisioning,
// rules, and (one per consumer group) the stages.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/config"
)

func main() {
	ctx, stop := handleSignals()
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
	root.AddCommand(newBrokerCmd(), newTopicsCmd(), newConfigCmd(), newDevCmd(), newRulesCmd(), newRunCmd(),
		newCollectCmd(), newCDCCmd(), newReplayCmd(), newExplainCmd(), newReportCmd(), newSimulateCmd(), newSinksCmd(), newProbeCmd(), newConsoleCmd())
	bindSettings(root)
	return root
}

// settings says which configuration groups each command reads: its help
// shows only those flags, and Load applies only those variables.
var settings = map[string][]config.Group{
	"rtm broker":         {config.GroupBroker},
	"rtm config":         allGroups,
	"rtm dev":            {config.GroupTopology, config.GroupProcess, config.GroupStages, config.GroupChannels, config.GroupCollector, config.GroupInbox, config.GroupBroker, config.GroupSinks, config.GroupConsole},
	"rtm run":            {config.GroupKafka, config.GroupTopology, config.GroupProcess, config.GroupStages, config.GroupChannels, config.GroupInbox},
	"rtm cdc":            {config.GroupKafka, config.GroupProcess, config.GroupMSSQL},
	"rtm collect":        {config.GroupKafka, config.GroupProcess, config.GroupCollector},
	"rtm sinks":          {config.GroupProcess, config.GroupSinks},
	"rtm replay":         {config.GroupKafka},
	"rtm explain":        {config.GroupKafka, config.GroupTopology},
	"rtm report":         {config.GroupKafka},
	"rtm console":        {config.GroupKafka, config.GroupTopology, config.GroupProcess, config.GroupConsole},
	"rtm simulate":       {config.GroupKafka, config.GroupTopology},
	"rtm topics list":    {config.GroupTopology},
	"rtm topics apply":   {config.GroupKafka, config.GroupTopology},
	"rtm rules publish":  {config.GroupKafka},
	"rtm rules list":     {config.GroupKafka},
	"rtm rules diff":     {config.GroupKafka},
	"rtm rules rollback": {config.GroupKafka},
	"rtm rules render":   {config.GroupKafka, config.GroupTopology, config.GroupStages, config.GroupChannels},
}

var allGroups = []config.Group{config.GroupKafka, config.GroupTopology, config.GroupProcess, config.GroupStages,
	config.GroupChannels, config.GroupCollector, config.GroupInbox, config.GroupMSSQL, config.GroupBroker, config.GroupSinks, config.GroupConsole}

// bindings holds each runnable command's settings, for load.
var bindings = map[*cobra.Command]*config.Binding{}

// bindSettings binds every runnable command below c to its settings (the
// log settings alone when the table names none).
func bindSettings(c *cobra.Command) {
	if c.Runnable() {
		bindings[c] = config.Bind(c.Flags(), settings[c.CommandPath()]...)
	}
	for _, sub := range c.Commands() {
		bindSettings(sub)
	}
}

// load reads the configuration for cmd (defaults, file, env, flags).
func load(cmd *cobra.Command) (config.Config, error) {
	b, ok := bindings[cmd]
	if !ok {
		return config.Config{}, fmt.Errorf("%s reads no settings", cmd.CommandPath())
	}
	return b.Load()
}

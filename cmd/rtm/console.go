package main

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/console"
	"github.com/rtm-project/rtm/internal/ops"
	"github.com/rtm-project/rtm/processors/pipeline"
)

func newConsoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "console",
		Short: "Serve the marketers' web console: pipeline, rules (upload, publish, roll back), member lookup, campaign results",
		Long: `Serves the web console under /console/ on http_addr, next to /healthz, /readyz and /metrics.
Sign-in takes a user name (recorded as the author of every change) and the administrator password
or token, console.admin_token, from RTM_CONSOLE_ADMIN_TOKEN or RTM_CONSOLE_ADMIN_TOKEN_FILE only
(at least 32 bytes). The pipeline page reads <url>/readyz of every console.stage_urls entry (the
stage processes' http_addr) and the stages' consumer lag from the cluster every
console.poll_interval. Rules are read from and published to the cluster's rules topics, exactly as
rtm rules does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			if cfg.Console.AdminToken == "" {
				return fmt.Errorf("set the console's administrator token, at least %d bytes (RTM_CONSOLE_ADMIN_TOKEN or RTM_CONSOLE_ADMIN_TOKEN_FILE): the console is never open", config.MinSecretBytes)
			}
			ctx := cmd.Context()
			if err := checkKafka(ctx, cfg.KafkaConfig()); err != nil {
				return err
			}
			ui := &lateHandler{}
			p, err := startProcess(ctx, cfg, false, consoleRoutes(ui, true), "console")
			if err != nil {
				return err
			}
			defer p.close()
			c, closeConsole, err := newConsole(cfg, p, console.HTTPReadiness(cfg.Console.StageURLs, nil))
			if err != nil {
				return err
			}
			defer closeConsole()
			ui.set(c)
			p.health.Set("console", ops.Status{State: ops.Running})
			p.log.Info("console ready", "url", "http://"+p.srv.Addr()+console.Prefix+"/", "stage_urls", cfg.Console.StageURLs)
			c.Run(ctx)
			return nil
		},
	}
}

// consoleRoutes are the ops server's routes to the console; withRoot
// also sends / there (rtm console, where nothing else is at the root).
func consoleRoutes(ui http.Handler, withRoot bool) map[string]http.Handler {
	routes := map[string]http.Handler{console.Prefix + "/": ui}
	if withRoot {
		routes["GET /{$}"] = http.RedirectHandler(console.Prefix+"/", http.StatusSeeOther)
	}
	return routes
}

// newConsole builds the console of a process from its settings: its
// clients of the cluster, the stages' groups, the simulate and report
// hooks (console_hooks.go), the process's logger and metrics registry.
func newConsole(cfg config.Config, p *process, ready console.Readiness) (*console.Console, func(), error) {
	k := cfg.KafkaConfig()
	hookClient, err := k.NewClient()
	if err != nil {
		return nil, nil, err
	}
	simulate, report := consoleHooks(cfg, hookClient)
	c, err := console.New(console.Config{
		AdminToken:   cfg.Console.AdminToken,
		SessionTTL:   cfg.Console.SessionTTL,
		NewClient:    k.NewClient,
		Partitions:   cfg.Partitions,
		Groups:       pipeline.Stages(),
		PollInterval: cfg.Console.PollInterval,
		Readiness:    ready,
		Simulate:     simulate,
		Report:       report,
		Log:          p.log,
		Registerer:   p.reg,
	})
	if err != nil {
		hookClient.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); hookClient.Close() }, nil
}

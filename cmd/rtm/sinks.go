package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/internal/ops"
)

func newSinksCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sinks",
		Short: "Serve local protocol sinks (SMTP, LINE and FCM HTTP) that accept and keep what they are sent",
		Long: `Runs the local sinks that rtm dev uses, as a process of their own, so that a multi-process
deployment (docker compose's dev profile, the fault-injection suite) has somewhere safe to send:
an SMTP server on sink-smtp-addr, the LINE Messaging and FCM HTTP v1 endpoints on sink-http-addr,
and what they received at http://<sink-http-addr>/sinks/{mail,line,push}. Point the send stage at
them with RTM_SMTP_HOST/RTM_SMTP_PORT/RTM_SMTP_TLS=none, RTM_LINE_BASE_URL and RTM_FCM_BASE_URL,
with the tokens the sinks accept (RTM_LINE_TOKEN=rtm-dev-line-token, RTM_FCM_TOKEN=rtm-dev-fcm-token,
RTM_FCM_PROJECT=rtm-dev).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			p, err := startProcess(ctx, cfg, false, nil, "sinks")
			if err != nil {
				return err
			}
			defer p.close()
			sc := cfg.Sinks
			sc.Logger = p.log
			sk, err := sinks.Start(ctx, sc)
			if err != nil {
				return fmt.Errorf("starting local sinks: %w", err)
			}
			defer sk.Close()
			p.health.Set("sinks", ops.Status{State: ops.Running})
			fmt.Fprintf(cmd.OutOrStdout(), "sinks: smtp://%s  http://%s (received: /sinks/mail, /sinks/line, /sinks/push)\n",
				sk.SMTP.Addr(), sk.HTTP.Addr())
			<-ctx.Done()
			return nil
		},
	}
}

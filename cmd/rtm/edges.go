package main

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/connectors/collector"
	"github.com/rtm-project/rtm/connectors/mssql"
)

func newCollectCmd() *cobra.Command {
	var apiKeys []string
	cmd := &cobra.Command{
		Use:   "collect",
		Short: "Serve the behaviour collector (POST /v1/events) and tracking links (/t/o, /t/c)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			if len(cfg.TrackingSecret) < 16 {
				return errors.New("set a tracking secret of at least 16 bytes (RTM_TRACKING_SECRET), the same as the render stage's")
			}
			log := cfg.Logger()
			p, err := collector.NewProducer(cfg.Brokers)
			if err != nil {
				return err
			}
			defer p.Close()
			s, err := collector.New(collector.Config{Addr: cfg.CollectorAddr, APIKeys: apiKeys,
				TrackingSecret: []byte(cfg.TrackingSecret), Registerer: prometheus.DefaultRegisterer}, p, log)
			if err != nil {
				return err
			}
			go serveOpsOrLog(cfg.HTTPAddr, log)
			return s.Run(cmd.Context())
		},
	}
	cmd.Flags().StringSliceVar(&apiKeys, "api-key", nil, "accepted X-API-Key values for POST /v1/events (none: no authentication)")
	return cmd
}

func newCDCCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cdc",
		Short: "Run the SQL Server Change Tracking bridge into cdc.<table> (exactly once)",
		Long: `Polls CHANGETABLE(CHANGES ...) of every configured table under snapshot isolation and writes
the rows and the new checkpoint to Kafka in one transaction. Needs --mssql-dsn (RTM_MSSQL_DSN).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			if cfg.MSSQLDSN == "" {
				return errors.New("set the SQL Server DSN (--mssql-dsn or RTM_MSSQL_DSN)")
			}
			log := cfg.Logger()
			src, err := mssql.OpenSQL(cmd.Context(), cfg.MSSQLDSN)
			if err != nil {
				return fmt.Errorf("connecting to SQL Server: %w", err)
			}
			bc := mssql.Defaults()
			bc.Brokers = cfg.Brokers
			b, err := mssql.New(bc, src, log, prometheus.DefaultRegisterer)
			if err != nil {
				return err
			}
			go serveOpsOrLog(cfg.HTTPAddr, log)
			return b.Run(cmd.Context())
		},
	}
}

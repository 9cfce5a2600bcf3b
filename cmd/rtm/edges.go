package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/connectors/collector"
	"github.com/rtm-project/rtm/connectors/mssql"
	"github.com/rtm-project/rtm/internal/ops"
)

func newCollectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "collect",
		Short: "Serve the behaviour collector (POST /v1/events) and tracking links (/t/o, /t/c)",
		Long: `Serves POST /v1/events (JSON array or NDJSON; answered 202 once Kafka has the events) and the
sealed tracking links (/t/o, /t/c, and the one-click unsubscribe /t/u) on collector.addr, and
/healthz, /readyz, /metrics on http_addr. At least one API key is required (RTM_COLLECTOR_API_KEYS
or RTM_COLLECTOR_API_KEYS_FILE, comma-separated, each at least 32 bytes; several for rotation), and
the tracking secret (RTM_TRACKING_SECRET or RTM_TRACKING_SECRET_FILE, at least 32 bytes, the render
stage's; previous ones in RTM_TRACKING_OLD_SECRETS) — both from the environment only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			if len(cfg.TrackingSecret) < config.MinSecretBytes {
				return fmt.Errorf("set a tracking secret of at least %d bytes (RTM_TRACKING_SECRET or RTM_TRACKING_SECRET_FILE), the same as the render stage's", config.MinSecretBytes)
			}
			if len(cfg.Collector.APIKeys) == 0 {
				return fmt.Errorf("set at least one collector API key of at least %d bytes (RTM_COLLECTOR_API_KEYS or RTM_COLLECTOR_API_KEYS_FILE): POST /v1/events is never open", config.MinSecretBytes)
			}
			if err := checkKafka(cmd.Context(), cfg.KafkaConfig()); err != nil {
				return err
			}
			p, err := startProcess(cmd.Context(), cfg, false, nil, "collector")
			if err != nil {
				return err
			}
			defer p.close()
			ln, err := net.Listen("tcp", cfg.Collector.Addr)
			if err != nil {
				return fmt.Errorf("collector: %w", err)
			}
			s, closeProducer, err := newCollector(cfg, p)
			if err != nil {
				ln.Close()
				return err
			}
			defer closeProducer()
			p.health.Set("collector", ops.Status{State: ops.Running})
			return s.Serve(cmd.Context(), ln)
		},
	}
}

// newCollector builds the collector and its producer from the settings.
func newCollector(cfg config.Config, p *process) (*collector.Server, func(), error) {
	prod, err := collector.NewProducer(cfg.KafkaConfig())
	if err != nil {
		return nil, nil, err
	}
	keys, err := cfg.TrackingKeys()
	if err != nil {
		prod.Close()
		return nil, nil, err
	}
	c := cfg.Collector
	s, err := collector.New(collector.Config{Addr: c.Addr, APIKeys: c.APIKeys, MaxBodyBytes: c.MaxBodyBytes,
		MaxEvents: c.MaxEvents, RatePerSecond: c.RatePerSecond, Burst: c.Burst, TrackingRate: c.TrackingRate,
		TrackingBurst: c.TrackingBurst, Keys: keys, Registerer: p.reg}, prod, p.log)
	if err != nil {
		prod.Close()
		return nil, nil, err
	}
	// The collector keeps only the keys' hashes; drop the plain ones here.
	p.cfg.Collector.APIKeys = nil
	return s, prod.Close, nil
}

func newCDCCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cdc",
		Short: "Run the SQL Server Change Tracking bridge into cdc.<table> (exactly once)",
		Long: `Polls CHANGETABLE(CHANGES ...) of every configured table under snapshot isolation and writes
the rows and the new checkpoint to Kafka in one transaction. Needs the DSN in RTM_MSSQL_DSN (or
a file named by RTM_MSSQL_DSN_FILE).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			if cfg.MSSQLDSN == "" {
				return errors.New("set the SQL Server DSN (RTM_MSSQL_DSN or RTM_MSSQL_DSN_FILE)")
			}
			ctx := cmd.Context()
			if err := checkKafka(ctx, cfg.KafkaConfig()); err != nil {
				return err
			}
			p, err := startProcess(ctx, cfg, false, nil, "cdc-bridge")
			if err != nil {
				return err
			}
			defer p.close()
			src, err := mssql.OpenSQL(ctx, cfg.MSSQLDSN)
			if err != nil {
				return fmt.Errorf("connecting to SQL Server: %w", err)
			}
			bc := mssql.Defaults()
			bc.Kafka = cfg.KafkaConfig()
			b, err := mssql.New(bc, src, p.log, p.reg)
			if err != nil {
				return err
			}
			return runComponent(ctx, p, "cdc-bridge", b.Run)
		},
	}
}

// runComponent runs a component that has no recovery phase, reporting it
// running while it runs and failed when it stops with an error.
func runComponent(ctx context.Context, p *process, name string, run func(context.Context) error) error {
	p.health.Set(name, ops.Status{State: ops.Running})
	err := run(ctx)
	if err != nil && ctx.Err() == nil {
		p.health.Set(name, ops.Status{State: ops.Failed, LastError: err.Error()})
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/broker"
)

func newDevCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Run RTM on one machine: embedded broker, topics, rules and every built stage",
		Long: `Starts the embedded broker on --broker-addr (data under <data-dir>/kafka, resumed on the
next start), applies the topic catalogue, publishes rules/examples, and serves /healthz and
/metrics on --http-addr. Stops cleanly on Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := load(cmd)
			if err != nil {
				return err
			}
			log := cfg.Logger()
			ctx := cmd.Context()

			bc := cfg.Broker
			bc.DataDir = filepath.Join(cfg.DataDir, "kafka")
			b, err := broker.Start(bc, log)
			if err != nil {
				return err
			}
			defer b.Close()
			cfg.Brokers = []string{b.Addr()}

			rep, err := applyTopics(ctx, cfg.Brokers, cfg.Catalogue(), false, log)
			if err != nil {
				return fmt.Errorf("applying topics: %w", err)
			}
			log.Info("topics applied", "result", rep.String())

			srv, err := serveOps(cfg.HTTPAddr)
			if err != nil {
				return err
			}
			defer shutdown(srv)

			fmt.Fprintf(cmd.OutOrStdout(), `RTM dev is running.
  Kafka (embedded):  %s      try: kcat -b %s -L
  Health, metrics:   http://%s/healthz  http://%s/metrics
  Data:              %s (kept across restarts; delete it to start afresh)
Stages are not built yet: this runs the broker and the topic catalogue. Ctrl-C stops.
`, b.Addr(), b.Addr(), cfg.HTTPAddr, cfg.HTTPAddr, cfg.DataDir)
			<-ctx.Done()
			log.Info("shutting down")
			return nil
		},
	}
}

// serveOps serves /healthz and /metrics until shut down.
func serveOps(addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	}()
	return srv, nil
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

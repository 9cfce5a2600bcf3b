package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/dirlock"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/internal/ops"
	"github.com/rtm-project/rtm/processors/stage"
)

// Exit statuses beyond 0 (done) and 1 (an error).
const (
	// exitShutdownTimeout: the graceful stop took longer than
	// shutdown_timeout; local stores were not marked clean, so the next
	// start restores them from their changelogs.
	exitShutdownTimeout = 3
	// exitSecondSignal: a second SIGINT or SIGTERM during a graceful stop.
	exitSecondSignal = 130
)

// handleSignals returns a context that is cancelled by the first SIGINT or
// SIGTERM: commands then stop gracefully. A second signal exits at once,
// for the operator who cannot wait.
func handleSignals() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		cancel()
		s := <-sigs
		fmt.Fprintf(os.Stderr, "rtm: second signal (%v) during shutdown: exiting now\n", s)
		os.Exit(exitSecondSignal)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// kafkaCheckTimeout bounds the first contact with the cluster.
const kafkaCheckTimeout = 15 * time.Second

// checkKafka fails a command at once, naming the brokers and the security
// in use, when the cluster cannot be reached or refuses the credentials.
func checkKafka(ctx context.Context, k kafka.Config) error {
	return k.Check(ctx, kafkaCheckTimeout)
}

// process is what every long-running command has: its configuration and
// logger, the lock on its instance directory, the components' health and
// the ops endpoints.
type process struct {
	cfg    config.Config
	log    *slog.Logger
	health *ops.Health
	// dir is this instance's state directory, <data_dir>/<instance_id>.
	dir string
	// reg is the one registry the process's metrics are registered on
	// and /metrics serves.
	reg    *prometheus.Registry
	srv    *ops.Server
	unlock func() error
}

// startProcess locks the instance directory (when the command keeps
// local state), serves /healthz, /readyz and /metrics (and extra routes)
// on http_addr, and bounds the shutdown: once ctx is done, the process
// exits within shutdown_timeout whatever is stuck. components are the
// parts the process will run: they show as starting from the first
// /readyz answer on, so no answer ever lists nothing.
func startProcess(ctx context.Context, cfg config.Config, keepsState bool, extra map[string]http.Handler, components ...string) (*process, error) {
	p := &process{cfg: cfg, log: cfg.Logger(), dir: filepath.Join(cfg.DataDir, cfg.InstanceID)}
	if keepsState {
		unlock, err := dirlock.Lock(p.dir)
		if err != nil {
			return nil, err
		}
		p.unlock = unlock
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := stage.RegisterMetrics(reg); err != nil {
		p.close()
		return nil, err
	}
	p.reg = reg
	p.health = ops.NewHealth(reg)
	for _, c := range components {
		p.health.Set(c, ops.Status{State: ops.Starting})
	}
	srv, err := ops.Listen(cfg.HTTPAddr, p.health, reg, extra)
	if err != nil {
		p.close()
		return nil, err
	}
	p.srv = srv
	go boundShutdown(ctx, cfg.ShutdownTimeout, p.log)
	p.log.Info("serving /healthz, /readyz, /metrics", "addr", srv.Addr(), "instance_id", cfg.InstanceID)
	return p, nil
}

// close stops serving and releases the lock.
func (p *process) close() {
	if p.srv != nil {
		p.srv.Close()
	}
	if p.health != nil {
		p.health.Close()
	}
	if p.unlock != nil {
		if err := p.unlock(); err != nil {
			p.log.Warn("releasing the state directory lock", "err", err)
		}
	}
}

// boundShutdown ends the process shutdown_timeout after ctx is done. It
// exits without running deferred code, so no store that is still open
// writes its clean-shutdown marker: the next start restores from the
// changelog instead of trusting a half-closed store.
func boundShutdown(ctx context.Context, d time.Duration, log *slog.Logger) {
	<-ctx.Done()
	time.Sleep(d)
	log.Error("shutdown did not finish within shutdown_timeout; exiting without marking local state clean",
		"shutdown_timeout", d)
	os.Exit(exitShutdownTimeout)
}

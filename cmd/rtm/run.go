package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/rtm-project/rtm/config"
	"github.com/rtm-project/rtm/internal/lag"
	"github.com/rtm-project/rtm/internal/ops"
	"github.com/rtm-project/rtm/processors/inbox"
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
error is rebuilt and restarted with backoff, and one that fails max_failures times in a row ends
the process with a non-zero status. Deploy one instance per stage and scale it by partitions;
every instance of a stage shares its consumer group. Local state lives under
<data_dir>/<instance_id>, locked against a second process; instance_id is also the Kafka static
membership ID, so a restart inside the session timeout does not rebalance the group.

Serves /healthz, /readyz (200 once every stage has recovered its tables and runs, and the rules
are loaded; otherwise 503 with each stage's state) and /metrics on http_addr; the inbox stage
also serves GET /v1/inbox/{member} there, to a member with the shop's token only (a JWT: set
inbox.jwt.issuer and the keys, RTM_INBOX_JWT_HS256_KEYS or inbox.jwt.public_key_files).

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
			ctx := cmd.Context()
			if err := checkKafka(ctx, cfg.KafkaConfig()); err != nil {
				return err
			}
			inboxAPI := &lateHandler{}
			var extra map[string]http.Handler
			components := append([]string{"rules"}, names...)
			if slices.Contains(names, inbox.Group) {
				extra = map[string]http.Handler{"GET /v1/inbox/{member}": inboxAPI}
				components = append(components, inboxView)
			}
			p, err := startProcess(ctx, cfg, true, extra, components...)
			if err != nil {
				return err
			}
			defer p.close()
			if extra != nil {
				if err := runInboxView(ctx, p, inboxAPI); err != nil {
					return err
				}
			}
			return runStages(ctx, p, names)
		},
	}
	cmd.Flags().StringSliceVar(&names, "stage", nil, "stage to run (repeatable, or comma-separated)")
	return cmd
}

// runStages runs stages with a rules watcher until ctx is done, reporting
// to p's health. Stages start once the watcher has applied the rules in
// force, so no message is decided by an empty rule set. It returns an error
// when a stage gave up.
func runStages(ctx context.Context, p *process, names []string) error {
	cfg, log := p.cfg, p.log
	cl, err := cfg.KafkaConfig().NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	w := rules.NewWatcher(cl, rules.WithLogger(log))
	ctx, cancel := context.WithCancel(ctx)
	var watching sync.WaitGroup
	p.health.Set("rules", ops.Status{State: ops.Starting})
	watching.Go(func() { stage.Supervise(ctx, "rules-watcher", log, w.Run) })
	defer watching.Wait() // after cancel, before the client closes
	defer cancel()
	select {
	case <-w.Ready():
		p.health.Set("rules", ops.Status{State: ops.Running})
	case <-ctx.Done():
		return nil
	}
	pc, closeAdapters, err := pipelineConfig(cfg, p, w, names)
	if err != nil {
		return err
	}
	defer closeAdapters()
	if pc.StoreFS, err = storeFaults(p.health, log); err != nil {
		return err
	}
	lags := lag.New(cl, names, cfg.LagInterval, log)
	if err := p.reg.Register(lags); err != nil {
		return err
	}
	defer p.reg.Unregister(lags)
	watching.Go(func() { lags.Run(ctx) })
	return pipeline.Run(ctx, pc, names...)
}

// inboxView is the component that serves the inbox API.
const inboxView = "inbox-view"

// runInboxView starts the in-app inbox's view (its own copy of the inbox
// table, under the instance directory) and serves it through h once built.
func runInboxView(ctx context.Context, p *process, h *lateHandler) error {
	env, err := stage.NewEnv(stage.EnvConfig{Kafka: p.cfg.KafkaConfig(), Catalogue: p.cfg.Catalogue(),
		DataDir: p.dir, Group: "inbox-view", Log: p.log})
	if err != nil {
		return err
	}
	auth, err := inboxAuth(p.cfg)
	if err != nil {
		return err
	}
	view, err := inbox.NewView(env)
	if err != nil {
		return err
	}
	h.set(inbox.Handler(view, auth))
	const name = inboxView
	p.health.Set(name, ops.Status{State: ops.Recovering})
	go func() {
		select {
		case <-view.WaitRunning():
			p.health.Set(name, ops.Status{State: ops.Running})
		case <-ctx.Done():
		}
	}()
	go func() {
		// A Goka view cannot be run again: when it fails, the process is
		// no longer live, and its orchestrator restarts it.
		if err := view.Run(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("inbox view stopped", "err", err)
			p.health.Set(name, ops.Status{State: ops.Failed, LastError: err.Error()})
		}
	}()
	return nil
}

// inboxAuth is the inbox API's member-token verifier from the settings.
func inboxAuth(cfg config.Config) (*inbox.Auth, error) {
	j := cfg.Inbox.JWT
	keys, err := inbox.ParseKeys(j.HS256Keys, j.PublicKeyFiles)
	if err != nil {
		return nil, err
	}
	a, err := inbox.NewAuth(inbox.AuthConfig{Issuer: j.Issuer, Audience: j.Audience, Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("%w (the inbox API serves only members holding the shop's token: set inbox.jwt.issuer "+
			"and RTM_INBOX_JWT_HS256_KEYS or inbox.jwt.public_key_files)", err)
	}
	return a, nil
}

// lateHandler answers 503 until its handler is set.
type lateHandler struct {
	mu sync.RWMutex
	h  http.Handler
}

func (l *lateHandler) set(h http.Handler) {
	l.mu.Lock()
	l.h = h
	l.mu.Unlock()
}

func (l *lateHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.RLock()
	h := l.h
	l.mu.RUnlock()
	if h == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}

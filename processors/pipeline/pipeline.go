// Package pipeline assembles RTM's stages: which stages exist, how each is
// built from configuration, and how they run supervised. `rtm run --stage`,
// `rtm dev` and the end-to-end tests all start stages through it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/internal/ops"
	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/campaign"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/inbox"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/topics"
)

// Config is what building a stage needs.
type Config struct {
	Brokers []string
	// Kafka is the cluster's security (TLS, SASL); its Brokers are ignored
	// in favour of Brokers.
	Kafka     kafka.Config
	Catalogue topics.Catalogue
	// DataDir holds each stage's local state under DataDir/state/<stage>;
	// `rtm run` gives each instance its own (<data_dir>/<instance_id>).
	DataDir string
	// InstanceID, when set, is the Kafka static group membership ID of
	// every stage run here.
	InstanceID string
	// Health receives each stage's state (nil: not reported).
	Health *ops.Health
	// MaxFailures consecutive failures of one stage end Run with an error
	// (0: never).
	MaxFailures int
	// StoreFS, when it names a stage, is the file system of that stage's
	// local stores (fault injection); others use the OS's.
	StoreFS map[string]vfs.FS
	Rules   stage.Rules
	Detect  detect.Config
	Timing  timing.Config
	Render  render.Config
	Send    send.Config

	// MemberState is member-state's: the conversion window.
	MemberState memberstate.Config

	// Deliverer sends deliveries (the send stage); channels.Router is one.
	Deliverer send.Deliverer
	// Metrics receives, while Run runs, the collectors that read the
	// stages' state at scrape time: the local stores' Pebble statistics
	// and the rule versions in force (nil: none). The stages' own
	// counters are registered by stage.RegisterMetrics.
	Metrics prometheus.Registerer
	Log     *slog.Logger
}

// Runner is a built stage.
type Runner interface {
	Run(ctx context.Context) error
}

// def is how to build a stage. indexes are the partition-local indexes of
// table, the one table the stage scans by index; a stage that only reads
// rows by key declares none, so its recovery does no index work. A stage
// that reads table only through its indexes says indexOnly: its stores
// keep index keys, not rows (stage.EnvConfig.IndexOnly).
type def struct {
	indexes   func() map[string]state.Indexer
	table     string
	indexOnly bool
	build     func(stage.Env, Config) (Runner, error)
}

var stages = map[string]def{
	memberstate.Group: {build: func(e stage.Env, c Config) (Runner, error) { return memberstate.New(e, c.MemberState) }},
	detect.Group:      {indexes: detect.Indexes, table: topics.TableOf(detect.Group), build: func(e stage.Env, c Config) (Runner, error) { return detect.New(e, c.Detect) }},
	campaign.Group:    {build: func(e stage.Env, c Config) (Runner, error) { return campaign.New(e, c.Rules) }},
	audience.Group: {indexes: audience.Indexes, table: string(member.Table), indexOnly: audience.IndexOnly,
		build: func(e stage.Env, _ Config) (Runner, error) { return audience.New(e) }},
	filter.Group:  {build: func(e stage.Env, c Config) (Runner, error) { return filter.New(e, c.Rules) }},
	channel.Group: {build: func(e stage.Env, c Config) (Runner, error) { return channel.New(e, c.Rules) }},
	timing.Group:  {indexes: timing.Indexes, table: topics.TableOf(timing.Group), build: func(e stage.Env, c Config) (Runner, error) { return timing.New(e, c.Rules, c.Timing) }},
	render.Group:  {build: func(e stage.Env, c Config) (Runner, error) { return render.New(e, c.Rules, c.Render) }},
	send.Group: {indexes: send.Indexes, table: topics.TableOf(send.Group), build: func(e stage.Env, c Config) (Runner, error) {
		if c.Deliverer == nil {
			return nil, errors.New("no channel adapters configured")
		}
		return send.New(e, c.Deliverer, c.Send)
	}},
	inbox.Group: {build: func(e stage.Env, _ Config) (Runner, error) { return inbox.New(e) }},
}

// Stages lists the stages that exist, in pipeline order.
func Stages() []string {
	order := []string{memberstate.Group, detect.Group, campaign.Group, audience.Group, filter.Group,
		channel.Group, timing.Group, render.Group, send.Group, inbox.Group}
	return slices.DeleteFunc(order, func(s string) bool { _, ok := stages[s]; return !ok })
}

// Stage is a built stage and its environment (whose Registry reaches the
// stage's local stores: tools and tests inspect them).
type Stage struct {
	Runner
	Env stage.Env
}

// WaitReady waits until the stage has recovered its tables and joins and
// processes input (Goka processors' WaitForReady).
func (s *Stage) WaitReady(ctx context.Context) error {
	if r, ok := s.Runner.(interface{ WaitForReadyContext(context.Context) error }); ok {
		return r.WaitForReadyContext(ctx)
	}
	return nil
}

// Build builds one stage.
func Build(name string, cfg Config) (*Stage, error) { return build(name, cfg, nil) }

func build(name string, cfg Config, onStoreFailure func(error)) (*Stage, error) {
	d, ok := stages[name]
	if !ok {
		return nil, fmt.Errorf("no stage %q (stages: %s)", name, strings.Join(Stages(), ", "))
	}
	var idx map[string]state.Indexer
	if d.indexes != nil {
		idx = d.indexes()
	}
	k := cfg.Kafka
	k.Brokers = cfg.Brokers
	env, err := stage.NewEnv(stage.EnvConfig{Kafka: k, Catalogue: cfg.Catalogue, DataDir: cfg.DataDir, Group: name,
		Indexes: idx, IndexedTable: d.table, IndexOnly: d.indexOnly, InstanceID: cfg.InstanceID, OnStoreFailure: onStoreFailure, FS: cfg.StoreFS[name], Log: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", name, err)
	}
	r, err := d.build(env, cfg)
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", name, err)
	}
	return &Stage{Runner: r, Env: env}, nil
}

// Run builds and runs the named stages, each supervised (rebuilt and
// restarted with backoff when it fails), until ctx is done. When one stage
// gives up (MaxFailures consecutive failures) the others are stopped too and
// Run returns its error, so the process exits non-zero and its orchestrator
// restarts it.
func Run(ctx context.Context, cfg Config, names ...string) error {
	for _, n := range names {
		if _, ok := stages[n]; !ok {
			return fmt.Errorf("no stage %q (stages: %s)", n, strings.Join(Stages(), ", "))
		}
	}
	stores := stage.NewStoreCollector()
	if cfg.Metrics != nil {
		cs := []prometheus.Collector{stores}
		if cfg.Rules != nil {
			cs = append(cs, stage.RulesCollector{Rules: cfg.Rules})
		}
		for _, c := range cs {
			if err := cfg.Metrics.Register(c); err != nil {
				return fmt.Errorf("registering stage collectors (one pipeline.Run per registry): %w", err)
			}
			defer cfg.Metrics.Unregister(c)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, n := range names {
		sup := stage.Supervisor{Name: n, Log: cfg.Log, Health: cfg.Health, MaxFailures: cfg.MaxFailures}
		wg.Go(func() {
			if err := sup.Run(ctx, func(ctx context.Context) error { return runOnce(ctx, n, cfg, stores) }); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// runOnce builds and runs one stage until it stops, reporting its state:
// starting, recovering (with progress) until its tables are recovered and
// it processes input, then running. A local store that fails its writes
// stops the stage at once with that error.
func runOnce(ctx context.Context, n string, cfg Config, stores *stage.StoreCollector) error {
	report := func(st ops.Status) {
		if cfg.Health != nil {
			cfg.Health.Set(n, st)
		}
	}
	report(ops.Status{State: ops.Starting})
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r, err := build(n, cfg, func(err error) { stop(fmt.Errorf("local store failed: %w", err)) })
	if err != nil {
		return err
	}
	stores.Track(n, r.Env.Registry)
	report(ops.Status{State: ops.Recovering})
	if cfg.Health != nil {
		cfg.Health.SetProgress(n, r.progress)
	}
	go func() {
		if r.WaitReady(ctx) == nil && ctx.Err() == nil {
			report(ops.Status{State: ops.Running})
		}
	}()
	start := time.Now()
	cfg.Log.Info("stage running", "stage", n)
	err = r.Run(ctx)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = errors.Join(cause, err)
	}
	cfg.Log.Info("stage stopped", "stage", n, "after", time.Since(start).Round(time.Millisecond), "err", err)
	return err
}

// progress sums the recovery of the stage's tables (Goka's statistics): the
// records restored so far and the changelogs' high watermarks.
func (s *Stage) progress(ctx context.Context) *ops.Progress {
	p, ok := s.Runner.(interface {
		StatsWithContext(context.Context) *goka.ProcessorStats
	})
	if !ok {
		return nil
	}
	st := p.StatsWithContext(ctx)
	if st == nil {
		return nil
	}
	var out ops.Progress
	add := func(t *goka.TableStats) {
		if t != nil && t.Recovery != nil {
			out.Restored += max(t.Recovery.Offset+1, 0)
			out.Total += t.Recovery.Hwm
		}
	}
	for _, part := range st.Group {
		add(part.TableStats)
		for _, t := range part.Joined {
			add(t)
		}
	}
	return &out
}

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

	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/campaign"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/inbox"
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
	Brokers   []string
	Catalogue topics.Catalogue
	// DataDir holds each stage's local state under DataDir/state/<stage>.
	DataDir string
	Rules   stage.Rules
	Detect  detect.Config
	Timing  timing.Config
	Render  render.Config
	// Deliverer sends deliveries (the send stage); channels.Router is one.
	Deliverer send.Deliverer
	Log       *slog.Logger
}

// Runner is a built stage.
type Runner interface {
	Run(ctx context.Context) error
}

// def is how to build a stage. indexes are the partition-local indexes of
// the tables the stage keeps or joins; a stage that only reads rows by key
// declares none, so its recovery does no index work.
type def struct {
	indexes func() map[string]state.Indexer
	build   func(stage.Env, Config) (Runner, error)
}

var stages = map[string]def{
	memberstate.Group: {memberstate.Indexes, func(e stage.Env, _ Config) (Runner, error) { return memberstate.New(e) }},
	detect.Group:      {detect.Indexes, func(e stage.Env, c Config) (Runner, error) { return detect.New(e, c.Detect) }},
	campaign.Group:    {nil, func(e stage.Env, c Config) (Runner, error) { return campaign.New(e, c.Rules) }},
	audience.Group:    {audience.Indexes, func(e stage.Env, _ Config) (Runner, error) { return audience.New(e) }},
	filter.Group:      {nil, func(e stage.Env, c Config) (Runner, error) { return filter.New(e, c.Rules) }},
	channel.Group:     {nil, func(e stage.Env, c Config) (Runner, error) { return channel.New(e, c.Rules) }},
	timing.Group:      {timing.Indexes, func(e stage.Env, c Config) (Runner, error) { return timing.New(e, c.Rules, c.Timing) }},
	render.Group:      {nil, func(e stage.Env, c Config) (Runner, error) { return render.New(e, c.Rules, c.Render) }},
	send.Group: {nil, func(e stage.Env, c Config) (Runner, error) {
		if c.Deliverer == nil {
			return nil, errors.New("no channel adapters configured")
		}
		return send.New(e, c.Deliverer)
	}},
	inbox.Group: {nil, func(e stage.Env, _ Config) (Runner, error) { return inbox.New(e) }},
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
func Build(name string, cfg Config) (*Stage, error) {
	d, ok := stages[name]
	if !ok {
		return nil, fmt.Errorf("no stage %q (stages: %s)", name, strings.Join(Stages(), ", "))
	}
	var idx map[string]state.Indexer
	if d.indexes != nil {
		idx = d.indexes()
	}
	env, err := stage.NewEnv(cfg.Brokers, cfg.Catalogue, cfg.DataDir, name, idx, cfg.Log)
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
// restarted with backoff when it fails), until ctx is done.
func Run(ctx context.Context, cfg Config, names ...string) error {
	for _, n := range names {
		if _, ok := stages[n]; !ok {
			return fmt.Errorf("no stage %q (stages: %s)", n, strings.Join(Stages(), ", "))
		}
	}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stage.Supervise(ctx, n, cfg.Log, func(ctx context.Context) error {
				r, err := Build(n, cfg)
				if err != nil {
					return err
				}
				start := time.Now()
				cfg.Log.Info("stage running", "stage", n)
				err = r.Run(ctx)
				cfg.Log.Info("stage stopped", "stage", n, "after", time.Since(start).Round(time.Millisecond), "err", err)
				return err
			})
		}()
	}
	wg.Wait()
	return nil
}

package detect

import (
	"context"
	"time"

	"github.com/lovoo/goka"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/processors/timer"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupDetect

// Config tunes detection.
type Config struct {
	// CartWindow is how long a cart may wait for an order before it counts
	// as abandoned. Default 1h.
	CartWindow time.Duration
	// TickInterval is how often due checks are released. Default 1s.
	TickInterval time.Duration
	// Clock is what the stage's ticks say: a cart's check is released by
	// the first tick at or after it is due. Default timer.Wall; tests pass
	// a clock they move.
	Clock timer.Clock
}

func (c Config) withDefaults() Config {
	if c.CartWindow <= 0 {
		c.CartWindow = time.Hour
	}
	if c.TickInterval <= 0 {
		c.TickInterval = time.Second
	}
	if c.Clock == nil {
		c.Clock = timer.Wall
	}
	return c
}

// Indexes are the partition-local indexes of detect-table.
func Indexes() map[string]state.Indexer { return map[string]state.Indexer{DueIndex: IndexDue} }

var table = goka.GroupTable(goka.Group(Group))

type detector struct {
	env  stage.Env
	cfg  Config
	keys stage.Keys
}

// Graph is the stage's topology.
func (d *detector) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.CDCItems), stage.Raw, d.item),
		goka.Input(goka.Stream(topics.CDCCartItems), stage.Raw, d.cart),
		goka.Input(goka.Stream(topics.CDCOrders), stage.Raw, d.order),
		goka.Loop(stage.Raw, timer.Loop(d.env, d.keys, table, DueIndex, d.release, nil)),
		goka.Persist(Codec{}),
		goka.Output(goka.Stream(topics.Events), topics.EventCodec{}),
		stage.DLQOutput(),
	)
}

// Stage is a runnable detect stage: the processor and its ticker.
type Stage struct {
	d    *detector
	proc *goka.Processor
}

// New returns the detect stage. env must come from stage.NewEnv with
// Indexes().
func New(env stage.Env, cfg Config) (*Stage, error) {
	d := &detector{env: env, cfg: cfg.withDefaults(), keys: stage.KeysOf(Group, env)}
	p, err := goka.NewProcessor(env.Brokers, d.Graph(), env.ProcessorOptions()...)
	if err != nil {
		return nil, err
	}
	return &Stage{d: d, proc: p}, nil
}

// Run runs the processor and its ticker until ctx is done or either fails.
func (s *Stage) Run(ctx context.Context) error {
	return timer.Run(ctx, s.proc, s.d.env, goka.Stream(topics.LoopOf(Group)), s.d.cfg.TickInterval, s.d.cfg.Clock)
}

func value(ctx goka.Context) *State {
	if v, ok := ctx.Value().(*State); ok && v != nil {
		return v
	}
	return &State{}
}

func emit(ctx goka.Context, key string, events []topics.Event) {
	for i := range events {
		ctx.Emit(goka.Stream(topics.Events), key, &events[i])
		stage.CountEmit(ctx, Group, topics.Events, 1)
	}
}

var (
	itemIdentity  = stage.CDCIdentity("items", "item_id")
	cartIdentity  = stage.CDCIdentity("cart_items", "member_id")
	orderIdentity = stage.CDCIdentity("orders", "member_id")
)

func (d *detector) item(ctx goka.Context, msg any) {
	r, ok := stage.DecodeKeyed(ctx, d.keys, topics.CDCCodec{}, msg, itemIdentity)
	if !ok {
		return
	}
	s := value(ctx)
	if s.Item == nil {
		s.Item = &ItemState{}
	}
	events, changed, err := ApplyItem(s.Item, r)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	if changed {
		ctx.SetValue(s)
	}
	emit(ctx, ctx.Key(), events)
}

func (d *detector) member(ctx goka.Context) *State {
	s := value(ctx)
	if s.Member == nil {
		s.Member = &MemberState{}
	}
	return s
}

func (d *detector) cart(ctx goka.Context, msg any) {
	r, ok := stage.DecodeKeyed(ctx, d.keys, topics.CDCCodec{}, msg, cartIdentity)
	if !ok {
		return
	}
	s := d.member(ctx)
	changed, err := ApplyCart(s.Member, r, d.cfg.CartWindow)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	if changed {
		ctx.SetValue(s)
	}
}

func (d *detector) order(ctx goka.Context, msg any) {
	r, ok := stage.DecodeKeyed(ctx, d.keys, topics.CDCCodec{}, msg, orderIdentity)
	if !ok {
		return
	}
	s := d.member(ctx)
	events, changed, err := ApplyOrder(s.Member, r, d.cfg.CartWindow)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	if changed {
		ctx.SetValue(s)
	}
	emit(ctx, ctx.Key(), events)
}

// release fires the member's due abandonment check.
func (d *detector) release(ctx goka.Context, at time.Time) {
	s := value(ctx)
	ev, changed := Release(s.Member, ctx.Key(), at)
	if changed {
		ctx.SetValue(s)
	}
	if ev != nil {
		emit(ctx, ctx.Key(), []topics.Event{*ev})
	}
}

// WaitForReadyContext waits until the processor has recovered and runs.
func (s *Stage) WaitForReadyContext(ctx context.Context) error {
	return s.proc.WaitForReadyContext(ctx)
}

// StatsWithContext is the processor's statistics (recovery progress).
func (s *Stage) StatsWithContext(ctx context.Context) *goka.ProcessorStats {
	return s.proc.StatsWithContext(ctx)
}

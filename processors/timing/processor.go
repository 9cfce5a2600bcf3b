package timing

import (
	"context"
	"strings"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/processors/timer"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupTiming

var (
	table     = goka.GroupTable(goka.Group(Group))
	decisions = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
		Name: "rtm_timing_decisions_total",
		Help: "Timing decisions: send_now, held, released, or the drop reason.",
	}, []string{"outcome"})
)

// Config tunes the stage.
type Config struct {
	// TickInterval is how often held offers are released; they go out
	// within about one interval of their due time. Default 1s.
	TickInterval time.Duration
	// Clock is when the stage decides offers and what its ticks say.
	// Default timer.Wall; tests pass a clock they move.
	Clock timer.Clock
}

// Indexes are the partition-local indexes of timing-table.
func Indexes() map[string]state.Indexer { return map[string]state.Indexer{DueIndex: IndexDue} }

type scheduler struct {
	env   stage.Env
	rules stage.Rules
	cfg   Config
	now   func() time.Time
	keys  stage.Keys
}

// Graph is the stage's topology.
func (s *scheduler) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.OffersRouted), stage.Raw, s.offer),
		goka.Input(goka.Stream(topics.DeliveryResults), stage.Raw, s.result),
		goka.Loop(stage.Raw, timer.Loop(s.env, s.keys, table, DueIndex, s.release, nil)),
		goka.Persist(Codec{}),
		goka.Output(goka.Stream(topics.OffersReady), topics.OfferCodec{}),
		goka.Output(goka.Stream(topics.OffersExcluded), topics.OfferCodec{}),
		stage.DLQOutput(),
	)
}

// Stage is a runnable timing stage: the processor and its ticker.
type Stage struct {
	s    *scheduler
	proc *goka.Processor
}

// New returns the timing stage. env must come from stage.NewEnv with
// Indexes().
func New(env stage.Env, rs stage.Rules, cfg Config) (*Stage, error) {
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = timer.Wall
	}
	s := &scheduler{env: env, rules: rs, cfg: cfg, now: cfg.Clock.Now, keys: stage.KeysOf(Group, env)}
	p, err := goka.NewProcessor(env.Brokers, s.Graph(), env.ProcessorOptions()...)
	if err != nil {
		return nil, err
	}
	return &Stage{s: s, proc: p}, nil
}

// Run runs the processor and its ticker until ctx is done or either fails.
func (st *Stage) Run(ctx context.Context) error {
	return timer.Run(ctx, st.proc, st.s.env, goka.Stream(topics.LoopOf(Group)), st.s.cfg.TickInterval, st.s.cfg.Clock)
}

func ledger(ctx goka.Context) *Ledger {
	if l, ok := ctx.Value().(*Ledger); ok && l != nil {
		return l
	}
	return &Ledger{}
}

// result frees the cap slot of a delivery that failed for good or was
// suppressed (consent withdrawn before send): a member who was never
// reached has not been messaged, and the caps are there to keep members
// from being flooded, not to count attempts.
func (s *scheduler) result(ctx goka.Context, msg any) {
	r, ok := stage.DecodeKeyed(ctx, s.keys, topics.DeliveryResultCodec{}, msg, stage.ResultIdentity)
	if !ok || (r.Status != topics.StatusFailed && r.Status != topics.StatusSuppressed) {
		return
	}
	l, ok := ctx.Value().(*Ledger)
	if !ok || l == nil || !l.free(r.OfferID) {
		return
	}
	decisions.WithLabelValues("slot_freed").Inc()
	ctx.SetValue(l)
}

func (s *scheduler) offer(ctx goka.Context, msg any) {
	o, ok := stage.DecodeKeyed(ctx, s.keys, topics.OfferCodec{}, msg, stage.OfferIdentity)
	if !ok {
		return
	}
	l := ledger(ctx)
	now := s.now()
	v := Schedule(l, s.rules.Current(), o, now)
	if v.Duplicate {
		decisions.WithLabelValues("duplicate").Inc()
		return
	}
	o.Decisions = append(o.Decisions, v.Decision)
	stage.Stamp(o, Group)
	switch {
	case v.Dropped():
		decisions.WithLabelValues(dropLabel(v.Decision.Reason)).Inc()
		ctx.Emit(goka.Stream(topics.OffersExcluded), ctx.Key(), o)
	case v.SendAt.After(now):
		decisions.WithLabelValues("held").Inc()
		o.SendAt = v.SendAt
		l.hold(*o, v.SendAt)
	default:
		decisions.WithLabelValues("send_now").Inc()
		o.SendAt = v.SendAt
		ctx.Emit(goka.Stream(topics.OffersReady), ctx.Key(), o)
		stage.CountEmit(ctx, Group, topics.OffersReady, 1)
	}
	ctx.SetValue(l)
}

// release emits the member's held offers that are due.
func (s *scheduler) release(ctx goka.Context, at time.Time) {
	l := ledger(ctx)
	due := l.due(at)
	if len(due) == 0 {
		return // a duplicate release: already done
	}
	for _, h := range due {
		o := h.Offer
		stage.Stamp(&o, Group)
		if !o.ExpiresAt.IsZero() && !at.Before(o.ExpiresAt) {
			o.Decisions = append(o.Decisions, topics.Decision{Stage: Group, Outcome: "exclude", Reason: ReasonExpired})
			decisions.WithLabelValues(ReasonExpired).Inc()
			l.free(o.OfferID)
			ctx.Emit(goka.Stream(topics.OffersExcluded), ctx.Key(), &o)
			continue
		}
		o.Decisions = append(o.Decisions, topics.Decision{Stage: Group, Outcome: "release"})
		decisions.WithLabelValues("released").Inc()
		ctx.Emit(goka.Stream(topics.OffersReady), ctx.Key(), &o)
		stage.CountEmit(ctx, Group, topics.OffersReady, 1)
	}
	ctx.SetValue(l)
}

// WaitForReadyContext waits until the processor has recovered and runs.
func (st *Stage) WaitForReadyContext(ctx context.Context) error {
	return st.proc.WaitForReadyContext(ctx)
}

// StatsWithContext is the processor's statistics (recovery progress).
func (st *Stage) StatsWithContext(ctx context.Context) *goka.ProcessorStats {
	return st.proc.StatsWithContext(ctx)
}

// dropLabel bounds a drop reason for rtm_timing_decisions_total: a rule
// error carries its message, which is not a label.
func dropLabel(reason string) string {
	reason, _, _ = strings.Cut(reason, ":")
	return stage.BoundedLabel(reason, ReasonExpired, ReasonCapDay, ReasonCapWeek, ReasonCapCampaignDay, "rule_error")
}

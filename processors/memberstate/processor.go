// Package memberstate is the member-state stage: it keeps one profile per
// member (package member) in the group table member-state-table — a
// compacted changelog plus a partition-local Pebble store with the table's
// indexes — from the shop's change rows, behaviour events and delivery
// results. It attributes each new order to the member's sent and held_out
// deliveries of the conversion window before it and writes the
// conversions to campaign.conversions (rtm report compares the groups).
//
// Every update is idempotent, because Goka processing is at-least-once:
// change rows apply only when their Change Tracking version is newer than the
// one recorded for that row, behaviour events and delivery results only when
// their ID has not been seen. Nothing is a blind increment.
package memberstate

import (
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group and the prefix of the table topic.
const Group = topics.GroupMemberState

var conversions = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
	Name: "rtm_campaign_conversions_total",
	Help: "Orders attributed to a sent (group treatment) or held_out (group holdout) delivery of the campaign within the conversion window, by campaign and group.",
}, []string{"campaign", "group"})

// Config tunes the stage.
type Config struct {
	// ConversionWindow is how long after a sent or held_out delivery an
	// order of the member counts as its conversion. Default
	// member.DefaultConversionWindow (7 days).
	ConversionWindow time.Duration
}

// Graph is the stage's topology; keys admits its inputs (see
// stage.Keys: a record whose key is not the member it is about, or that is
// not on its key's partition, goes to dlq and is not applied).
func Graph(keys stage.Keys, cfg Config) *goka.GroupGraph {
	if cfg.ConversionWindow <= 0 {
		cfg.ConversionWindow = member.DefaultConversionWindow
	}
	cdc := func(topic, table string) goka.Edge {
		identity := stage.CDCIdentity(table, "member_id")
		return goka.Input(goka.Stream(topic), stage.Raw, func(ctx goka.Context, msg any) { applyCDC(ctx, keys, identity, cfg, msg) })
	}
	return goka.DefineGroup(goka.Group(Group),
		cdc(topics.CDCMembers, "members"),
		cdc(topics.CDCFavorites, "favorites"),
		cdc(topics.CDCOrders, "orders"),
		cdc(topics.CDCCartItems, "cart_items"),
		goka.Input(goka.Stream(topics.BehaviorEvents), stage.Raw, func(ctx goka.Context, msg any) { applyBehavior(ctx, keys, msg) }),
		goka.Input(goka.Stream(topics.DeliveryResults), stage.Raw, func(ctx goka.Context, msg any) { applyResult(ctx, keys, cfg, msg) }),
		goka.Persist(member.Codec{}),
		goka.Output(goka.Stream(topics.MemberConsent), topics.ConsentCodec{}),
		goka.Output(goka.Stream(topics.Conversions), topics.ConversionCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the member-state processor.
func New(env stage.Env, cfg Config) (*goka.Processor, error) {
	return goka.NewProcessor(env.Brokers, Graph(stage.KeysOf(Group, env), cfg), env.ProcessorOptions()...)
}

func current(ctx goka.Context) *member.Profile {
	if v, ok := ctx.Value().(*member.Profile); ok && v != nil {
		return v
	}
	return &member.Profile{MemberID: ctx.Key()}
}

func applyCDC(ctx goka.Context, keys stage.Keys, identity func(*topics.CDCRecord) (string, error), cfg Config, msg any) {
	r, ok := stage.DecodeKeyed(ctx, keys, topics.CDCCodec{}, msg, identity)
	if !ok {
		return
	}
	p := current(ctx)
	before := p.Consent(r.TS)
	first := p.FirstMembersRow(r)
	orders := p.OrdersCount
	changed, err := p.ApplyCDC(r)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	if !changed {
		return
	}
	var convs []topics.Conversion
	if p.OrdersCount > orders { // a new order (ApplyCDC counts each once): the last one
		o := p.Orders[len(p.Orders)-1]
		if o.At.IsZero() {
			o.At = r.TS
		}
		convs = p.Attribute(o, cfg.ConversionWindow)
	}
	ctx.SetValue(p)
	emitConsent(ctx, first, before, p.Consent(r.TS))
	emitConversions(ctx, convs)
}

// emitConversions writes a new order's conversions after the profile, at
// least once: readers count each conversion ID once.
func emitConversions(ctx goka.Context, convs []topics.Conversion) {
	for i := range convs {
		ctx.Emit(goka.Stream(topics.Conversions), ctx.Key(), &convs[i])
		conversions.WithLabelValues(convs[i].CampaignID, convs[i].Group).Inc()
	}
	if len(convs) > 0 {
		stage.CountEmit(ctx, Group, topics.Conversions, len(convs))
	}
}

// emitConsent writes the member's consent row when the channels it may be
// sent on changed. It is written after the profile, at least once: a
// replay that changes nothing writes nothing, and a repeated row is
// harmless (send reads only the latest).
//
// The member's first members row writes none (first): send allows what
// the offer's snapshot allows when a member has no row, and every
// snapshot is taken from that profile or a later one, so the row matters
// only from the next change on. Most members never change their consent,
// so the table stays small and send's lookup of a member without a row
// stops at the bloom filter. A member re-created after a delete is not
// first (the profile keeps its row versions), so the row the delete wrote
// is replaced.
func emitConsent(ctx goka.Context, first bool, before, after *topics.Consent) {
	if first || member.SameConsent(before, after) {
		return
	}
	ctx.Emit(goka.Stream(topics.MemberConsent), ctx.Key(), after)
	stage.CountEmit(ctx, Group, topics.MemberConsent, 1)
}

func applyBehavior(ctx goka.Context, keys stage.Keys, msg any) {
	e, ok := stage.DecodeKeyed(ctx, keys, topics.BehaviorEventCodec{}, msg, stage.BehaviorIdentity)
	if !ok {
		return
	}
	p := current(ctx)
	if p.Replayed(string(ctx.Topic()), ctx.Partition(), ctx.Offset()) {
		return
	}
	before := p.Consent(e.At)
	p.ApplyBehavior(e)
	p.Applied(string(ctx.Topic()), ctx.Partition(), ctx.Offset())
	ctx.SetValue(p)
	emitConsent(ctx, false, before, p.Consent(e.At)) // an unsubscribe
}

func applyResult(ctx goka.Context, keys stage.Keys, cfg Config, msg any) {
	r, ok := stage.DecodeKeyed(ctx, keys, topics.DeliveryResultCodec{}, msg, stage.ResultIdentity)
	if !ok {
		return
	}
	p := current(ctx)
	if p.Replayed(string(ctx.Topic()), ctx.Partition(), ctx.Offset()) {
		return
	}
	if p.ApplyResult(r) {
		p.Expose(r, cfg.ConversionWindow)
	}
	p.Applied(string(ctx.Topic()), ctx.Partition(), ctx.Offset())
	ctx.SetValue(p)
}

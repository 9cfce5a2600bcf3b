// Package memberstate is the member-state stage: it keeps one profile per
// member (package member) in the group table member-state-table — a
// compacted changelog plus a partition-local Pebble store with the table's
// indexes — from the shop's change rows, behaviour events and delivery
// results.
//
// Every update is idempotent, because Goka processing is at-least-once:
// change rows apply only when their Change Tracking version is newer than the
// one recorded for that row, behaviour events and delivery results only when
// their ID has not been seen. Nothing is a blind increment.
package memberstate

import (
	"github.com/lovoo/goka"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group and the prefix of the table topic.
const Group = topics.GroupMemberState

// Indexes are the member table's (member.Indexes).
func Indexes() map[string]state.Indexer { return member.Indexes() }

// Graph is the stage's topology; keys admits its inputs (see
// stage.Keys: a record whose key is not the member it is about, or that is
// not on its key's partition, goes to dlq and is not applied).
func Graph(keys stage.Keys) *goka.GroupGraph {
	cdc := func(topic, table string) goka.Edge {
		identity := stage.CDCIdentity(table, "member_id")
		return goka.Input(goka.Stream(topic), stage.Raw, func(ctx goka.Context, msg any) { applyCDC(ctx, keys, identity, msg) })
	}
	return goka.DefineGroup(goka.Group(Group),
		cdc(topics.CDCMembers, "members"),
		cdc(topics.CDCFavorites, "favorites"),
		cdc(topics.CDCOrders, "orders"),
		cdc(topics.CDCCartItems, "cart_items"),
		goka.Input(goka.Stream(topics.BehaviorEvents), stage.Raw, func(ctx goka.Context, msg any) { applyBehavior(ctx, keys, msg) }),
		goka.Input(goka.Stream(topics.DeliveryResults), stage.Raw, func(ctx goka.Context, msg any) { applyResult(ctx, keys, msg) }),
		goka.Persist(member.Codec{}),
		goka.Output(goka.Stream(topics.MemberConsent), topics.ConsentCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the member-state processor.
func New(env stage.Env) (*goka.Processor, error) {
	return goka.NewProcessor(env.Brokers, Graph(stage.KeysOf(Group, env)), env.ProcessorOptions()...)
}

func current(ctx goka.Context) *member.Profile {
	if v, ok := ctx.Value().(*member.Profile); ok && v != nil {
		return v
	}
	return &member.Profile{MemberID: ctx.Key()}
}

func applyCDC(ctx goka.Context, keys stage.Keys, identity func(*topics.CDCRecord) (string, error), msg any) {
	r, ok := stage.DecodeKeyed(ctx, keys, topics.CDCCodec{}, msg, identity)
	if !ok {
		return
	}
	p := current(ctx)
	before := p.Consent(r.TS)
	changed, err := p.ApplyCDC(r)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	if changed {
		ctx.SetValue(p)
		emitConsent(ctx, before, p.Consent(r.TS))
	}
}

// emitConsent writes the member's consent row when the channels it may be
// sent on changed. It is written after the profile, at least once: a
// replay that changes nothing writes nothing, and a repeated row is
// harmless (send reads only the latest).
func emitConsent(ctx goka.Context, before, after *topics.Consent) {
	if member.SameConsent(before, after) {
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
	emitConsent(ctx, before, p.Consent(e.At)) // an unsubscribe
}

func applyResult(ctx goka.Context, keys stage.Keys, msg any) {
	r, ok := stage.DecodeKeyed(ctx, keys, topics.DeliveryResultCodec{}, msg, stage.ResultIdentity)
	if !ok {
		return
	}
	p := current(ctx)
	if p.Replayed(string(ctx.Topic()), ctx.Partition(), ctx.Offset()) {
		return
	}
	p.ApplyResult(r)
	p.Applied(string(ctx.Topic()), ctx.Partition(), ctx.Offset())
	ctx.SetValue(p)
}

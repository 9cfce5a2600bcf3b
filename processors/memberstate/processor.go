package memberstate

import (
	"github.com/lovoo/goka"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group and the prefix of the table topic.
const Group = topics.GroupMemberState

// Table is the group table topic other stages join.
var Table = goka.GroupTable(goka.Group(Group))

// Indexes are the partition-local indexes of member-state-table. Every
// stage that joins the table declares them too, so its local copy is
// indexed the same way.
func Indexes() map[string]state.Indexer {
	return map[string]state.Indexer{FavoritesIndex: IndexFavorites, SegmentsIndex: IndexSegments}
}

// Graph is the stage's topology.
func Graph() *goka.GroupGraph {
	cdc := func(topic string) goka.Edge { return goka.Input(goka.Stream(topic), stage.Raw, applyCDC) }
	return goka.DefineGroup(goka.Group(Group),
		cdc(topics.CDCMembers),
		cdc(topics.CDCFavorites),
		cdc(topics.CDCOrders),
		cdc(topics.CDCCartItems),
		goka.Input(goka.Stream(topics.BehaviorEvents), stage.Raw, applyBehavior),
		goka.Input(goka.Stream(topics.DeliveryResults), stage.Raw, applyResult),
		goka.Persist(Codec{}),
		stage.DLQOutput(),
	)
}

// New returns the member-state processor.
func New(env stage.Env) (*goka.Processor, error) {
	return goka.NewProcessor(env.Brokers, Graph(), env.ProcessorOptions()...)
}

func current(ctx goka.Context) *Profile {
	if v, ok := ctx.Value().(*Profile); ok && v != nil {
		return v
	}
	return &Profile{MemberID: ctx.Key()}
}

func applyCDC(ctx goka.Context, msg any) {
	r, ok := stage.Decode(ctx, Group, topics.CDCCodec{}, msg)
	if !ok {
		return
	}
	p := current(ctx)
	changed, err := p.ApplyCDC(r)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	if changed {
		ctx.SetValue(p)
	}
}

func applyBehavior(ctx goka.Context, msg any) {
	e, ok := stage.Decode(ctx, Group, topics.BehaviorEventCodec{}, msg)
	if !ok {
		return
	}
	p := current(ctx)
	if p.replayed(string(ctx.Topic()), ctx.Offset()) {
		return
	}
	p.ApplyBehavior(e)
	p.applied(string(ctx.Topic()), ctx.Offset())
	ctx.SetValue(p)
}

func applyResult(ctx goka.Context, msg any) {
	r, ok := stage.Decode(ctx, Group, topics.DeliveryResultCodec{}, msg)
	if !ok {
		return
	}
	p := current(ctx)
	if p.replayed(string(ctx.Topic()), ctx.Offset()) {
		return
	}
	p.ApplyResult(r)
	p.applied(string(ctx.Topic()), ctx.Offset())
	ctx.SetValue(p)
}

// Package audience is the user-extraction stage. An item-wide audience
// request (everyone who favourited an item) arrives on every partition of
// audience.requests; each partition answers from its own copy of
// member-state-table, with a lookup in the partition-local index
// favourite item → member, and emits one offer candidate per member keyed by
// that member. No list of all favouriters is ever built, and no partition
// reads another's data (DESIGN.md, idea 3).
package audience

import (
	"fmt"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupAudience

var members = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
	Name: "rtm_audience_members_total",
	Help: "Members found for audience requests, by the campaign table and row that fired.",
}, []string{"table", "row"})

// Indexes are those of the joined member-state-table.
func Indexes() map[string]state.Indexer { return member.Indexes() }

// IndexOnly: the stage finds members only through the indexes and never
// reads a profile, so its copy of member-state-table keeps each member's
// favourites and segments and nothing else (state.Options.IndexOnly).
// Members who favourite nothing and are in no segment take no space, and
// the profile updates every delivery's result makes change no index key
// and write nothing.
const IndexOnly = true

type extractor struct {
	env  stage.Env
	keys stage.Keys
}

// Graph is the stage's topology. The join gives this group its own,
// indexed copy of member-state-table, co-partitioned with the requests.
func (x *extractor) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.AudienceRequests), stage.Raw, x.request),
		goka.Join(member.Table, member.Codec{}),
		goka.Output(goka.Stream(topics.OffersCandidates), topics.OfferCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the audience processor. env must come from stage.NewEnv with
// Indexes() and IndexOnly.
func New(env stage.Env) (*goka.Processor, error) {
	x := &extractor{env: env, keys: stage.KeysOf(Group, env)}
	return goka.NewProcessor(env.Brokers, x.Graph(), env.ProcessorOptions()...)
}

func (x *extractor) request(ctx goka.Context, msg any) {
	// A request is about a partition, not a key: its key (from
	// topics.PartitionKeys) must hash to the partition it names, which is
	// the one it sits on.
	req, ok := stage.DecodeKeyed(ctx, x.keys, topics.AudienceRequestCodec{}, msg, func(r *topics.AudienceRequest) (string, error) {
		if r.Partition != ctx.Partition() {
			return "", fmt.Errorf("request for partition %d arrived on partition %d: the producer does not use murmur2 partitioning", r.Partition, ctx.Partition())
		}
		return ctx.Key(), nil
	})
	if !ok {
		return
	}
	index, key, why, err := Target(req)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	st := x.env.Registry.Store(string(member.Table), ctx.Partition())
	if st == nil {
		stage.Fail(ctx, fmt.Errorf("no local store for %s/%d", member.Table, ctx.Partition()))
		return
	}
	n := 0
	err = st.Lookup(index, key, func(member string) error {
		o := Match(req, member, why)
		stage.Stamp(&o, Group)
		ctx.Emit(goka.Stream(topics.OffersCandidates), member, &o)
		n++
		return nil
	})
	if err != nil {
		stage.Fail(ctx, fmt.Errorf("scanning %s index on partition %d: %w", index, ctx.Partition(), err))
	}
	members.WithLabelValues(campaignLabels(&req.Offer)).Add(float64(n))
	stage.CountEmit(ctx, Group, topics.OffersCandidates, n)
}

// campaignLabels are the labels of the campaign rule that fired the offer:
// its first decision is the campaign stage's.
func campaignLabels(o *topics.Offer) (table, row string) {
	if len(o.Decisions) == 0 {
		return "", ""
	}
	return stage.RuleLabels(o.Decisions[0])
}

// Target is what an audience request asks of a partition's member table:
// the index to look up, the key to look up in it, and the reason each
// member found is recorded with. An error is a request the stage
// dead-letters.
func Target(req *topics.AudienceRequest) (index, key, why string, err error) {
	switch req.Audience {
	case topics.AudienceFavoritesOfItem:
		index, key, why = member.FavoritesIndex, req.ItemID, "favourited "+req.ItemID
	case topics.AudienceSegment:
		index, key, why = member.SegmentsIndex, req.Segment, "in segment "+req.Segment
	default:
		return "", "", "", fmt.Errorf("audience %q is not supported", req.Audience)
	}
	if key == "" {
		return "", "", "", fmt.Errorf("audience %q request without its item or segment", req.Audience)
	}
	return index, key, why, nil
}

// Match is the offer candidate for one member the index found (why is
// Target's reason). It shares nothing mutable with the request's offer, so
// the candidates of one request can be changed independently.
func Match(req *topics.AudienceRequest, member, why string) topics.Offer {
	o := req.Offer
	o.MemberID = member
	o.OfferID = topics.OfferID(o.CampaignID, o.Event.EventID, member)
	o.AssignHoldout()
	o.Decisions = append(o.Decisions[:len(o.Decisions):len(o.Decisions)],
		topics.Decision{Stage: Group, Outcome: "match", Reason: why})
	o.Stamps = o.Stamps[:len(o.Stamps):len(o.Stamps)]
	return o
}

// Package campaign is the campaign-decision stage: it evaluates the
// published campaign rule tables against each business event and, for every
// campaign that fires, emits either one offer candidate keyed by the member
// (member audiences) or an audience request to every partition (item-wide
// audiences, answered by the audience stage from partition-local indexes).
package campaign

import (
	"slices"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupCampaign

var fired = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
	Name: "rtm_campaign_fired_total",
	Help: "Campaigns fired by events, by the campaign table and row that fired and the audience kind.",
}, []string{"table", "row", "audience"})

var unmatchedEvents = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
	Name: "rtm_campaign_unmatched_total",
	Help: "Events no campaign matched, by event type (recorded on events.unmatched).",
}, []string{"type"})

// Every event type's series exists from the start, so rate() and alerts
// see a 0 before the first unmatched event.
func init() {
	for _, t := range append(slices.Clone(detect.Types), "other") {
		unmatchedEvents.WithLabelValues(t)
	}
}

type decider struct {
	env   stage.Env
	rules stage.Rules
	keys  []string // one key per partition of audience.requests
	in    stage.Keys
}

// Graph is the stage's topology.
func (d *decider) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.Events), stage.Raw, d.event),
		goka.Output(goka.Stream(topics.OffersCandidates), topics.OfferCodec{}),
		goka.Output(goka.Stream(topics.AudienceRequests), topics.AudienceRequestCodec{}),
		goka.Output(goka.Stream(topics.EventsUnmatched), topics.UnmatchedEventCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the campaign processor.
func New(env stage.Env, rs stage.Rules) (*goka.Processor, error) {
	d := &decider{env: env, rules: rs, keys: topics.PartitionKeys("aud-", env.Catalogue.Partitions), in: stage.KeysOf(Group, env)}
	return goka.NewProcessor(env.Brokers, d.Graph(), env.ProcessorOptions()...)
}

func (d *decider) event(ctx goka.Context, msg any) {
	e, ok := stage.DecodeKeyed(ctx, d.in, topics.EventCodec{}, msg, stage.EventIdentity)
	if !ok {
		return
	}
	set := d.rules.Current()
	sum, decisions, err := Decide(set, e, nil)
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	if len(decisions) == 0 {
		d.unmatched(ctx, sum, set)
		return
	}
	for _, dec := range decisions {
		d.fire(ctx, e, sum, dec, msg)
	}
}

// unmatched records that no campaign fired for an event: one record per
// event, under the event's own key, naming the campaign tables that were
// evaluated, so explain can answer "nothing fired" for every member the
// event concerned without a record per member.
func (d *decider) unmatched(ctx goka.Context, sum topics.EventSummary, set *rules.Set) {
	u := &topics.UnmatchedEvent{Event: sum, At: time.Now().UTC(), Tables: []string{}}
	for _, t := range set.Kind(rules.KindCampaign) {
		u.Tables = append(u.Tables, t.Name()+"@"+t.Version())
	}
	ctx.Emit(goka.Stream(topics.EventsUnmatched), u.Key(), u)
	unmatchedEvents.WithLabelValues(stage.BoundedLabel(sum.Type, detect.Types...)).Inc()
	stage.CountEmit(ctx, Group, topics.EventsUnmatched, 1)
}

func (d *decider) fire(ctx goka.Context, e *topics.Event, sum topics.EventSummary, dec rules.Decision, msg any) {
	table, row := stage.RuleLabels(topics.Decision{Table: dec.Table, Row: dec.Row})
	fired.WithLabelValues(table, row, stage.BoundedLabel(dec.Campaign.Audience, topics.AudienceMember, topics.AudienceFavoritesOfItem, topics.AudienceSegment)).Inc()
	f, err := Fire(e, sum, dec)
	switch {
	case err != nil:
		stage.DeadLetter(ctx, Group, msg, err)
	case f.Offer != nil:
		stage.Stamp(f.Offer, Group)
		ctx.Emit(goka.Stream(topics.OffersCandidates), f.Offer.MemberID, f.Offer)
		stage.CountEmit(ctx, Group, topics.OffersCandidates, 1)
	default:
		// One copy per partition: each answers from its own index.
		stage.Stamp(&f.Request.Offer, Group)
		for p, key := range d.keys {
			req := *f.Request
			req.Partition = int32(p)
			ctx.Emit(goka.Stream(topics.AudienceRequests), key, &req)
		}
		stage.CountEmit(ctx, Group, topics.AudienceRequests, len(d.keys))
	}
}

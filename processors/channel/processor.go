package channel

import (
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupChannel

// ReasonNoChannel drops an offer whose member is reachable on none of the
// listed channels.
const ReasonNoChannel = "no_channel"

// defaultChannels apply when no channel table matches.
var defaultChannels = rules.ChannelOutput{
	Channels: []string{topics.ChannelLine, topics.ChannelPush, topics.ChannelMail, topics.ChannelInApp},
	Strategy: StrategyFixed,
}

var routed = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "rtm_channel_routed_total",
	Help: "Offers routed, by channel (no_channel for dropped ones) and strategy.",
}, []string{"channel", "strategy"})

type router struct {
	rules  stage.Rules
	priors map[string]Prior
	now    func() time.Time
}

// Graph is the stage's topology.
func (r *router) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.OffersFiltered), stage.Raw, r.offer),
		goka.Join(memberstate.Table, memberstate.Codec{}),
		goka.Output(goka.Stream(topics.OffersRouted), topics.OfferCodec{}),
		goka.Output(goka.Stream(topics.OffersExcluded), topics.OfferCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the channel processor.
func New(env stage.Env, rs stage.Rules) (*goka.Processor, error) {
	r := &router{rules: rs, priors: DefaultPriors, now: time.Now}
	return goka.NewProcessor(env.Brokers, r.Graph(), env.ProcessorOptions()...)
}

// Route decides the channel of an offer: the decision to record and the
// channel ("" when dropped).
func Route(set *rules.Set, o *topics.Offer, p *memberstate.Profile, priors map[string]Prior, now time.Time) (topics.Decision, string) {
	out, table, rule := defaultChannels, "", "default"
	if p != nil {
		facts := stage.OfferFacts(o, p.Facts(now))
		for _, t := range set.Kind(rules.KindChannel) {
			d, ok, err := t.Evaluate(facts)
			if err != nil {
				return topics.Decision{Stage: Group, Table: t.Name(), Outcome: "exclude", Reason: "rule_error: " + err.Error()}, ""
			}
			if ok {
				out, table, rule = *d.Channel, d.Table+"@"+d.Version, d.Rule
				break
			}
		}
	}
	var ch string
	if p != nil {
		ch = Choose(p, out.Channels, out.Strategy, o.OfferID, priors, now)
	}
	if ch == "" {
		return topics.Decision{Stage: Group, Table: table, Rule: rule, Outcome: "exclude", Reason: ReasonNoChannel}, ""
	}
	return topics.Decision{Stage: Group, Table: table, Rule: rule, Outcome: "route:" + ch, Reason: out.Strategy}, ch
}

func (r *router) offer(ctx goka.Context, msg any) {
	o, ok := stage.Decode(ctx, Group, topics.OfferCodec{}, msg)
	if !ok {
		return
	}
	p, _ := ctx.Join(memberstate.Table).(*memberstate.Profile)
	d, ch := Route(r.rules.Current(), o, p, r.priors, r.now())
	o.Decisions = append(o.Decisions, d)
	stage.Stamp(o, Group)
	if ch == "" {
		routed.WithLabelValues(ReasonNoChannel, "").Inc()
		ctx.Emit(goka.Stream(topics.OffersExcluded), ctx.Key(), o)
		return
	}
	o.Channel = ch
	routed.WithLabelValues(ch, d.Reason).Inc()
	ctx.Emit(goka.Stream(topics.OffersRouted), ctx.Key(), o)
	stage.Emitted.WithLabelValues(Group, topics.OffersRouted).Inc()
}

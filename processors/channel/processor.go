package channel

import (
	"slices"
	"strings"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupChannel

// Reasons the stage excludes an offer for.
const (
	// ReasonNoChannel: the member is reachable on none of the listed
	// channels.
	ReasonNoChannel = "no_channel"
	// ReasonNoTemplate: the offer's template has no variant for any
	// listed channel the member is reachable on (or none at all).
	ReasonNoTemplate = "no_template"
	// ReasonRuleError: a channel table could not be evaluated.
	ReasonRuleError = "rule_error"
	// ReasonNoSnapshot: the offer carries no member snapshot (it was
	// filtered by a version that attached none); it is not sent on a
	// guess.
	ReasonNoSnapshot = "no_member_snapshot"
)

// defaultChannels apply when no channel table matches.
var defaultChannels = rules.ChannelOutput{
	Channels: []string{topics.ChannelLine, topics.ChannelPush, topics.ChannelMail, topics.ChannelInApp},
	Strategy: StrategyFixed,
}

var routed = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
	Name: "rtm_channel_routed_total",
	Help: "Offers routed, by channel and strategy; excluded ones by reason (no_channel, no_template, rule_error) in place of the channel, with an empty strategy.",
}, []string{"channel", "strategy"})

type router struct {
	rules  stage.Rules
	priors map[string]Prior
	keys   stage.Keys
}

// Graph is the stage's topology.
func (r *router) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.OffersFiltered), stage.Raw, r.offer),
		goka.Output(goka.Stream(topics.OffersRouted), topics.OfferCodec{}),
		goka.Output(goka.Stream(topics.OffersExcluded), topics.OfferCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the channel processor.
func New(env stage.Env, rs stage.Rules) (*goka.Processor, error) {
	r := &router{rules: rs, priors: DefaultPriors, keys: stage.KeysOf(Group, env)}
	return goka.NewProcessor(env.Brokers, r.Graph(), env.ProcessorOptions()...)
}

// Route decides the channel of an offer: the decision to record and the
// channel ("" when excluded; the decision's Reason says why).
//
// The stage chooses only among channels the offer's template has a variant
// for, so render always finds the content for the channel chosen: the
// listed channels without a variant are left out before the strategy
// picks, and an offer whose template has no variant on any listed channel
// the member is reachable on is excluded with ReasonNoTemplate. An offer
// that names no template (validated campaign tables always name one) is
// routed on the listed channels; render dead-letters it.
func Route(set *rules.Set, o *topics.Offer, priors map[string]Prior) (topics.Decision, string) {
	p := o.Member
	out, table, rule := defaultChannels, "", "default"
	if p != nil {
		facts := stage.OfferFacts(o, p.Facts)
		for _, t := range set.Kind(rules.KindChannel) {
			d, ok, err := t.Evaluate(facts)
			if err != nil {
				return topics.Decision{Stage: Group, Table: t.Name(), Outcome: "exclude", Reason: ReasonRuleError + ": " + err.Error()}, ""
			}
			if ok {
				out, table, rule = *d.Channel, d.Table+"@"+d.Version, d.Rule
				break
			}
		}
	}
	exclude := func(reason string) (topics.Decision, string) {
		return topics.Decision{Stage: Group, Table: table, Rule: rule, Outcome: "exclude", Reason: reason}, ""
	}
	usable := out.Channels
	if o.Template != "" {
		variants := set.TemplateChannels(o.Template)
		if len(variants) == 0 {
			return exclude(ReasonNoTemplate)
		}
		usable = withVariant(out.Channels, variants)
	}
	if p == nil {
		return exclude(ReasonNoSnapshot)
	}
	ch := Choose(p, usable, out.Strategy, o.OfferID, priors)
	if ch == "" {
		if len(usable) < len(out.Channels) && Choose(p, out.Channels, StrategyFixed, o.OfferID, priors) != "" {
			// Reachable, but not with this content.
			return exclude(ReasonNoTemplate)
		}
		return exclude(ReasonNoChannel)
	}
	return topics.Decision{Stage: Group, Table: table, Rule: rule, Outcome: "route:" + ch, Reason: out.Strategy}, ch
}

// withVariant returns the listed channels that have a template variant,
// in listed order.
func withVariant(listed, variants []string) []string {
	out := make([]string, 0, len(listed))
	for _, c := range listed {
		if slices.Contains(variants, c) {
			out = append(out, c)
		}
	}
	return out
}

func (r *router) offer(ctx goka.Context, msg any) {
	o, ok := stage.DecodeKeyed(ctx, r.keys, topics.OfferCodec{}, msg, stage.OfferIdentity)
	if !ok {
		return
	}
	d, ch := Route(r.rules.Current(), o, r.priors)
	o.Decisions = append(o.Decisions, d)
	stage.Stamp(o, Group)
	count(d, ch)
	if ch == "" {
		ctx.Emit(goka.Stream(topics.OffersExcluded), ctx.Key(), o)
		return
	}
	o.Channel = ch
	ctx.Emit(goka.Stream(topics.OffersRouted), ctx.Key(), o)
	stage.CountEmit(ctx, Group, topics.OffersRouted, 1)
}

// count records a routing decision: by channel and strategy, or by
// exclusion reason in place of the channel.
func count(d topics.Decision, ch string) {
	if ch == "" {
		label, _, _ := strings.Cut(d.Reason, ":") // rule_error: <message>
		routed.WithLabelValues(stage.BoundedLabel(label, ReasonNoChannel, ReasonNoTemplate, ReasonRuleError, ReasonNoSnapshot), "").Inc()
		return
	}
	routed.WithLabelValues(stage.BoundedLabel(ch, topics.ChannelMail, topics.ChannelLine, topics.ChannelPush, topics.ChannelInApp),
		stage.BoundedLabel(d.Reason, StrategyFixed, StrategyBest)).Inc()
}

// Package filter is the member-filtering stage: it joins each offer
// candidate with the member's profile (co-partitioned, read locally) and
// evaluates the published filter rule tables. Survivors go to
// offers.filtered carrying a snapshot of the member (topics.MemberSnapshot),
// which is all the later stages read of it; every exclusion goes to
// offers.excluded with the deciding rule and reason, and is counted by
// reason.
package filter

import (
	"strings"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupFilter

// Reasons that do not come from a rule table: these hold whatever the
// marketers publish.
const (
	ReasonUnknownMember = "unknown_member"
	ReasonWithdrawn     = "withdrawn"
	ReasonRuleError     = "rule_error"
)

var excluded = stage.Metrics.NewCounterVec(prometheus.CounterOpts{
	Name: "rtm_filter_excluded_total",
	Help: "Offers excluded by member filtering: reason rule (with the filter table and row that excluded), unknown_member, withdrawn or rule_error (with the table).",
}, []string{"reason", "table", "row"})

type filter struct {
	env   stage.Env
	rules stage.Rules
	now   func() time.Time
	keys  stage.Keys
}

// Graph is the stage's topology.
func (f *filter) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.OffersCandidates), stage.Raw, f.offer),
		goka.Join(member.Table, member.ReadCodec{}),
		goka.Output(goka.Stream(topics.OffersFiltered), topics.OfferCodec{}),
		goka.Output(goka.Stream(topics.OffersExcluded), topics.OfferCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the filter processor.
func New(env stage.Env, rs stage.Rules) (*goka.Processor, error) {
	f := &filter{env: env, rules: rs, now: time.Now, keys: stage.KeysOf(Group, env)}
	return goka.NewProcessor(env.Brokers, f.Graph(), env.ProcessorOptions()...)
}

// Decide returns the filter decision for an offer to a member and, when
// the offer passes, the member snapshot it carries on (nil: excluded). The
// rules read the snapshot's facts, so the profile is mapped to facts once.
// It is the stage's logic without Kafka.
func Decide(set *rules.Set, o *topics.Offer, p *member.Profile, now time.Time) (topics.Decision, *topics.MemberSnapshot) {
	switch {
	case p == nil || !p.Exists:
		return topics.Decision{Stage: Group, Outcome: "exclude", Reason: ReasonUnknownMember}, nil
	case !p.Targetable():
		return topics.Decision{Stage: Group, Outcome: "exclude", Reason: ReasonWithdrawn}, nil
	}
	snap := p.Snapshot(now)
	facts := stage.OfferFacts(o, snap.Facts)
	for _, t := range set.Kind(rules.KindFilter) {
		d, ok, err := t.Evaluate(facts)
		if err != nil {
			// A rule that cannot be evaluated excludes: sending on a broken
			// rule is worse than not sending.
			return topics.Decision{Stage: Group, Table: t.Name(), Outcome: "exclude", Reason: ReasonRuleError + ": " + err.Error()}, nil
		}
		if ok && d.Filter.Exclude {
			reason := d.Filter.Reason
			if reason == "" {
				reason = d.Rule
			}
			return topics.Decision{Stage: Group, Table: d.Table + "@" + d.Version, Rule: d.Rule, Row: d.Row, Outcome: "exclude", Reason: reason}, nil
		}
	}
	return topics.Decision{Stage: Group, Outcome: "pass"}, snap
}

func (f *filter) offer(ctx goka.Context, msg any) {
	o, ok := stage.DecodeKeyed(ctx, f.keys, topics.OfferCodec{}, msg, stage.OfferIdentity)
	if !ok {
		return
	}
	p, _ := ctx.Join(member.Table).(*member.Profile)
	d, snap := Decide(f.rules.Current(), o, p, f.now())
	o.Decisions = append(o.Decisions, d)
	stage.Stamp(o, Group)
	if snap == nil {
		excluded.WithLabelValues(ExclusionLabels(d)...).Inc()
		ctx.Emit(goka.Stream(topics.OffersExcluded), ctx.Key(), o)
		stage.CountEmit(ctx, Group, topics.OffersExcluded, 1)
		return
	}
	// Enrich once: the stages after this one read the member from the
	// offer, not from copies of the member table of their own.
	o.Member = snap
	ctx.Emit(goka.Stream(topics.OffersFiltered), ctx.Key(), o)
	stage.CountEmit(ctx, Group, topics.OffersFiltered, 1)
}

// ReasonRule labels exclusions by a filter rule; the rule is named by its
// table and row, never by the reason the marketer wrote.
const ReasonRule = "rule"

// ExclusionLabels are the rtm_filter_excluded_total labels of an
// exclusion: reason, table, row, all bounded by the code and the
// published tables.
func ExclusionLabels(d topics.Decision) []string {
	table, row := stage.RuleLabels(d)
	switch {
	case d.Reason == ReasonUnknownMember, d.Reason == ReasonWithdrawn:
		return []string{d.Reason, "", ""}
	case strings.HasPrefix(d.Reason, ReasonRuleError):
		return []string{ReasonRuleError, table, ""}
	}
	return []string{ReasonRule, table, row}
}

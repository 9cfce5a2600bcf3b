package timing

import (
	"time"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Timing values an offer can carry (from the campaign table).
const (
	TimingNow      = "now"
	TimingBestHour = "best_hour"
)

// Verdict is what Schedule decided for an offer.
type Verdict struct {
	Decision topics.Decision
	// SendAt is when the offer goes out; zero when dropped.
	SendAt time.Time
	// Duplicate is true for an offer already decided: nothing to do.
	Duplicate bool
}

// Dropped reports whether the offer was dropped.
func (v Verdict) Dropped() bool { return !v.Duplicate && v.SendAt.IsZero() }

// Schedule decides when an offer goes out, or drops it (expired, over a
// cap), and records the decision in the ledger: a slot for an offer let
// through, a held entry when it goes out later.
func Schedule(l *Ledger, set *rules.Set, o *topics.Offer, now time.Time) Verdict {
	p := o.Member
	if l.decided(o.OfferID) {
		return Verdict{Duplicate: true}
	}
	l.prune(now)
	drop := func(table, rule, reason string) Verdict {
		return Verdict{Decision: topics.Decision{Stage: Group, Table: table, Rule: rule, Outcome: "exclude", Reason: reason}}
	}
	// The rules are evaluated even without a member snapshot (an offer
	// filtered by a version that attached none): caps then still apply,
	// from the rows that need no member facts.
	var facts *rules.Facts
	if p != nil {
		facts = stage.OfferFacts(o, p.Facts)
	} else {
		facts = stage.OfferFacts(o, rules.Member{})
	}
	var out rules.TimingOutput
	table, rule := "", "default"
	for _, t := range set.Kind(rules.KindTiming) {
		d, ok, err := t.Evaluate(facts)
		if err != nil {
			// Not remembered: once the rule is fixed, a replay of this
			// offer is decided afresh.
			return drop(t.Name(), "", "rule_error: "+err.Error())
		}
		if ok {
			out, table, rule = *d.Timing, d.Table+"@"+d.Version, d.Rule
			break
		}
	}
	l.remember(o.OfferID)
	if !o.ExpiresAt.IsZero() && !now.Before(o.ExpiresAt) {
		return drop(table, rule, ReasonExpired)
	}
	loc := member.Location(p)
	at := now
	if o.Timing == TimingBestHour && p != nil && p.BestHour >= 0 {
		at = nextHour(now.In(loc), p.BestHour)
	}
	at = outsideQuiet(at.In(loc), out.QuietHours).UTC()
	if !o.ExpiresAt.IsZero() && !at.Before(o.ExpiresAt) {
		return drop(table, rule, ReasonExpired)
	}
	if reason := l.overCap(out, o.CampaignID, at); reason != "" {
		return drop(table, rule, reason)
	}
	l.Slots = append(l.Slots, Slot{OfferID: o.OfferID, CampaignID: o.CampaignID, At: at})
	outcome := "send_now"
	if at.After(now) {
		outcome = "hold_until:" + at.Format(time.RFC3339)
	}
	return Verdict{Decision: topics.Decision{Stage: Group, Table: table, Rule: rule, Outcome: outcome, Reason: o.Timing}, SendAt: at}
}

// nextHour returns the next time the local clock shows hour:00 (now itself
// if it is within that hour).
func nextHour(now time.Time, hour int) time.Time {
	if now.Hour() == hour {
		return now
	}
	t := time.Date(now.Year(), now.Month(), now.Day(), hour, 0, 0, 0, now.Location())
	if t.Before(now) {
		t = t.AddDate(0, 0, 1)
	}
	return t
}

// outsideQuiet moves a local time inside the quiet window to its end.
func outsideQuiet(t time.Time, q rules.QuietHours) time.Time {
	if !q.Contains(t) {
		return t
	}
	end := time.Date(t.Year(), t.Month(), t.Day(), q.To/60, q.To%60, 0, 0, t.Location())
	if !end.After(t) {
		end = end.AddDate(0, 0, 1)
	}
	return end
}

package stage

import (
	"strconv"
	"strings"
	"time"

	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Rules is where a stage gets the rule set in force: a rules.Watcher in a
// running system (hot-swapped as tables are published), a fixed set in
// tests. Current must be cheap and safe for concurrent use; a stage calls it
// once per message and uses that one set for the whole decision.
type Rules interface {
	Current() *rules.Set
}

// Fixed is a Rules that never changes.
type Fixed struct{ Set *rules.Set }

// Current returns the set.
func (f Fixed) Current() *rules.Set { return f.Set }

// Stamp records that stage handled the offer now.
func Stamp(o *topics.Offer, stage string) {
	o.Stamps = append(o.Stamps, topics.StageTime{Stage: stage, At: time.Now().UTC()})
}

// EventFacts maps an offer's event summary to rule facts. It is the one
// mapping from events to facts: the campaign stage evaluates against
// EventFacts of the summary it puts on the offers (topics.Event.Summary),
// and every later stage against EventFacts of the summary the offer
// carries, so a condition or template reads the same event everywhere.
func EventFacts(e *topics.EventSummary) rules.Event {
	return rules.Event{Type: e.Type, ItemID: e.ItemID, MemberID: e.MemberID, Brand: e.Brand, Category: e.Category,
		OldPrice: e.OldPrice, NewPrice: e.NewPrice, DropPct: e.DropPct, Stock: e.Stock, At: e.At, Attrs: e.Attrs}
}

// CampaignFacts maps an offer's campaign fields to rule facts.
func CampaignFacts(o *topics.Offer) rules.Campaign {
	return rules.Campaign{ID: o.CampaignID, Audience: o.Audience, Priority: o.Priority, Template: o.Template, Timing: o.Timing}
}

// OfferFacts is what the offer stages (filter, channel, timing, render)
// evaluate and render against: the offer's event and campaign, and the
// member's facts as the caller has them (zero when it has no profile).
// Which of them a table may read is the table kind's business.
func OfferFacts(o *topics.Offer, member rules.Member) *rules.Facts {
	return &rules.Facts{Event: EventFacts(&o.Event), Member: member, Campaign: CampaignFacts(o)}
}

// RuleLabels are the metric labels of the rule that made decision d: its
// table's name (without the version) and its worksheet row, both bounded
// by the published tables. Rule names, campaign IDs and reasons are the
// marketers' free text and never become labels. A decision no rule made
// has empty labels.
func RuleLabels(d topics.Decision) (table, row string) {
	table, _, _ = strings.Cut(d.Table, "@")
	if d.Row > 0 {
		row = strconv.Itoa(d.Row)
	}
	return table, row
}

// BoundedLabel is v if it is one of known, else "other": for labels whose
// values come from outside the code (rule outputs, error messages).
func BoundedLabel(v string, known ...string) string {
	for _, k := range known {
		if v == k {
			return v
		}
	}
	return "other"
}

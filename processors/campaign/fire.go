package campaign

import (
	"fmt"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Decide evaluates every campaign table (in name order, each by its own
// hit policy) against an event, appending to decisions. The facts are
// those of the summary the offers will carry, so every later stage reads
// the event the campaign table read; the summary is returned for Fire.
// It is the stage's decision without Kafka: `rtm simulate` calls it too.
func Decide(set *rules.Set, e *topics.Event, decisions []rules.Decision) (topics.EventSummary, []rules.Decision, error) {
	sum := e.Summary()
	facts := &rules.Facts{Event: stage.EventFacts(&sum)}
	for _, t := range set.Kind(rules.KindCampaign) {
		var err error
		if decisions, err = t.Decide(decisions, facts); err != nil {
			return sum, decisions, err
		}
	}
	return sum, decisions, nil
}

// Firing is what the stage emits for one campaign decision: an offer to
// the event's member (Offer), or, for an item-wide audience, the request
// every partition answers from its own index (Request; the caller sets
// Partition on each copy).
type Firing struct {
	Offer   *topics.Offer
	Request *topics.AudienceRequest
}

// Fire builds what campaign decision dec of event e emits, or says why it
// cannot be emitted (the stage dead-letters the event). Nothing is
// stamped: stamps are the stage's wall-clock bookkeeping.
func Fire(e *topics.Event, sum topics.EventSummary, dec rules.Decision) (Firing, error) {
	c := dec.Campaign
	offer := topics.Offer{
		CampaignID: c.Campaign, RulesVersion: dec.Table + "@" + dec.Version, Event: sum,
		Audience: c.Audience, Priority: c.Priority, Template: c.Template, Timing: c.Timing, Holdout: c.Holdout,
		Decisions: []topics.Decision{{Stage: Group, Table: dec.Table, Rule: dec.Rule, Row: dec.Row, Outcome: "fire"}},
	}
	if c.ExpiresAfter > 0 {
		offer.ExpiresAt = e.At.Add(c.ExpiresAfter)
	}
	switch c.Audience {
	case topics.AudienceMember, "":
		if e.MemberID == "" {
			return Firing{}, fmt.Errorf("campaign %s targets the event's member, but event %s has no member_id (%s)", c.Campaign, e.EventID, dec.Trace)
		}
		offer.MemberID = e.MemberID
		offer.OfferID = topics.OfferID(c.Campaign, e.EventID, e.MemberID)
		offer.AssignHoldout()
		return Firing{Offer: &offer}, nil
	case topics.AudienceFavoritesOfItem:
		if e.ItemID == "" {
			return Firing{}, fmt.Errorf("campaign %s targets favourites of the event's item, but event %s has no item_id (%s)", c.Campaign, e.EventID, dec.Trace)
		}
		return Firing{Request: &topics.AudienceRequest{RequestID: topics.RequestID(c.Campaign, e.EventID), Audience: c.Audience,
			ItemID: e.ItemID, Offer: offer, At: e.At}}, nil
	case topics.AudienceSegment:
		return Firing{Request: &topics.AudienceRequest{RequestID: topics.RequestID(c.Campaign, e.EventID), Audience: c.Audience,
			Segment: c.Segment, Offer: offer, At: e.At}}, nil
	default:
		return Firing{}, fmt.Errorf("campaign %s: audience %q is not supported yet (%s)", c.Campaign, c.Audience, dec.Trace)
	}
}

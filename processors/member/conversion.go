package member

import (
	"slices"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// maxExposures bounds the exposures a profile keeps: the table is read on
// every offer, and a member whom caps let through a few messages a day
// has far fewer within a conversion window of a week. When more arrive,
// the oldest are dropped first (their orders would be attributed to the
// newer ones anyway).
const maxExposures = 16

// DefaultConversionWindow is how long after a sent or held_out delivery an
// order counts as a conversion of it, unless configured otherwise.
const DefaultConversionWindow = 7 * 24 * time.Hour

// Exposure is a delivery of a campaign that reached the send stage for the
// member: sent (treatment) or held out (control). It is what an order is
// attributed to. Its fields are short on purpose: it is kept in the
// member table, which every offer reads.
type Exposure struct {
	OfferID    string    `json:"offer_id"`
	CampaignID string    `json:"campaign_id"`
	HeldOut    bool      `json:"held_out,omitempty"`
	At         time.Time `json:"at"`
}

// Group is the exposure's group (topics.GroupTreatment or GroupHoldout).
func (e Exposure) Group() string {
	if e.HeldOut {
		return topics.GroupHoldout
	}
	return topics.GroupTreatment
}

// Expose records a sent or held_out delivery result as an exposure (other
// statuses reached nobody and are ignored) and drops the exposures that
// are older than window as of the result's time. It reports whether the
// profile changed. A result whose offer is already recorded changes
// nothing, so a redelivered result is one exposure.
//
// Every campaign's deliveries are recorded, not only those of campaigns
// with a hold-out: member-state does not read the rules, and a campaign
// without a hold-out still gets its conversions (with no control group to
// compare them with).
func (p *Profile) Expose(r *topics.DeliveryResult, window time.Duration) bool {
	g := topics.ResultGroup(r.Status)
	if g == "" || r.OfferID == "" {
		return false
	}
	if slices.ContainsFunc(p.Exposures, func(e Exposure) bool { return e.OfferID == r.OfferID }) {
		return false
	}
	p.Exposures = append(p.Exposures, Exposure{OfferID: r.OfferID, CampaignID: r.CampaignID,
		HeldOut: g == topics.GroupHoldout, At: r.At})
	// Results arrive roughly in time order, but a retried delivery's
	// result can be late: keep them sorted so the oldest go first.
	slices.SortStableFunc(p.Exposures, func(a, b Exposure) int { return a.At.Compare(b.At) })
	p.pruneExposures(r.At, window)
	return true
}

// pruneExposures drops the exposures older than window as of now (event
// time, so a replay prunes the same way) and the oldest beyond
// maxExposures.
func (p *Profile) pruneExposures(now time.Time, window time.Duration) {
	p.Exposures = slices.DeleteFunc(p.Exposures, func(e Exposure) bool { return now.Sub(e.At) > window })
	if n := len(p.Exposures) - maxExposures; n > 0 {
		p.Exposures = slices.Delete(p.Exposures, 0, n)
	}
	if len(p.Exposures) == 0 {
		p.Exposures = nil
	}
}

// Attribute returns the conversions of a new order: one for each exposure
// of the member at or before the order and at most window before it,
// whatever item was ordered (the delivery results an exposure comes from
// do not name the offered item; the conversion names the ordered one). The
// caller emits them; Attribute also prunes exposures that have left the
// window. Call it once per new order: member-state applies an order row
// only when its Change Tracking version is new, so a replay attributes
// nothing again, and the conversion IDs (offer, order) let readers drop a
// record written twice.
func (p *Profile) Attribute(o Order, window time.Duration) []topics.Conversion {
	var out []topics.Conversion
	for _, e := range p.Exposures {
		if e.At.After(o.At) || o.At.Sub(e.At) > window {
			continue
		}
		out = append(out, topics.Conversion{ConversionID: topics.ConversionID(e.OfferID, o.OrderID),
			OfferID: e.OfferID, MemberID: p.MemberID, CampaignID: e.CampaignID, Group: e.Group(),
			OrderID: o.OrderID, ItemID: o.ItemID, Total: o.Total, ExposedAt: e.At, OrderedAt: o.At})
	}
	p.pruneExposures(o.At, window)
	return out
}

package topics

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// HeldOut reports whether member is in campaign's hold-out group when the
// campaign holds out pct percent (0–100) of its audience.
//
// The assignment is a hash of (member, campaign) only, never a random draw
// or a counter: every stage, every replay and every process computes the
// same answer, so a member is in the same group for every offer of the
// campaign (the report compares members, not offers), and another
// campaign draws its own, independent hold-out. The hash maps each pair to
// a point u in [0, 1) and the member is held out when u < pct/100, so
// raising a campaign's percentage only adds members to its hold-out and
// lowering it only releases some: nobody switches back and forth.
func HeldOut(member, campaign string, pct float64) bool {
	if !(pct > 0) { // also NaN
		return false
	}
	if pct >= 100 {
		return true
	}
	h := sha256.New()
	h.Write([]byte("holdout"))
	h.Write([]byte{0})
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(campaign))
	u := float64(binary.BigEndian.Uint64(h.Sum(nil)[:8])>>11) / (1 << 53)
	return u < pct/100
}

// AssignHoldout puts the offer's member in its campaign's hold-out group
// or not (HeldOut). Stages call it where they set MemberID.
func (o *Offer) AssignHoldout() { o.HeldOut = HeldOut(o.MemberID, o.CampaignID, o.Holdout) }

// Groups of a campaign's audience, as conversions and reports name them.
const (
	// GroupTreatment members were sent the campaign's messages.
	GroupTreatment = "treatment"
	// GroupHoldout members were held out: the same offers reached the send
	// stage and were recorded held_out, not sent.
	GroupHoldout = "holdout"
)

// ResultGroup is the group a delivery result exposes its member in:
// treatment for a sent delivery, holdout for a held_out one, and none
// ("") for a failed or suppressed one, which reached nobody and would
// not have reached a held-out member either.
func ResultGroup(status string) string {
	switch status {
	case StatusSent:
		return GroupTreatment
	case StatusHeldOut:
		return GroupHoldout
	}
	return ""
}

// Conversion is an order attributed to an earlier exposure of the same
// member to a campaign (a sent or held_out delivery result within the
// conversion window before the order), on campaign.conversions, keyed by
// member_id. Member-state writes one per (exposure, order): ConversionID
// is a hash of the offer and the order, so a record written again by a
// replay is recognised and counted once.
type Conversion struct {
	Envelope
	ConversionID string `json:"conversion_id"`
	OfferID      string `json:"offer_id"`
	MemberID     string `json:"member_id"`
	CampaignID   string `json:"campaign_id"`
	// Group is GroupTreatment or GroupHoldout.
	Group   string `json:"group"`
	OrderID string `json:"order_id"`
	// ItemID is the ordered item; Total the order's total.
	ItemID    string    `json:"item_id,omitempty"`
	Total     float64   `json:"total,omitempty"`
	ExposedAt time.Time `json:"exposed_at"`
	OrderedAt time.Time `json:"ordered_at"`
}

// ConversionID is the ID of the conversion of an offer by an order.
func ConversionID(offerID, orderID string) string { return hashID("cv-", offerID, orderID) }

func (m *Conversion) Validate() error {
	return errors.Join(
		required("conversion_id", m.ConversionID, "offer_id", m.OfferID, "member_id", m.MemberID,
			"campaign_id", m.CampaignID, "order_id", m.OrderID),
		oneOf("group", m.Group, GroupTreatment, GroupHoldout))
}

// ConversionCodec is campaign.conversions' codec.
type ConversionCodec = JSON[Conversion, *Conversion]

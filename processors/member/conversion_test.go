package member

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// TestAttributeConversions: an order is attributed to every sent or
// held_out delivery at most a window before it, in the delivery's group;
// failed and suppressed deliveries, later deliveries and older ones are
// not exposures of it.
func TestAttributeConversions(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	const window = 7 * 24 * time.Hour
	res := func(offer, campaign, status string, at time.Time) *topics.DeliveryResult {
		return &topics.DeliveryResult{DeliveryID: "dl-" + offer, OfferID: offer, MemberID: "M1", CampaignID: campaign,
			Channel: "MAIL", Status: status, At: at}
	}
	type conv struct{ offer, campaign, group string }
	cases := []struct {
		name    string
		results []*topics.DeliveryResult
		orderAt time.Time
		want    []conv
	}{
		{"sent, then an order", []*topics.DeliveryResult{res("o1", "c", topics.StatusSent, t0)}, t0.Add(time.Hour),
			[]conv{{"o1", "c", topics.GroupTreatment}}},
		{"held out, then an order", []*topics.DeliveryResult{res("o1", "c", topics.StatusHeldOut, t0)}, t0.Add(time.Hour),
			[]conv{{"o1", "c", topics.GroupHoldout}}},
		{"failed and suppressed reach nobody", []*topics.DeliveryResult{res("o1", "c", topics.StatusFailed, t0),
			res("o2", "c", topics.StatusSuppressed, t0)}, t0.Add(time.Hour), nil},
		{"an order before the delivery", []*topics.DeliveryResult{res("o1", "c", topics.StatusSent, t0)}, t0.Add(-time.Second), nil},
		{"at the window's end", []*topics.DeliveryResult{res("o1", "c", topics.StatusSent, t0)}, t0.Add(window),
			[]conv{{"o1", "c", topics.GroupTreatment}}},
		{"past the window", []*topics.DeliveryResult{res("o1", "c", topics.StatusSent, t0)}, t0.Add(window + time.Second), nil},
		{"two campaigns, one order", []*topics.DeliveryResult{res("o1", "a", topics.StatusSent, t0),
			res("o2", "b", topics.StatusHeldOut, t0.Add(time.Hour))}, t0.Add(2 * time.Hour),
			[]conv{{"o1", "a", topics.GroupTreatment}, {"o2", "b", topics.GroupHoldout}}},
		{"a redelivered result is one exposure", []*topics.DeliveryResult{res("o1", "c", topics.StatusSent, t0),
			res("o1", "c", topics.StatusSent, t0)}, t0.Add(time.Hour), []conv{{"o1", "c", topics.GroupTreatment}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Profile{MemberID: "M1"}
			for _, r := range tc.results {
				p.Expose(r, window)
			}
			got := p.Attribute(Order{OrderID: "ord-1", ItemID: "I1", Total: 1200, At: tc.orderAt}, window)
			var gotc []conv
			for _, c := range got {
				gotc = append(gotc, conv{c.OfferID, c.CampaignID, c.Group})
				if c.ConversionID != topics.ConversionID(c.OfferID, "ord-1") || c.OrderID != "ord-1" || c.ItemID != "I1" ||
					c.MemberID != "M1" || !c.OrderedAt.Equal(tc.orderAt) || c.Validate() != nil {
					t.Errorf("conversion %+v (%v)", c, c.Validate())
				}
			}
			if !slices.Equal(gotc, tc.want) {
				t.Errorf("conversions %v, want %v", gotc, tc.want)
			}
		})
	}
}

// TestExposuresStayBounded: a profile keeps at most maxExposures, the
// newest, and none older than the window as of the latest result.
func TestExposuresStayBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	p := &Profile{MemberID: "M1"}
	for i := range 40 {
		p.Expose(&topics.DeliveryResult{OfferID: fmt.Sprintf("o%02d", i), CampaignID: "c", Status: topics.StatusSent,
			At: t0.Add(time.Duration(i) * time.Hour)}, 7*24*time.Hour)
	}
	if len(p.Exposures) != maxExposures || p.Exposures[0].OfferID != fmt.Sprintf("o%02d", 40-maxExposures) {
		t.Fatalf("%d exposures from %s, want the newest %d", len(p.Exposures), p.Exposures[0].OfferID, maxExposures)
	}
	p.Expose(&topics.DeliveryResult{OfferID: "late", CampaignID: "c", Status: topics.StatusHeldOut, At: t0.Add(30 * 24 * time.Hour)}, 7*24*time.Hour)
	if len(p.Exposures) != 1 || p.Exposures[0].OfferID != "late" {
		t.Fatalf("after a result a month later: %+v, want only it", p.Exposures)
	}
}

package campaign

import (
	"testing"
	"time"

	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// TestFireCarriesTheHoldout: the row's holdout reaches every offer, and
// the member is assigned where it is first known — by Fire for a member
// audience, by audience.Match for an item-wide one — with the same answer
// as topics.HeldOut.
func TestFireCarriesTheHoldout(t *testing.T) {
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		audience string
		holdout  float64
	}{
		{"member audience, everyone held out", topics.AudienceMember, 100},
		{"member audience, nobody held out", topics.AudienceMember, 0},
		{"favourites, everyone held out", topics.AudienceFavoritesOfItem, 100},
		{"favourites, a tenth", topics.AudienceFavoritesOfItem, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &topics.Event{EventID: "ev1", Type: "price_drop", MemberID: "M00005", ItemID: "I1", At: at}
			dec := rules.Decision{Trace: rules.Trace{Table: "campaigns", Row: 5},
				Campaign: &rules.CampaignOutput{Campaign: "spring-sale", Audience: tc.audience, Holdout: tc.holdout}}
			f, err := Fire(e, e.Summary(), dec)
			if err != nil {
				t.Fatal(err)
			}
			var offers []topics.Offer
			if f.Offer != nil {
				offers = append(offers, *f.Offer)
			} else {
				for _, m := range []string{"M00005", "M00006", "M00013"} {
					offers = append(offers, audience.Match(f.Request, m, "favourited I1"))
				}
			}
			for _, o := range offers {
				if o.Holdout != tc.holdout || o.HeldOut != topics.HeldOut(o.MemberID, "spring-sale", tc.holdout) {
					t.Errorf("%s: holdout %v held_out %v, want %v and %v", o.MemberID, o.Holdout, o.HeldOut,
						tc.holdout, topics.HeldOut(o.MemberID, "spring-sale", tc.holdout))
				}
				if tc.holdout == 100 && !o.HeldOut {
					t.Errorf("%s not held out by a 100%% hold-out", o.MemberID)
				}
			}
		})
	}
}

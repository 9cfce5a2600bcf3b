package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// TestSegmentCampaignReachesExactlyTheSegment: a campaign with
// audience=segment reaches the targetable members whose members row lists
// the segment — found on every partition from its own segment index — and
// nobody else; a member who leaves the segment is not reached again.
func TestSegmentCampaignReachesExactlyTheSegment(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(set(t, table(t, "campaigns", rules.KindCampaign, []string{"campaign", "audience", "segment", "template"},
		[]any{"vip-news", "segment", "vip", "t"})))
	h := newHarness(t, rs)
	for _, s := range stagesOne {
		h.start(s, "")
	}
	filtered := h.collect(topics.OffersFiltered)
	var want []string
	for i := range 30 {
		row := topics.MemberRow{MemberID: fmt.Sprintf("S%02d", i), Email: fmt.Sprintf("s%d@example.jp", i),
			MailOptIn: true, Status: "active", Timezone: "Asia/Tokyo"}
		switch i % 3 {
		case 0:
			row.Segments = "newsletter, vip"
			if i == 9 {
				row.Status = "withdrawn" // in the segment, but never targeted
			} else {
				want = append(want, row.MemberID)
			}
		case 1:
			row.Segments = "newsletter,vipp" // a near name is another segment
		}
		h.member(row)
	}
	slices.Sort(want)
	h.waitSegment("vip", len(want))

	drop := func(price float64) {
		h.item(topics.OpUpdate, topics.ItemRow{ItemID: "I-S", Name: "土鍋", Price: price, Stock: 3})
	}
	h.item(topics.OpInsert, topics.ItemRow{ItemID: "I-S", Name: "土鍋", Price: 5000, Stock: 3})
	drop(3000)
	// The campaign has no condition: it fires for both events (the new
	// item and its price drop), each time for the segment.
	testkit.Eventually(t, time.Minute, "the segment's offers", func() bool { return filtered.len() >= 2*len(want) })
	reached := func(price float64) []string {
		var got []string
		for _, o := range filtered.offers(t) {
			if o.Event.NewPrice == price || (price == 0 && o.Event.Type != detect.PriceDrop) {
				got = append(got, o.MemberID)
			}
		}
		slices.Sort(got)
		return got
	}
	for _, price := range []float64{0, 3000} {
		if got := reached(price); !slices.Equal(got, want) {
			t.Fatalf("segment campaign reached %v, want %v", got, want)
		}
	}
	for _, o := range filtered.offers(t) {
		if d := o.Decisions[1]; d.Stage != "audience" || !strings.Contains(d.Reason, "segment vip") {
			t.Errorf("%s: audience decision %+v", o.MemberID, d)
		}
	}

	// S00 leaves the segment: the next event reaches the others only.
	h.member(topics.MemberRow{MemberID: "S00", Email: "s0@example.jp", MailOptIn: true, Status: "active", Segments: "newsletter"})
	h.waitSegment("vip", len(want)-1)
	drop(2000)
	testkit.Eventually(t, time.Minute, "the second drop's offers", func() bool { return filtered.len() >= 3*len(want)-1 })
	if second := reached(2000); !slices.Equal(second, want[1:]) {
		t.Errorf("after S00 left the segment: %v, want %v", second, want[1:])
	}
}

// waitSegment waits until the audience stage's copy of the member table
// lists n members of segment across its partitions.
func (h *harness) waitSegment(segment string, n int) {
	h.t.Helper()
	reg := h.built[audience.Group].Env.Registry
	testkit.Eventually(h.t, time.Minute, fmt.Sprintf("%d members of segment %s in audience's index", n, segment), func() bool {
		count := 0
		for p := range int32(testPartitions) {
			st := reg.Store(string(member.Table), p)
			if st == nil {
				return false
			}
			err := st.Lookup(member.SegmentsIndex, segment, func(string) error { count++; return nil })
			if errors.Is(err, state.ErrIndexNotReady) {
				return false
			}
			if err != nil {
				h.t.Fatal(err)
			}
		}
		return count == n
	})
}

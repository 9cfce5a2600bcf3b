package pipeline

import (
	"slices"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// TestFailedDeliveryFreesItsCapSlot: with a day cap of 1, a second offer
// is capped while the first counts; once the first delivery has failed for
// good, its slot is free and the next offer goes out.
func TestFailedDeliveryFreesItsCapSlot(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(set(t,
		table(t, "timing", rules.KindTiming, []string{"cap_day"}, []any{1.0}),
		table(t, "channels", rules.KindChannel, []string{"channels", "strategy"}, []any{"MAIL", "fixed"})))
	h := newHarness(t, rs)
	for _, s := range []string{memberstate.Group, channel.Group, timing.Group} {
		h.start(s, "")
	}
	ready, excluded := h.collect(topics.OffersReady), h.collect(topics.OffersExcluded)
	h.member(topics.MemberRow{MemberID: "M1", Email: "m1@example.jp", MailOptIn: true, Status: "active", Timezone: "UTC"})

	offer := func(id string) {
		h.offer(topics.OffersFiltered, &topics.Offer{OfferID: id, CampaignID: "c-" + id, MemberID: "M1", Timing: "now"})
	}
	offer("of-1")
	offer("of-2")
	testkit.Eventually(t, time.Minute, "two decisions", func() bool { return ready.len() == 1 && excluded.len() == 1 })
	h.result(topics.DeliveryResult{DeliveryID: "d-1", OfferID: "of-1", MemberID: "M1", CampaignID: "c-of-1",
		Channel: topics.ChannelMail, Status: topics.StatusFailed, Error: "permanent: 550 no such user", At: time.Now().UTC()})
	h.waitFor(timing.Group, "of-1's slot to be freed", func(v []byte) bool {
		l, err := timing.Codec{}.Decode(v)
		if err != nil {
			return false
		}
		led := l.(*timing.Ledger)
		return slices.Contains(led.Done, "of-1") && len(led.Slots) == 0
	})
	offer("of-3")
	testkit.Eventually(t, time.Minute, "of-3 decided", func() bool { return ready.len()+excluded.len() == 3 })
	if ready.len() != 2 {
		t.Fatalf("after the failed delivery freed its slot, of-3 was capped: %d ready", ready.len())
	}
}

package pipeline

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/topics"
)

// recordingDeliverer reports every delivery sent and remembers whom it
// was for.
type recordingDeliverer struct {
	mu      sync.Mutex
	members []string
}

func (r *recordingDeliverer) Deliver(_ context.Context, d *topics.Delivery) channels.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.members = append(r.members, d.MemberID)
	return channels.Outcome{Status: topics.StatusSent, Attempts: 1}
}

// TestOptOutAfterFilterStopsTheDelivery: two favouriters pass the filter
// with mail allowed in their snapshots and their mails are rendered; then
// one of them opts out of mail. The send stage, started only now, sends
// the other's mail and records the opted-out member's as suppressed: the
// member-consent table wins over the snapshot the offer was filtered with.
// A member's first members row writes no consent row; the opt-out writes
// the first.
func TestOptOutAfterFilterStopsTheDelivery(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(exampleRules(t))
	h := newHarness(t, rs)
	h.cfg.Render = render.Config{TrackingBase: "http://127.0.0.1:1", Keys: testKeys(t), MailFrom: "shop@example.jp"}
	dl := &recordingDeliverer{}
	h.cfg.Deliverer = dl
	for _, s := range append(stagesOne, channel.Group, timing.Group, render.Group) {
		h.start(s, "")
	}
	deliveries, consent, results := h.collect(topics.Deliveries), h.collect(topics.MemberConsent), h.collect(topics.DeliveryResults)
	for _, id := range []string{"K1", "K2"} {
		h.member(topics.MemberRow{MemberID: id, Email: id + "@example.jp", MailOptIn: true, Status: "active", Timezone: simulator.NoonZone()})
		h.favorite(id, "I-OPT")
	}
	h.restock("I-OPT", 2)
	testkit.Eventually(t, time.Minute, "both members' mails rendered", func() bool { return deliveries.len() == 2 })
	if n := consent.len(); n != 0 {
		t.Errorf("%d member-consent rows for two new members, want none (a member's first members row writes none)", n)
	}

	h.member(topics.MemberRow{MemberID: "K1", Email: "K1@example.jp", MailOptIn: false, Status: "active", Timezone: simulator.NoonZone()})
	testkit.Eventually(t, time.Minute, "K1's consent without mail", func() bool {
		consent.mu.Lock()
		defer consent.mu.Unlock()
		for _, r := range consent.recs {
			if c, err := (topics.ConsentCodec{}).Decode(r.Value); err == nil && c.(*topics.Consent).MemberID == "K1" && !c.(*topics.Consent).Allows(topics.ChannelMail) {
				return true
			}
		}
		return false
	})

	h.start(send.Group, "")
	testkit.Eventually(t, time.Minute, "two delivery results", func() bool { return results.len() == 2 })
	status := map[string]string{}
	results.mu.Lock()
	for _, r := range results.recs {
		v, err := topics.DeliveryResultCodec{}.Decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		res := v.(*topics.DeliveryResult)
		status[res.MemberID] = res.Status
	}
	results.mu.Unlock()
	if status["K1"] != topics.StatusSuppressed || status["K2"] != topics.StatusSent {
		t.Errorf("results %v, want K1 suppressed (opted out after filtering) and K2 sent", status)
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if len(dl.members) != 1 || dl.members[0] != "K2" {
		t.Errorf("sent to %v, want only K2", dl.members)
	}
}

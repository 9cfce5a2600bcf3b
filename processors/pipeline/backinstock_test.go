package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/tracking"

	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/topics"
)

// TestBackInStockRendersTheRealStock runs a restock from its change row to
// the rendered mail with the example rules: the event's stock reaches
// render through every stage, so the message says 7, not 0.
func TestBackInStockRendersTheRealStock(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(exampleRules(t))
	h := newHarness(t, rs)
	h.cfg.Render = render.Config{TrackingBase: "http://127.0.0.1:1", Keys: testKeys(t), MailFrom: "shop@example.jp"}
	for _, s := range append(stagesOne, channel.Group, timing.Group, render.Group) {
		h.start(s, "")
	}
	deliveries := h.collect(topics.Deliveries)
	h.member(topics.MemberRow{MemberID: "B1", Email: "b1@example.jp", MailOptIn: true, Status: "active", Timezone: simulator.NoonZone()})
	h.favorite("B1", "I-BIS")
	h.restock("I-BIS", 1)
	testkit.Eventually(t, time.Minute, "the back-in-stock delivery", func() bool { return deliveries.len() >= 1 })
	deliveries.mu.Lock()
	first := deliveries.recs[0]
	deliveries.mu.Unlock()
	d, err := topics.DeliveryCodec{}.DecodeValue(first.Value)
	if err != nil {
		t.Fatal(err)
	}
	if d.CampaignID != "back-in-stock" || !strings.Contains(string(d.Payload), "7点") || strings.Contains(string(d.Payload), "0点") {
		t.Errorf("delivery %s for %s: payload %s, want the real stock (7点)", d.DeliveryID, d.CampaignID, d.Payload)
	}
}

// testKeys is a tracking keyring for the stages that render.
func testKeys(t *testing.T) *tracking.Keyring {
	kr, err := tracking.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// restock waits until the n favouriters of item are indexed and in the
// filter stage's table, then writes the item out of stock and back with 7
// (a back_in_stock event for the example campaigns).
func (h *harness) restock(item string, n int) {
	h.t.Helper()
	h.waitIndexed(item, n)
	h.waitProfilesBy(filter.Group, n)
	row := topics.ItemRow{ItemID: item, Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: 5000}
	h.item(topics.OpInsert, row)
	row.Stock = 7
	h.item(topics.OpUpdate, row)
}

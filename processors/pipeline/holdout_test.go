package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/report"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// TestHoldoutMeasuresUplift is issue #15's hold-out end to end: a segment
// campaign with holdout 10 over 10,000 members. Every member's offer goes
// through every stage; about a tenth of them, chosen by the hash of member
// and campaign, are recorded held_out by the send stage and never reach
// the channel adapter. Replaying the audience stage (where the members of
// an item-wide audience are assigned) assigns the same members, and sends
// nothing again. Orders written as cdc.orders rows after the deliveries
// are attributed to both groups by member-state, and the report counts
// them and computes the uplift exactly. Under the race detector (make
// test-race) it runs over 2,000 members: 10,000 took six minutes there.
func TestHoldoutMeasuresUplift(t *testing.T) {
	t.Parallel()
	const campaignID = "hold-sale"
	members := 10000
	if raceEnabled {
		members = 2000
	}
	start := time.Now()
	tpl, err := rules.Compile(rules.TableSpec{Name: "templates", Kind: rules.KindTemplate, Sheet: "T",
		Columns: []rules.Column{{Type: rules.ColField, Template: "id"}, {Type: rules.ColField, Template: "channel"},
			{Type: rules.ColField, Template: "body"}, {Type: rules.ColField, Template: "url"}},
		Rows: []rules.Row{{Row: 3, Cells: []rules.Value{{V: "t-line"}, {V: "LINE"}, {V: "セール {{.event.item_id}}"}, {V: "https://shop.example.jp/i"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	rs := &swappable{}
	rs.p.Store(set(t,
		table(t, "campaigns", rules.KindCampaign, []string{"campaign", "audience", "segment", "template", "holdout"},
			[]any{campaignID, "segment", "all", "t-line", 10.0}),
		table(t, "timing", rules.KindTiming, []string{"cap_day"}, []any{3.0}),
		table(t, "channels", rules.KindChannel, []string{"channels", "strategy"}, []any{"LINE", "fixed"}), tpl))
	h := newHarness(t, rs)
	dl := &recordingDeliverer{}
	h.cfg.Deliverer = dl
	h.cfg.Render = render.Config{TrackingBase: "http://127.0.0.1:1", Keys: testKeys(t), MailFrom: "shop@example.jp"}
	all := append(slices.Clone(stagesOne), channel.Group, timing.Group, render.Group, send.Group)
	for _, s := range all {
		h.start(s, "")
	}
	ids := make([]string, members)
	rows := make([]topics.MemberRow, members)
	for i := range ids {
		ids[i] = fmt.Sprintf("HO%05d", i)
		rows[i] = topics.MemberRow{MemberID: ids[i], LineUserID: fmt.Sprintf("U%032d", i), LineOptIn: true,
			Status: "active", Timezone: "UTC", Segments: "all"}
	}
	h.cdcBatch("members", len(rows), func(i int) (string, map[string]any, any) {
		return rows[i].MemberID, map[string]any{"member_id": rows[i].MemberID}, rows[i]
	})
	h.waitSegment("all", members)
	h.waitProfilesBy(filter.Group, members)
	t.Logf("%d members indexed after %v", members, time.Since(start).Round(time.Millisecond))

	h.item(topics.OpInsert, topics.ItemRow{ItemID: "I-HOLD", Name: "土鍋", Price: 5000, Stock: 3})
	// Render's template time budget is wall-clock (rules.TemplateTimeout):
	// on a machine loaded far past its cores a render can overrun it, and
	// the offer is dead-lettered with that reason instead of delivered.
	// Such offers are counted, not failed on; any other dead letter fails.
	overBudget := func() map[string]bool {
		lost := map[string]bool{}
		for _, dl := range decodeAll(t, h.records(topics.DLQ), topics.DeadLetterCodec{}) {
			if dl.Stage != render.Group || !strings.Contains(dl.Reason, rules.ErrOverBudget.Error()) {
				t.Fatalf("dead letter from %s: %s", dl.Stage, dl.Reason)
			}
			lost[dl.Key] = true
		}
		return lost
	}
	testkit.Eventually(t, 4*time.Minute, "a result for every member", func() bool {
		return len(h.records(topics.DeliveryResults))+len(overBudget()) >= members
	})
	h.caughtUp(all...)
	lost := overBudget()
	t.Logf("%d delivery results after %v (%d offers dead-lettered by render's time budget)", members-len(lost),
		time.Since(start).Round(time.Millisecond), len(lost))

	// The assignment: offers.ready has every member's offer, a tenth of
	// them held out.
	ready := decodeAll(t, h.records(topics.OffersReady), topics.OfferCodec{})
	assignedOut := map[string]bool{}
	for _, o := range ready {
		if o.Holdout != 10 || o.HeldOut != topics.HeldOut(o.MemberID, campaignID, 10) {
			t.Fatalf("offers.ready: %s held_out %v holdout %v, want %v and 10", o.MemberID, o.HeldOut, o.Holdout, !o.HeldOut)
		}
		if o.HeldOut {
			assignedOut[o.MemberID] = true
		}
	}
	if len(ready) != members {
		t.Fatalf("%d offers ready, want %d: held-out offers go through every stage", len(ready), members)
	}
	if n := len(assignedOut); n < members*9/100 || n > members*11/100 {
		t.Fatalf("a 10%% hold-out of %d members held out %d, want %d to %d", members, n, members*9/100, members*11/100)
	}

	results := decodeAll(t, h.records(topics.DeliveryResults), topics.DeliveryResultCodec{})
	heldOut, sent := map[string]bool{}, map[string]bool{}
	delivered := map[string]string{} // member → a sent delivery
	for _, r := range results {
		switch r.Status {
		case topics.StatusHeldOut:
			heldOut[r.MemberID] = true
		case topics.StatusSent:
			sent[r.MemberID] = true
			delivered[r.MemberID] = r.DeliveryID
		default:
			t.Errorf("result %s for %s: %s %s", r.DeliveryID, r.MemberID, r.Status, r.Error)
		}
	}
	if len(results) != members-len(lost) || len(heldOut)+len(sent) != len(results) {
		t.Fatalf("%d results, %d held out and %d sent, want one per member of %d", len(results), len(heldOut), len(sent), members-len(lost))
	}
	// The send stage's groups are the assignment's: every stage agrees
	// on who is held out.
	for _, m := range ids {
		if !lost[m] && heldOut[m] != assignedOut[m] {
			t.Fatalf("%s recorded held_out %v, but assigned %v", m, heldOut[m], assignedOut[m])
		}
	}
	adapterSaw := func() []string {
		dl.mu.Lock()
		defer dl.mu.Unlock()
		return slices.Clone(dl.members)
	}
	if got := adapterSaw(); len(got) != len(sent) || slices.ContainsFunc(got, func(m string) bool { return heldOut[m] }) {
		t.Fatalf("the channel adapter got %d deliveries (want %d), held-out members among them: %v", len(got), len(sent),
			slices.ContainsFunc(got, func(m string) bool { return heldOut[m] }))
	}

	// A replay of the audience stage answers the same audience request
	// again: the same members are held out, and nothing is sent again
	// (timing and send deduplicate on the offer and delivery IDs).
	h.stop(audience.Group)
	if _, err := Replay(testkit.Context(t), kadm.NewClient(h.client), audience.Group, time.Time{}); err != nil {
		t.Fatal(err)
	}
	h.start(audience.Group, "")
	testkit.Eventually(t, 3*time.Minute, "the replayed audience", func() bool {
		return len(h.records(topics.OffersCandidates)) >= 2*members
	})
	h.caughtUp(audience.Group, filter.Group, channel.Group, timing.Group, render.Group, send.Group)
	assigned := map[string]bool{}
	candidates := decodeAll(t, h.records(topics.OffersCandidates), topics.OfferCodec{})
	for _, o := range candidates {
		if was, ok := assigned[o.OfferID]; ok && was != o.HeldOut {
			t.Fatalf("replay: %s held out %v, first time %v", o.MemberID, o.HeldOut, was)
		}
		assigned[o.OfferID] = o.HeldOut
	}
	if len(candidates) != 2*members || len(assigned) != members {
		t.Fatalf("after the replay: %d candidates for %d offers, want %d for %d", len(candidates), len(assigned), 2*members, members)
	}
	if n, got := len(h.records(topics.DeliveryResults)), len(adapterSaw()); n != len(results) || got != len(sent) {
		t.Fatalf("after the replay: %d results, %d sent by the adapter; want %d and %d", n, got, len(results), len(sent))
	}
	t.Logf("replayed after %v", time.Since(start).Round(time.Millisecond))

	// Opens and clicks arrive as tracking hits: 10 treatment deliveries
	// opened (one twice), 3 clicked.
	treated, control := slices.Sorted(maps.Keys(sent)), slices.Sorted(maps.Keys(heldOut))
	at := h.clock.Now()
	for i, m := range treated[:10] {
		h.behavior(topics.BehaviorEvent{EventID: "open-" + m, MemberID: m, Type: "open", DeliveryID: delivered[m], At: at})
		if i < 3 {
			h.behavior(topics.BehaviorEvent{EventID: "click-" + m, MemberID: m, Type: "click", DeliveryID: delivered[m], At: at})
		}
	}
	h.behavior(topics.BehaviorEvent{EventID: "open-again", MemberID: treated[0], Type: "open", DeliveryID: delivered[treated[0]], At: at})

	// Orders: 40 treatment members and 4 held-out members order within
	// the week after the deliveries (one of the 40 twice); orders before
	// the deliveries or more than 7 days after are no conversions.
	order := func(m, id string, at time.Time) {
		h.cdc("orders", m, map[string]any{"order_id": id, "member_id": m}, topics.OpInsert,
			topics.OrderRow{OrderID: id, MemberID: m, ItemID: "I-ANY", Status: "placed", Total: 3000, OrderedAt: at})
	}
	for _, m := range treated[:40] {
		order(m, "ord-"+m, at.Add(time.Hour))
	}
	order(treated[0], "ord-second", at.Add(48*time.Hour))
	for _, m := range control[:4] {
		order(m, "ord-"+m, at.Add(2*time.Hour))
	}
	order(treated[50], "ord-before", at.Add(-time.Hour))
	order(control[10], "ord-late", at.Add(8*24*time.Hour))
	h.caughtUp(memberstate.Group)
	convs := decodeAll(t, h.records(topics.Conversions), topics.ConversionCodec{})
	if len(convs) != 45 {
		t.Fatalf("%d conversions on %s, want 45 (41 treatment, 4 holdout)", len(convs), topics.Conversions)
	}

	cl := testkit.Client(t, h.addr)
	rep, err := report.Campaign(testkit.Context(t), cl, campaignID, start.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	nT, nH := len(sent), len(heldOut)
	wantT := report.Group{Members: nT, Sends: nT, Opens: 10, Clicks: 3, Conversions: 41, Converted: 40, Rate: 40 / float64(nT)}
	wantH := report.Group{Members: nH, Sends: nH, Conversions: 4, Converted: 4, Rate: 4 / float64(nH)}
	if rep.Treatment != wantT || rep.Holdout != wantH || rep.Mixed != 0 {
		t.Fatalf("report:\ntreatment %+v\nholdout   %+v\nwant\n%+v\n%+v", rep.Treatment, rep.Holdout, wantT, wantH)
	}
	abs := 40/float64(nT) - 4/float64(nH)
	if u := rep.Uplift; u == nil || u.Absolute != abs || u.Relative == nil || *u.Relative != abs/(4/float64(nH)) ||
		!(u.Low < abs && abs < u.High) {
		t.Fatalf("uplift %+v, want %v (relative %v) inside its interval", rep.Uplift, abs, abs/(4/float64(nH)))
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("rtm report --campaign %s:\n%s", campaignID, text.String())
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// cdcBatch writes n change rows of table (key, key columns and row from
// row(i)) at once, as a Change Tracking bridge catching up would: far
// faster than a synchronous produce each.
func (h *harness) cdcBatch(table string, n int, row func(i int) (key string, keyCols map[string]any, row any)) {
	h.t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		key, cols, r := row(i)
		b, _ := json.Marshal(r)
		v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: topics.OpUpdate, Version: h.version.Add(1),
			Key: cols, Row: b, TS: time.Now().UTC()})
		if err != nil {
			h.t.Fatal(err)
		}
		wg.Add(1)
		h.client.Produce(context.Background(), &kgo.Record{Topic: "cdc." + table, Key: []byte(key), Value: v}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		h.t.Fatal(firstErr)
	}
}

// decodeAll decodes every record's value with codec, failing the test on
// a record that does not decode.
func decodeAll[T any, P interface {
	*T
	topics.Message
}](t *testing.T, recs []*kgo.Record, codec topics.JSON[T, P]) []P {
	t.Helper()
	out := make([]P, 0, len(recs))
	for _, r := range recs {
		v, err := codec.DecodeValue(r.Value)
		if err != nil {
			t.Fatalf("%s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		out = append(out, v)
	}
	return out
}

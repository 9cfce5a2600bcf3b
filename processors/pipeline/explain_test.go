package pipeline

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/explain"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// TestExplainNamesTheDecidingRule runs a restock through every stage for
// two favouriters, one of whom a filter table excludes, and asks explain
// about each: the excluded one's offer names the table, its version, the
// row and the reason; the other's goes all the way to a sent result. Then
// events no campaign covers — the item's creation, a 5% price drop and
// X1's shipped order — are explained to each member they concerned as
// "no campaign matched", with the campaign table's version.
func TestExplainNamesTheDecidingRule(t *testing.T) {
	t.Parallel()
	osaka, err := rules.Compile(rules.TableSpec{Name: "osaka-pause", Kind: rules.KindFilter, Sheet: "Filters",
		Columns: []rules.Column{
			{Type: rules.ColCondition, Template: "member.prefecture == $param", Ref: "B5"},
			{Type: rules.ColAction, Template: "exclude", Ref: "C5"},
			{Type: rules.ColAction, Template: "reason", Ref: "D5"},
		},
		Rows: []rules.Row{{Row: 7, Cells: []rules.Value{{V: "大阪府"}, {V: true}, {V: "大阪は今週お休み"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rs := &swappable{}
	rs.p.Store(exampleRules(t).With(osaka))
	h := newHarness(t, rs)
	h.cfg.Render = render.Config{TrackingBase: "http://127.0.0.1:1", Keys: testKeys(t), MailFrom: "shop@example.jp"}
	h.cfg.Deliverer = &recordingDeliverer{}
	for _, s := range append(stagesOne, channel.Group, timing.Group, render.Group, send.Group) {
		h.start(s, "")
	}
	since := time.Now().Add(-time.Minute)
	results := h.collect(topics.DeliveryResults)
	excluded := h.collect(topics.OffersExcluded)
	for id, pref := range map[string]string{"X1": "大阪府", "X2": "東京都"} {
		h.member(topics.MemberRow{MemberID: id, Email: id + "@example.jp", MailOptIn: true, Status: "active",
			Prefecture: pref, Timezone: simulator.NoonZone()})
		h.favorite(id, "I-EXP")
	}
	h.restock("I-EXP", 2)
	testkit.Eventually(t, time.Minute, "one exclusion and one result", func() bool { return excluded.len() == 1 && results.len() == 1 })

	report := func(member string) *explain.Report {
		t.Helper()
		rep, err := explain.Member(testkit.Context(t), h.client, testPartitions, member, since)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Offers) != 1 {
			t.Fatalf("%s: %d offers, want 1: %+v", member, len(rep.Offers), rep.Offers)
		}
		return rep
	}
	table := "osaka-pause@" + osaka.Version()
	x1 := report("X1")
	o := x1.Offers[0]
	if o.Outcome != explain.OutcomeExcluded || o.Stopped == nil || o.Stopped.Stage != filter.Group ||
		o.Stopped.Table != table || o.Stopped.Row != 7 || o.Stopped.Reason != "大阪は今週お休み" {
		t.Errorf("X1's offer: outcome %s, stopped by %+v; want the %s row 7 exclusion", o.Outcome, o.Stopped, table)
	}
	if o.CampaignID != "back-in-stock" || o.Event.ItemID != "I-EXP" {
		t.Errorf("X1's offer is for %s on %+v, want back-in-stock of I-EXP", o.CampaignID, o.Event)
	}
	var text bytes.Buffer
	if err := x1.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"table " + table + " row 7", "reason: 大阪は今週お休み", "excluded by filter"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("explain's text lacks %q:\n%s", want, text.String())
		}
	}

	x2 := report("X2").Offers[0]
	if x2.Outcome != explain.OutcomeSent || x2.Channel != topics.ChannelMail || x2.Result == nil || x2.DeliveryID == "" {
		t.Errorf("X2's offer: %+v, want sent by mail", x2)
	}
	if want := []string{topics.OffersCandidates, topics.OffersFiltered, topics.OffersRouted, topics.OffersReady,
		topics.Deliveries, topics.DeliveryResults}; !slices.Equal(x2.Reached, want) {
		t.Errorf("X2's offer reached %v, want %v", x2.Reached, want)
	}

	if got := report("X1").Unmatched; len(got) != 1 || got[0].Event.Type != "new_item" {
		t.Errorf("X1 before the unmatched events: %+v, want only the item's creation", got)
	}

	// Events the example campaign table has no row for: a 5% price drop
	// (every price-drop row wants 10% or more) and a shipped order.
	unmatched := h.collect(topics.EventsUnmatched)
	h.item(topics.OpUpdate, topics.ItemRow{ItemID: "I-EXP", Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: 4750, Stock: 7})
	h.cdc("orders", "X1", map[string]any{"member_id": "X1", "order_id": "O-X1"}, topics.OpInsert,
		topics.OrderRow{OrderID: "O-X1", MemberID: "X1", ItemID: "I-OTHER", Status: "shipped", OrderedAt: time.Now().UTC()})
	testkit.Eventually(t, time.Minute, "three unmatched events", func() bool { return unmatched.len() == 3 })
	if n := excluded.len() + results.len(); n != 2 {
		t.Errorf("%d exclusions and results after the unmatched events, want still 2", n)
	}
	ct, ok := exampleRules(t).Table("campaigns")
	if !ok {
		t.Fatal("the example rules have no campaigns table")
	}
	campaigns := "campaigns@" + ct.Version()
	for member, want := range map[string][]string{
		"X1": {"new_item", "price_drop", "order_shipped"},
		"X2": {"new_item", "price_drop"},
	} {
		rep := report(member)
		var types []string
		for _, u := range rep.Unmatched {
			types = append(types, u.Event.Type)
			if !slices.Equal(u.Tables, []string{campaigns}) {
				t.Errorf("%s: unmatched %s names tables %v, want [%s]", member, u.Event.Type, u.Tables, campaigns)
			}
		}
		slices.Sort(types)
		slices.Sort(want)
		if !slices.Equal(types, want) {
			t.Errorf("%s: unmatched events %v, want %v", member, types, want)
		}
		var text bytes.Buffer
		if err := rep.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"no campaign matched", "price_drop items/I-EXP", "(favourited I-EXP)", "no row matched in " + campaigns} {
			if !strings.Contains(text.String(), line) {
				t.Errorf("%s: explain's text lacks %q:\n%s", member, line, text.String())
			}
		}
	}
}

package report

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// TestDiff checks the interval against the worked examples of Newcombe
// (1998), "Interval estimation for the difference between independent
// proportions", Statistics in Medicine 17, Table II, method 10, which
// are given to four decimals.
func TestDiff(t *testing.T) {
	cases := []struct {
		x1, n1, x2, n2 int
		d, lo, hi      float64
		rel            float64 // NaN: none (the hold-out converted nobody)
	}{
		{56, 70, 48, 80, 0.2, 0.0524, 0.3339, 0.2 / 0.6},
		{9, 10, 3, 10, 0.6, 0.1705, 0.8090, 2},
		{6, 7, 2, 7, 4.0 / 7, 0.0582, 0.8062, 2},
		{5, 56, 0, 29, 5.0 / 56, -0.0381, 0.1926, math.NaN()},
		{0, 10, 0, 20, 0, -0.1611, 0.2775, math.NaN()},
		{10, 10, 0, 20, 1, 0.6791, 1, math.NaN()},
	}
	for _, c := range cases {
		u := Diff(c.x1, c.n1, c.x2, c.n2)
		if math.Abs(u.Absolute-c.d) > 1e-12 || math.Abs(u.Low-c.lo) > 5e-5 || math.Abs(u.High-c.hi) > 5e-5 {
			t.Errorf("%d/%d - %d/%d: %.4f [%.4f, %.4f], want %.4f [%.4f, %.4f]", c.x1, c.n1, c.x2, c.n2,
				u.Absolute, u.Low, u.High, c.d, c.lo, c.hi)
		}
		switch {
		case math.IsNaN(c.rel) && u.Relative != nil:
			t.Errorf("%d/%d - %d/%d: relative uplift %v over a rate of 0", c.x1, c.n1, c.x2, c.n2, *u.Relative)
		case !math.IsNaN(c.rel) && (u.Relative == nil || math.Abs(*u.Relative-c.rel) > 1e-12):
			t.Errorf("%d/%d - %d/%d: relative uplift %v, want %v", c.x1, c.n1, c.x2, c.n2, u.Relative, c.rel)
		}
	}
}

// TestCompute: groups, sends, opens, clicks and conversions from a small
// set of records, counted by hand.
func TestCompute(t *testing.T) {
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	res := func(member, offer, status string) topics.DeliveryResult {
		return topics.DeliveryResult{DeliveryID: "dl-" + offer, OfferID: offer, MemberID: member, CampaignID: "sale",
			Channel: "MAIL", Status: status, At: at}
	}
	ev := func(typ, offer string) topics.BehaviorEvent {
		return topics.BehaviorEvent{EventID: typ + offer, Type: typ, DeliveryID: "dl-" + offer, At: at}
	}
	conv := func(member, offer, order string) topics.Conversion {
		return topics.Conversion{ConversionID: topics.ConversionID(offer, order), OfferID: offer, MemberID: member,
			CampaignID: "sale", OrderID: order}
	}
	in := Input{
		Results: []topics.DeliveryResult{
			// treatment: A (two offers), B, C, D; E failed (reached nobody)
			res("A", "a1", topics.StatusSent), res("A", "a2", topics.StatusSent), res("B", "b1", topics.StatusSent),
			res("C", "c1", topics.StatusSent), res("D", "d1", topics.StatusSent), res("E", "e1", topics.StatusFailed),
			res("A", "a1", topics.StatusSent), // redelivered
			// holdout: H1, H2
			res("H1", "h1", topics.StatusHeldOut), res("H2", "h2", topics.StatusHeldOut),
			// X is in both groups: left out
			res("X", "x1", topics.StatusSent), res("X", "x2", topics.StatusHeldOut),
			// another campaign
			{DeliveryID: "dl-o", OfferID: "o", MemberID: "B", CampaignID: "other", Channel: "MAIL", Status: topics.StatusHeldOut, At: at},
		},
		Events: []topics.BehaviorEvent{
			ev("open", "a1"), ev("open", "a1"), ev("open", "a2"), ev("click", "a2"), ev("open", "b1"),
			ev("open", "x1"), ev("open", "o"), ev("page_view", "c1"),
		},
		Conversions: []topics.Conversion{
			conv("A", "a1", "ord1"), conv("A", "a2", "ord1"), conv("A", "a1", "ord1"), // one order, two offers, one replayed
			conv("C", "c1", "ord2"),
			conv("H1", "h1", "ord3"),
			conv("X", "x1", "ord4"),
			conv("E", "e1", "ord5"), // a failed delivery is not an exposure
		},
	}
	rep := Compute("sale", in)
	wantT := Group{Members: 4, Sends: 5, Opens: 3, Clicks: 1, Conversions: 3, Converted: 2, Rate: 0.5}
	wantH := Group{Members: 2, Sends: 2, Conversions: 1, Converted: 1, Rate: 0.5}
	if rep.Treatment != wantT || rep.Holdout != wantH || rep.Mixed != 1 {
		t.Fatalf("treatment %+v, holdout %+v, mixed %d;\nwant %+v, %+v, 1", rep.Treatment, rep.Holdout, rep.Mixed, wantT, wantH)
	}
	// 2/4 - 1/2: no difference; Newcombe's interval by hand from the
	// Wilson intervals of 2/4 [0.1500, 0.8500] and 1/2 [0.0945, 0.9055].
	if u := rep.Uplift; u == nil || u.Absolute != 0 || u.Relative == nil || *u.Relative != 0 ||
		math.Abs(u.Low+0.5356) > 5e-5 || math.Abs(u.High-0.5356) > 5e-5 {
		t.Fatalf("uplift %+v, want 0 [-0.5356, 0.5356]", rep.Uplift)
	}
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"treatment        4      5      3       1            3          2           50.00%",
		"uplift      +0.00 points (+0.0% relative", "95% CI      -53.56 to +53.56 points", "1 members had both"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}

	// Without a hold-out there is no uplift, and the text says why.
	rep = Compute("sale", Input{Results: in.Results[:5]})
	b.Reset()
	rep.WriteText(&b)
	if rep.Uplift != nil || !strings.Contains(b.String(), "needs members in both groups") {
		t.Errorf("no hold-out: uplift %+v, text:\n%s", rep.Uplift, b.String())
	}
}

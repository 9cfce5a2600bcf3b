package rules

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func priceDrop(drop, price float64, category string) Event {
	return Event{Type: "price_drop", ItemID: "item-1", Brand: "無印良品", Category: category,
		OldPrice: price / (1 - drop/100), NewPrice: price, DropPct: drop, Stock: 3, At: time.Now()}
}

func TestEvaluateCampaigns(t *testing.T) {
	tb, _ := exampleSet(t).Table("campaigns")
	tests := []struct {
		name     string
		event    Event
		campaign string // "" = no match
		rule     string
		row      int
	}{
		{"big drop", priceDrop(35, 1200, "ファッション"), "price-drop-big", "大幅値下げ", 9},
		{"big drop but cheap", priceDrop(35, 800, "ファッション"), "price-drop", "値下げ", 11},
		{"home category 12%", priceDrop(12, 5000, "インテリア"), "price-drop-home", "家具・キッチン値下げ", 10},
		{"other category 12%", priceDrop(12, 5000, "ファッション"), "", "", 0},
		{"small drop", priceDrop(5, 5000, "キッチン"), "", "", 0},
		{"back in stock", Event{Type: "back_in_stock", Stock: 4}, "back-in-stock", "再入荷", 12},
		{"cart", Event{Type: "cart_abandoned"}, "cart-reminder", "カゴ落ち", 13},
		{"unknown event", Event{Type: "order_shipped"}, "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &Facts{Event: tt.event}
			d, ok, err := tb.Evaluate(f)
			if err != nil {
				t.Fatal(err)
			}
			if tt.campaign == "" {
				if ok {
					t.Fatalf("matched %v, want no match", d.Trace)
				}
				return
			}
			if !ok {
				t.Fatalf("no match, want %s", tt.campaign)
			}
			if d.Campaign.Campaign != tt.campaign || d.Rule != tt.rule || d.Row != tt.row || d.Sheet != "Campaigns" || d.Table != "campaigns" || d.Version != tb.Version() {
				t.Errorf("got %s %+v, want %s rule %s row %d", d.Trace, *d.Campaign, tt.campaign, tt.rule, tt.row)
			}
		})
	}
}

func TestCampaignOutputs(t *testing.T) {
	tb, _ := exampleSet(t).Table("campaigns")
	d, ok, err := tb.Evaluate(&Facts{Event: priceDrop(40, 2000, "")})
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	want := CampaignOutput{Campaign: "price-drop-big", Audience: AudienceFavoritesOfItem, Priority: 90, Template: "price-drop", Timing: TimingNow, ExpiresAfter: 6 * time.Hour}
	if *d.Campaign != want {
		t.Errorf("outputs = %+v, want %+v", *d.Campaign, want)
	}
	d, _, _ = tb.Evaluate(&Facts{Event: Event{Type: "cart_abandoned"}})
	if d.Campaign.ExpiresAfter != 48*time.Hour || d.Campaign.Audience != AudienceMember {
		t.Errorf("cart outputs = %+v", *d.Campaign)
	}
}

func member() Member {
	return Member{MemberID: "m-1", Status: "active", Age: 40, Prefecture: "東京都", MailOptIn: true,
		Reachable: []string{"MAIL"}, OrdersCount: 2}
}

func TestEvaluateFilters(t *testing.T) {
	tb, _ := exampleSet(t).Table("member-filters")
	mod := func(fn func(*Member)) Member { m := member(); fn(&m); return m }
	tests := []struct {
		name     string
		member   Member
		campaign string
		exclude  bool
		rule     string
	}{
		{"active", member(), "price-drop", false, "既定"},
		{"debug", mod(func(m *Member) { m.IsDebug = true }), "price-drop", true, "デバッグ会員"},
		{"withdrawn", mod(func(m *Member) { m.Status = "withdrawn" }), "price-drop", true, "退会・停止会員"},
		{"suspended", mod(func(m *Member) { m.Status = "suspended" }), "price-drop", true, "退会・停止会員"},
		{"opted out", mod(func(m *Member) { m.MailOptIn = false }), "price-drop", true, "配信停止"},
		{"line only", mod(func(m *Member) { m.MailOptIn = false; m.LineOptIn = true }), "price-drop", false, "既定"},
		{"cart, no orders", mod(func(m *Member) { m.OrdersCount = 0 }), "cart-reminder", true, "カゴ落ちは購入者のみ"},
		{"cart, orders", member(), "cart-reminder", false, "既定"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok, err := tb.Evaluate(&Facts{Member: tt.member, Campaign: Campaign{ID: tt.campaign}})
			if err != nil || !ok {
				t.Fatalf("ok=%v err=%v", ok, err)
			}
			if d.Filter.Exclude != tt.exclude || d.Rule != tt.rule {
				t.Errorf("got exclude=%v by %s, want %v by %s", d.Filter.Exclude, d.Rule, tt.exclude, tt.rule)
			}
		})
	}
}

func TestEvaluateChannelAndTiming(t *testing.T) {
	set := exampleSet(t)
	ch, _ := set.Table("channels")
	d, _, err := ch.Evaluate(&Facts{Member: Member{Age: 25}, Campaign: Campaign{ID: "price-drop"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Channel.Channels, ","); got != "LINE,PUSH,INAPP,MAIL" || d.Channel.Strategy != StrategyBest {
		t.Errorf("channels = %s %s", got, d.Channel.Strategy)
	}
	tm, _ := set.Table("timing")
	d, _, err = tm.Evaluate(&Facts{Campaign: Campaign{ID: "price-drop-big", Priority: 90}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Timing.QuietHours.String() != "22:00-08:00" || d.Timing.CapDay != 4 || d.Timing.CapWeek != 12 || d.Timing.CapCampaignDay != 1 || d.Rule != "高優先度" {
		t.Errorf("timing = %+v by %s", *d.Timing, d.Rule)
	}
	if !d.Timing.QuietHours.Contains(time.Date(2026, 1, 1, 23, 30, 0, 0, time.UTC)) || d.Timing.QuietHours.Contains(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Error("quiet hours window wrong")
	}
}

func TestRenderTemplate(t *testing.T) {
	set := exampleSet(t)
	tp, ok := set.Template("price-drop", ChannelLine)
	if !ok {
		t.Fatal("template price-drop for LINE missing")
	}
	f := SampleFacts()
	r, err := tp.Render(f)
	if err != nil {
		t.Fatal(err)
	}
	want := "お気に入りの「無印良品」の商品が 20% 値下げ！\n¥2,480 → ¥1,980"
	if r.Body != want || r.Channel != "LINE" || !strings.Contains(r.URL, "items/item-1001") {
		t.Errorf("rendered = %+v", r)
	}
	tb, _ := set.Table("templates")
	if _, _, err := tb.Evaluate(f); err == nil {
		t.Error("evaluating a template table should fail")
	}
}

func TestCollectPolicy(t *testing.T) {
	spec := filterSpec(t, HitCollect, [][]any{
		{"a", "active", nil, true},
		{"b", nil, 30, true},
		{"c", "withdrawn", nil, true},
		{"d", nil, nil, false},
	})
	tb, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	f := &Facts{Member: Member{Status: "active", Age: 40}}
	ds, err := tb.Decide(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Rule)
	}
	if got := strings.Join(names, ","); got != "a,b,d" {
		t.Errorf("collect fired %s, want a,b,d", got)
	}
	d, ok, _ := tb.Evaluate(f)
	if !ok || d.Rule != "a" {
		t.Errorf("Evaluate = %v", d.Trace)
	}
}

// filterSpec builds a filter table with conditions on status and age and
// an exclude output; rows are {name, status, min age, exclude}.
func filterSpec(t testing.TB, policy HitPolicy, rows [][]any) TableSpec {
	t.Helper()
	spec := TableSpec{Name: "f", Kind: KindFilter, HitPolicy: policy, Sheet: "F",
		Columns: []Column{
			{Type: ColName, Ref: "B5"},
			{Type: ColCondition, Template: "member.status == $param", Ref: "C5"},
			{Type: ColCondition, Template: "member.age >= $param", Ref: "D5"},
			{Type: ColAction, Template: "exclude", Ref: "E5"},
		}}
	for i, r := range rows {
		row := Row{Row: 7 + i}
		for _, c := range r {
			if n, ok := c.(int); ok {
				c = float64(n)
			}
			row.Cells = append(row.Cells, Value{V: c})
		}
		spec.Rows = append(spec.Rows, row)
	}
	return spec
}

func TestEvaluateZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	tb, _ := exampleSet(t).Table("member-filters")
	f := &Facts{Member: member(), Campaign: Campaign{ID: "price-drop"}}
	f.Member.Prefecture = "大阪府"
	if _, _, err := tb.Evaluate(f); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		d, ok, err := tb.Evaluate(f)
		if err != nil || !ok || d.Filter.Exclude {
			t.Fatal("unexpected decision")
		}
	})
	if allocs != 0 {
		t.Errorf("Evaluate allocates %v times per run, want 0", allocs)
	}
	// Overwriting the same Facts in place (how stages use it) stays at zero.
	members := []Member{member(), member()}
	members[1].Status = "withdrawn"
	i := 0
	allocs = testing.AllocsPerRun(200, func() {
		f.Member = members[i%2]
		i++
		if _, _, err := tb.Evaluate(f); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Evaluate with changing facts allocates %v times per run, want 0", allocs)
	}
}

// TestViewsSeeCurrentFacts guards the zero-copy environment: decisions
// must follow the Facts' current content, across goroutines and GCs.
func TestViewsSeeCurrentFacts(t *testing.T) {
	tb, _ := exampleSet(t).Table("member-filters")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &Facts{}
			for i := range 2000 {
				f.Member = member()
				f.Member.MemberID = strings.Repeat("x", i%7+g)
				want := "既定"
				switch i % 3 {
				case 1:
					f.Member.Status = strings.Clone("withdrawn")
					want = "退会・停止会員"
				case 2:
					f.Member.IsDebug = true
					want = "デバッグ会員"
				}
				if i%500 == 0 {
					f = &Facts{Member: f.Member} // a new Facts must rebind
				}
				d, _, err := tb.Evaluate(f)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Rule != want {
					t.Errorf("iteration %d: rule %s, want %s", i, d.Rule, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestFieldViews(t *testing.T) {
	f := SampleFacts()
	for _, fl := range fields {
		got := fl.view(f)
		var want any
		switch fl.fact {
		case "event":
			want = fieldValue(f.Event, fl.name)
		case "member":
			want = fieldValue(f.Member, fl.name)
		case "campaign":
			want = fieldValue(f.Campaign, fl.name)
		}
		if !equalAny(got, want) {
			t.Errorf("view %s = %#v, want %#v", fl.name, got, want)
		}
	}
}

package simulate

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// edited is set with table name changed by edit and compiled again (so
// with the version of its new content), as a candidate workbook brings it.
func edited(tb testing.TB, set *rules.Set, name string, edit func(*rules.TableSpec)) *rules.Set {
	tb.Helper()
	t, ok := set.Table(name)
	if !ok {
		tb.Fatalf("no table %s", name)
	}
	spec := t.Spec()
	spec.Rows = slices.Clone(spec.Rows)
	for i := range spec.Rows {
		spec.Rows[i].Cells = slices.Clone(spec.Rows[i].Cells)
	}
	edit(&spec)
	spec.Meta = rules.Meta{}
	c, err := rules.Compile(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return set.With(c)
}

// setCell sets the cell of the rule named rule in the column labelled
// label.
func setCell(tb testing.TB, s *rules.TableSpec, rule, label string, v any) {
	tb.Helper()
	col := slices.IndexFunc(s.Columns, func(c rules.Column) bool { return c.Label == label })
	name := slices.IndexFunc(s.Columns, func(c rules.Column) bool { return c.Type == rules.ColName })
	for i, r := range s.Rows {
		if col >= 0 && name >= 0 && r.Cells[name].V == rule {
			s.Rows[i].Cells[col] = rules.Value{V: v}
			return
		}
	}
	tb.Fatalf("table %s has no rule %q with a column %q", s.Name, rule, label)
}

// variedWorld is generated member state in which every stage's rules
// matter: debug, withdrawn, suspended and deleted members, opt-ins and
// push tokens in several combinations, members under 30 (another channel
// rule), engagement (the `best` strategy), most active hours (best_hour),
// five time zones (quiet hours), no orders (cart reminders are filtered),
// and for every seventh member a ledger with sends before the window
// (caps) and one from the window (forgotten).
func variedWorld(tb testing.TB, partitions int32, members, items int, from time.Time) *State {
	tb.Helper()
	st := NewState(partitions)
	zones := []string{"Asia/Tokyo", "Etc/GMT-9", "America/Los_Angeles", "Europe/Paris", ""}
	prefs := []string{"東京都", "大阪府", "北海道", "福岡県"}
	for i := range members {
		id := fmt.Sprintf("M%07d", i)
		p := &member.Profile{MemberID: id, Exists: i%97 != 5, Status: "active", Email: id + "@example.jp", MailOptIn: i%5 != 0,
			LineUserID: "U" + id, LineOptIn: i%2 == 0, PushOptIn: i%3 == 0, IsDebug: i%10 == 3,
			Timezone: zones[i%len(zones)], Prefecture: prefs[i%len(prefs)], Birthday: fmt.Sprintf("%d-04-01", 1960+i%50),
			OrdersCount: i % 4, Favorites: map[string]time.Time{}}
		switch {
		case i%41 == 7:
			p.Status = "withdrawn"
		case i%43 == 8:
			p.Status = "suspended"
		}
		if i%3 == 0 {
			p.PushToken = "T" + id
		}
		if i%3 != 1 {
			p.Activity[(i*5)%24] = 10
		}
		if i%2 == 0 {
			p.Engagement = map[string]member.Engagement{
				topics.ChannelLine: {Sent: 10, Opened: float64(i % 7), Clicked: float64(i % 3), At: from},
				topics.ChannelMail: {Sent: 10, Opened: float64(i % 4), At: from},
			}
		}
		for k := range 4 {
			p.Favorites[fmt.Sprintf("I%05d", (i*7+k*13)%items)] = from.Add(-time.Hour)
		}
		b, err := member.Codec{}.Encode(p)
		if err != nil {
			tb.Fatal(err)
		}
		part := topics.Partition([]byte(id), partitions)
		st.Put(part, id, b)
		if i%7 == 0 {
			l := &timing.Ledger{Slots: []timing.Slot{
				{OfferID: "of-a-" + id, CampaignID: "price-drop", At: from.Add(-2 * time.Hour)},
				{OfferID: "of-b-" + id, CampaignID: "back-in-stock", At: from.Add(-30 * time.Hour)},
				{OfferID: "of-c-" + id, CampaignID: "price-drop", At: from.Add(time.Hour)},
			}, Done: []string{"of-a-" + id, "of-b-" + id, "of-c-" + id}}
			b, err := timing.Codec{}.Encode(l)
			if err != nil {
				tb.Fatal(err)
			}
			st.PutLedger(part, id, b)
		}
	}
	if err := st.Index(); err != nil {
		tb.Fatal(err)
	}
	return st
}

type record struct {
	key   []byte
	p     int32
	value []byte
}

// variedEvents are n event records over 36 hours from `from`: price drops
// of several sizes, prices and categories (different campaign rows),
// abandoned carts (some by members the table does not have), items back
// in stock, every fourth record a copy of an earlier price drop (offers
// timing has decided already), and one record that does not decode.
func variedEvents(tb testing.TB, partitions int32, n, members, items int, from time.Time) []record {
	tb.Helper()
	var out []record
	add := func(key string, e *topics.Event) {
		v, err := topics.EventCodec{}.Encode(e)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, record{[]byte(key), topics.Partition([]byte(key), partitions), v})
	}
	drops := []struct{ pct, price float64 }{{10, 800}, {20, 5000}, {35, 2000}, {60, 500}, {40, 3000}}
	cats := []string{"キッチン", "ファッション", "インテリア"}
	for k := range n {
		at := from.Add(time.Duration(k) * 36 * time.Hour / time.Duration(n))
		item := fmt.Sprintf("I%05d", (k*7)%items)
		switch k % 4 {
		case 0:
			d := drops[(k/4)%len(drops)]
			add(item, &topics.Event{EventID: fmt.Sprintf("items/%s/%d/price_drop", item, k), Type: "price_drop", Source: topics.CDCItems,
				ItemID: item, Brand: "b", Category: cats[k%len(cats)], OldPrice: d.price * 2, NewPrice: d.price, DropPct: d.pct, Stock: 3, At: at})
		case 1:
			m := fmt.Sprintf("M%07d", (k*13)%(members+members/10))
			add(m, &topics.Event{EventID: fmt.Sprintf("cart/%s/%d", m, k), Type: "cart_abandoned", Source: topics.CDCCartItems,
				MemberID: m, ItemID: item, Items: []string{item}, At: at})
		case 2:
			add(item, &topics.Event{EventID: fmt.Sprintf("items/%s/%d/back_in_stock", item, k), Type: "back_in_stock", Source: topics.CDCItems,
				ItemID: item, Brand: "b", Category: cats[k%len(cats)], Stock: 2, At: at})
		case 3:
			out = append(out, out[len(out)-3])
		}
	}
	return append(out, record{[]byte("x"), 0, []byte(`{"schema_version":1`)})
}

// TestSharedDecisionsAreThePlainOnes: deciding once for both rule sets
// what a stage with the same tables decides alike gives the report that
// deciding every offer under each set on its own gives, for candidates
// changing each kind of table, all of them, none, and removing one; and
// the stages the sets share are exactly those whose tables are the same.
func TestSharedDecisionsAreThePlainOnes(t *testing.T) {
	const partitions, members, items = 8, 600, 60
	from := t0.Add(-time.Hour)
	st := variedWorld(t, partitions, members, items, from)
	recs := variedEvents(t, partitions, 480, members, items, from)
	before := exampleSet(t)
	campaigns := func(s *rules.Set) *rules.Set {
		return edited(t, s, "campaigns", func(s *rules.TableSpec) {
			setCell(t, s, "大幅値下げ", "値下げ率(%)以上", 50.0) // another campaign for some drops
			setCell(t, s, "カゴ落ち", "タイミング", "now")     // the same campaign, sent otherwise
		})
	}
	filters := func(s *rules.Set) *rules.Set {
		return edited(t, s, "member-filters", func(s *rules.TableSpec) { setCell(t, s, "デバッグ会員", "除外", false) })
	}
	channels := func(s *rules.Set) *rules.Set {
		return edited(t, s, "channels", func(s *rules.TableSpec) {
			setCell(t, s, "既定", "戦略", "fixed")
			setCell(t, s, "カゴ落ちはメール", "チャネル順", "LINE,MAIL")
		})
	}
	caps := func(s *rules.Set) *rules.Set {
		return edited(t, s, "timing", func(s *rules.TableSpec) { setCell(t, s, "既定", "1日上限", 1.0) })
	}
	templates := func(s *rules.Set) *rules.Set { // no LINE variant of price-drop
		return edited(t, s, "templates", func(s *rules.TableSpec) {
			s.Rows = slices.DeleteFunc(s.Rows, func(r rules.Row) bool { return r.Cells[0].V == "price-drop" && r.Cells[1].V == "LINE" })
		})
	}
	all := shared{campaign: true, filter: true, channel: true, timing: true}
	for _, tc := range []struct {
		name    string
		after   *rules.Set
		shared  shared
		changed bool
	}{
		{"no candidate", before, all, false},
		{"the tables in force again", edited(t, before, "timing", func(*rules.TableSpec) {}), all, false},
		{"campaign table", campaigns(before), shared{filter: true, channel: true, timing: true}, true},
		{"filter table", filters(before), shared{campaign: true, channel: true, timing: true}, true},
		{"filter table removed", before.Without("member-filters"), shared{campaign: true, channel: true, timing: true}, true},
		{"channel table", channels(before), shared{campaign: true, filter: true, timing: true}, true},
		{"timing table", caps(before), shared{campaign: true, filter: true, channel: true}, true},
		{"template table", templates(before), shared{campaign: true, filter: true, timing: true}, true},
		{"every kind", templates(caps(channels(filters(campaigns(before))))), shared{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func(share bool) (*engine, []byte) {
				e := newEngine(before, tc.after, st, from, 3, -1, share)
				for _, r := range recs {
					e.Event(r.key, r.p, r.value)
				}
				b, err := json.MarshalIndent(e.close().report(), "", " ")
				if err != nil {
					t.Fatal(err)
				}
				return e, b
			}
			pe, plain := run(false)
			se, shared := run(true)
			if se.shared != tc.shared {
				t.Errorf("shared stages %+v, want %+v", se.shared, tc.shared)
			}
			// The changed campaign row fires some events otherwise: the
			// others are still decided side by side.
			if pe.paired != 0 || se.paired == 0 || (se.paired == se.fired) == (tc.name == "campaign table" || tc.name == "every kind") {
				t.Errorf("%d of %d events fired for decided side by side (plain: %d)", se.paired, se.fired, pe.paired)
			}
			if string(plain) != string(shared) || pe.events != se.events || pe.skipped != se.skipped || pe.deadLtrs != se.deadLtrs {
				t.Fatalf("shared decisions differ from the plain ones: events %d/%d, skipped %d/%d, failed %v/%v\nplain:\n%s\nshared:\n%s",
					pe.events, se.events, pe.skipped, se.skipped, pe.deadLtrs, se.deadLtrs, plain, shared)
			}
			var cs []*Campaign
			if err := json.Unmarshal(plain, &cs); err != nil {
				t.Fatal(err)
			}
			changed, capped, duplicates := false, false, false
			for _, c := range cs {
				changed = changed || c.Changed()
				capped = capped || len(c.Caps) > 0
				duplicates = duplicates || c.Duplicates != Count{}
			}
			if changed != tc.changed || !capped || !duplicates || pe.skipped != 1 {
				t.Errorf("the run shows a change %v (want %v), caps hit %v, duplicates %v, %d skipped: the data does not test what it should",
					changed, tc.changed, capped, duplicates, pe.skipped)
			}
		})
	}
}

// TestCloneLedgerSharesNothing: a ledger a set takes for its own is a
// copy that what timing.Schedule records under one set does not change
// under the other, whatever fields timing.Ledger has.
func TestCloneLedgerSharesNothing(t *testing.T) {
	// Room to append in place: a copy sharing the arrays would see it.
	l := &timing.Ledger{Slots: append(make([]timing.Slot, 0, 8), timing.Slot{OfferID: "of-0", CampaignID: "c", At: t0}),
		Done: append(make([]string, 0, 8), "of-0")}
	ls := &[2]*timing.Ledger{l, l}
	mine := own(ls, After)
	if ls[Before] != l || mine == l || ls[After] != mine || own(ls, After) != mine {
		t.Fatalf("own gave %p of %p (before %p)", mine, l, ls[Before])
	}
	set := exampleSet(t)
	o := &topics.Offer{OfferID: "of-1", CampaignID: "price-drop", Timing: "now"}
	timing.Schedule(mine, set, o, t0)
	if len(l.Slots) != 1 || len(l.Done) != 1 || len(mine.Slots) != 2 || len(mine.Done) != 2 || mine.Slots[1].OfferID != "of-1" {
		t.Errorf("after scheduling under one set: %+v and %+v", l, mine)
	}
	// cloneLedger copies these slices: a field added to timing.Ledger
	// must be looked at there.
	var fields []string
	for f := range reflect.TypeFor[timing.Ledger]().Fields() {
		fields = append(fields, f.Name)
	}
	if !slices.Equal(fields, []string{"Slots", "Held", "Done"}) {
		t.Errorf("timing.Ledger has fields %v: does cloneLedger copy them?", fields)
	}
}

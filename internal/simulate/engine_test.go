package simulate

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

func exampleSet(tb testing.TB) *rules.Set {
	tb.Helper()
	set, err := rules.LoadSet("../../rules/examples/rtm-rules.xlsx")
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// world is generated member state: members M0000000… in partitions
// partitions, each favouriting perMember of items items, every tenth (i%10 == 3) a
// debug user, in a zone where it is noon at t0 (so quiet hours never
// hold an offer).
func world(tb testing.TB, partitions int32, members, items, perMember int) *State {
	tb.Helper()
	st := NewState(partitions)
	for i := range members {
		id := fmt.Sprintf("M%07d", i)
		p := &member.Profile{MemberID: id, Exists: true, Status: "active", Email: id + "@example.jp", MailOptIn: true,
			LineUserID: "U" + id, LineOptIn: i%2 == 0, IsDebug: i%10 == 3, Timezone: "Etc/GMT-9", Prefecture: "東京都",
			Favorites: map[string]time.Time{}}
		for k := range perMember {
			p.Favorites[fmt.Sprintf("I%05d", (i*7+k*13)%items)] = t0.Add(-time.Hour)
		}
		b, err := member.Codec{}.Encode(p)
		if err != nil {
			tb.Fatal(err)
		}
		st.Put(topics.Partition([]byte(id), partitions), id, b)
	}
	if err := st.Index(); err != nil {
		tb.Fatal(err)
	}
	return st
}

// priceDrop is a price_drop event record of item at `at`.
func priceDrop(tb testing.TB, item string, n int, at time.Time) []byte {
	tb.Helper()
	v, err := topics.EventCodec{}.Encode(&topics.Event{EventID: fmt.Sprintf("items/%s/%d/price_drop", item, n), Type: "price_drop",
		Source: topics.CDCItems, ItemID: item, Brand: "b", Category: "キッチン", OldPrice: 5000, NewPrice: 3000, DropPct: 40, Stock: 3, At: at})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// TestEngineDecidesLikeTheStages runs generated events through the engine
// with the example rules in force and, as the candidate, the same rules
// without the filter table: exactly the debug users who favourite the item
// gain the message, whatever the number of workers; a second drop of the
// same item on the same day is over the campaign's daily cap for everyone
// it reaches, under both sets; a record the campaign stage would
// dead-letter is skipped.
func TestEngineDecidesLikeTheStages(t *testing.T) {
	const partitions = 8
	st := world(t, partitions, 400, 50, 3)
	before := exampleSet(t)
	after := before.Without("member-filters")
	var favouriters, debug []string
	for p := range int32(partitions) {
		for _, m := range st.lookup(p, member.FavoritesIndex, "I00007") {
			favouriters = append(favouriters, m)
			var i int
			fmt.Sscanf(m, "M%d", &i)
			if i%10 == 3 {
				debug = append(debug, m)
			}
		}
	}
	slices.Sort(debug)
	if len(favouriters) == 0 || len(debug) == 0 {
		t.Fatalf("generated %d favouriters of I00007, %d debug: the test needs both", len(favouriters), len(debug))
	}
	for _, tc := range []struct {
		workers int
		share   bool
	}{{1, true}, {3, true}, {1, false}, {3, false}} {
		t.Run(fmt.Sprintf("%d workers, share %v", tc.workers, tc.share), func(t *testing.T) {
			e := newEngine(before, after, st, t0.Add(-time.Hour), tc.workers, -1, tc.share)
			key := []byte("I00007")
			e.Event(key, topics.Partition(key, partitions), priceDrop(t, "I00007", 1, t0))
			e.Event(key, topics.Partition(key, partitions), priceDrop(t, "I00007", 2, t0.Add(time.Minute)))
			e.Event(key, (topics.Partition(key, partitions)+1)%partitions, priceDrop(t, "I00007", 3, t0)) // misplaced
			e.Event([]byte("x"), 0, []byte(`{"schema_version":1`))                                        // malformed
			cs := e.close().report()
			if e.events != 2 || e.skipped != 2 || len(cs) != 1 {
				t.Fatalf("events %d, skipped %d, campaigns %d; want 2, 2, 1", e.events, e.skipped, len(cs))
			}
			c := cs[0]
			var gained []string
			for _, s := range c.GainedBy {
				gained = append(gained, s.MemberID)
				if s.Why.Rule != "デバッグ会員" || s.EventID != "items/I00007/1/price_drop" {
					t.Errorf("%s gained by %+v on %s, want the debug rule on the first drop", s.MemberID, s.Why, s.EventID)
				}
			}
			if !slices.Equal(gained, debug) || c.Lost != 0 {
				t.Errorf("gained %v, lost %d; want exactly the debug favouriters %v", gained, c.Lost, debug)
			}
			n := len(favouriters)
			if c.Offers != (Count{2 * n, 2 * n}) || c.Reach != (Count{n - len(debug), n}) {
				t.Errorf("offers %v, reach %v; want %d offers and reach %d → %d", c.Offers, c.Reach, 2*n, n-len(debug), n)
			}
			if c.Caps[timing.ReasonCapCampaignDay] != (Count{n - len(debug), n}) {
				t.Errorf("caps %v: the second drop is over cap_campaign_day for every member the first reached", c.Caps)
			}
		})
	}
}

// TestLedgerKeepsOnlySendsBeforeTheWindow: a ledger as it is now counts its
// slots from before the window against the caps; the window's own slots
// and decided offers are forgotten, so the window is decided again.
func TestLedgerKeepsOnlySendsBeforeTheWindow(t *testing.T) {
	st := NewState(1)
	from := t0.Add(-time.Hour)
	l := timing.Ledger{Done: []string{"of-old", "of-new"}, Slots: []timing.Slot{
		{OfferID: "of-old", CampaignID: "c", At: from.Add(-time.Minute)},
		{OfferID: "of-new", CampaignID: "c", At: from.Add(time.Minute)},
	}}
	b, err := timing.Codec{}.Encode(&l)
	if err != nil {
		t.Fatal(err)
	}
	st.PutLedger(0, "M1", b)
	st.PutLedger(0, "M2", []byte("not json"))
	got := st.ledger(0, "M1", from)
	if len(got.Done) != 0 || len(got.Held) != 0 || len(got.Slots) != 1 || got.Slots[0].OfferID != "of-old" {
		t.Errorf("ledger at the window's start %+v, want only the slot of of-old", got)
	}
	if got := st.ledger(0, "M2", from); len(got.Slots)+len(got.Done) != 0 {
		t.Errorf("an undecodable ledger gave %+v, want an empty one", got)
	}
}

// BenchmarkSimulate measures the engine on generated traffic: 20,000
// members in 16 partitions favouriting 5 of 2,000 items each (about 50
// favouriters per item), events alternating between price drops (an
// item-wide audience) and abandoned carts (one member), each decided
// under the example rules and under the example rules without the filter
// table. Reading from Kafka is not included; the README has a run of `rtm
// simulate` against the embedded broker for that.
func BenchmarkSimulate(b *testing.B) {
	const partitions, members, items = 16, 20000, 2000
	st := world(b, partitions, members, items, 5)
	before := exampleSet(b)
	after := before.Without("member-filters")
	type rec struct {
		key   []byte
		p     int32
		value []byte
	}
	// Every event is new (its own ID and time), as in a real window:
	// replayed IDs would be cheap duplicates for timing.
	recs := make([]rec, 0, b.N)
	for i := range b.N {
		at := t0.Add(time.Duration(i) * time.Second)
		if i%2 == 0 {
			item := fmt.Sprintf("I%05d", i%items)
			recs = append(recs, rec{[]byte(item), topics.Partition([]byte(item), partitions), priceDrop(b, item, i, at)})
			continue
		}
		m := fmt.Sprintf("M%07d", (i*31)%members)
		v, err := topics.EventCodec{}.Encode(&topics.Event{EventID: fmt.Sprintf("cart/%s/%d", m, i), Type: "cart_abandoned",
			Source: topics.CDCCartItems, MemberID: m, ItemID: "I00001", Items: []string{"I00001"}, At: at})
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, rec{[]byte(m), topics.Partition([]byte(m), partitions), v})
	}
	b.ReportAllocs()
	b.ResetTimer()
	e := newEngine(before, after, st, t0.Add(-time.Hour), 0, DefaultSamples, true)
	for _, r := range recs {
		e.Event(r.key, r.p, r.value)
	}
	cs := e.close().report()
	b.StopTimer()
	offers := 0
	for _, c := range cs {
		offers += c.Offers.Before + c.Offers.After
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(offers)/float64(b.N), "offers/event")
}

package detect

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

func cdc(table, op string, version int64, key map[string]any, row any) *topics.CDCRecord {
	r := &topics.CDCRecord{Table: table, Op: op, Version: version, Key: key, TS: time.Unix(1000, 0).UTC()}
	if row != nil {
		r.Row, _ = json.Marshal(row)
	}
	return r
}

func itemRec(op string, v int64, price float64, stock int) *topics.CDCRecord {
	return cdc("items", op, v, map[string]any{"item_id": "I1"}, topics.ItemRow{ItemID: "I1", Brand: "B", Price: price, Stock: stock})
}

func TestApplyItem(t *testing.T) {
	cases := []struct {
		name  string
		steps []*topics.CDCRecord
		want  []string // event types of the last step
	}{
		{"new item", []*topics.CDCRecord{itemRec("i", 1, 100, 1)}, []string{NewItem}},
		{"price drop", []*topics.CDCRecord{itemRec("i", 1, 100, 1), itemRec("u", 2, 80, 1)}, []string{PriceDrop}},
		{"price rise", []*topics.CDCRecord{itemRec("i", 1, 100, 1), itemRec("u", 2, 120, 1)}, nil},
		{"back in stock", []*topics.CDCRecord{itemRec("i", 1, 100, 0), itemRec("u", 2, 100, 5)}, []string{BackInStock}},
		{"drop and restock", []*topics.CDCRecord{itemRec("i", 1, 100, 0), itemRec("u", 2, 50, 5)}, []string{PriceDrop, BackInStock}},
		{"stale version ignored", []*topics.CDCRecord{itemRec("i", 1, 100, 1), itemRec("u", 3, 90, 1), itemRec("u", 2, 50, 1)}, nil},
		{"duplicate ignored", []*topics.CDCRecord{itemRec("i", 1, 100, 1), itemRec("u", 2, 90, 1), itemRec("u", 2, 90, 1)}, nil},
		{"re-created after delete", []*topics.CDCRecord{itemRec("i", 1, 100, 1), itemRec("d", 2, 0, 0), itemRec("i", 3, 90, 1)}, []string{NewItem}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s ItemState
			var got []topics.Event
			for _, r := range tc.steps {
				if r.Op == "d" {
					r.Row = nil
				}
				var err error
				if got, _, err = ApplyItem(&s, r); err != nil {
					t.Fatal(err)
				}
			}
			var types []string
			for _, e := range got {
				types = append(types, e.Type)
			}
			if len(types) != len(tc.want) {
				t.Fatalf("events %v, want %v", types, tc.want)
			}
			for i := range types {
				if types[i] != tc.want[i] {
					t.Fatalf("events %v, want %v", types, tc.want)
				}
			}
		})
	}
}

func TestPriceDropEvent(t *testing.T) {
	var s ItemState
	ApplyItem(&s, itemRec("i", 1, 3980, 1))
	ev, _, _ := ApplyItem(&s, itemRec("u", 7, 2980, 1))
	e := ev[0]
	if e.OldPrice != 3980 || e.NewPrice != 2980 || e.DropPct != 25.1 || e.EventID != "items/I1/7/price_drop" || e.ItemID != "I1" {
		t.Fatalf("event %+v", e)
	}
}

func cart(op string, v int64, item string, added time.Time) *topics.CDCRecord {
	var row any
	if op != "d" {
		row = topics.CartItemRow{MemberID: "M1", ItemID: item, Quantity: 1, AddedAt: added}
	}
	return cdc("cart_items", op, v, map[string]any{"member_id": "M1", "item_id": item}, row)
}

func order(v int64, id, status string, at time.Time) *topics.CDCRecord {
	return cdc("orders", "u", v, map[string]any{"order_id": id}, topics.OrderRow{OrderID: id, MemberID: "M1", ItemID: "I1", Status: status, OrderedAt: at})
}

func TestCartAbandonment(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	w := time.Hour
	type step struct {
		rec     *topics.CDCRecord
		release time.Time // when set, release at this time instead of applying rec
	}
	cases := []struct {
		name      string
		steps     []step
		wantEvent bool
		wantItems []string
	}{
		{"abandoned", []step{{rec: cart("i", 1, "I1", t0)}, {release: t0.Add(w)}}, true, []string{"I1"}},
		{"not yet due", []step{{rec: cart("i", 1, "I1", t0)}, {release: t0.Add(w - time.Second)}}, false, nil},
		{"ordered in time", []step{{rec: cart("i", 1, "I1", t0)}, {rec: order(2, "O1", "placed", t0.Add(time.Minute))}, {release: t0.Add(w)}}, false, nil},
		{"emptied", []step{{rec: cart("i", 1, "I1", t0)}, {rec: cart("d", 2, "I1", time.Time{})}, {release: t0.Add(w)}}, false, nil},
		{"newest addition rearms", []step{{rec: cart("i", 1, "I1", t0)}, {rec: cart("i", 2, "I2", t0.Add(30*time.Minute))}, {release: t0.Add(w)}}, false, nil},
		{"old order's update does not disarm", []step{{rec: order(1, "O0", "placed", t0.Add(-time.Hour))}, {rec: cart("i", 2, "I1", t0)},
			{rec: order(3, "O0", "shipped", t0.Add(-time.Hour))}, {release: t0.Add(w)}}, true, []string{"I1"}},
		{"two items", []step{{rec: cart("i", 1, "I2", t0)}, {rec: cart("i", 2, "I1", t0)}, {release: t0.Add(w)}}, true, []string{"I1", "I2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &MemberState{}
			var ev *topics.Event
			for _, s := range tc.steps {
				switch {
				case !s.release.IsZero():
					ev, _ = Release(m, "M1", s.release)
				case s.rec.Table == "orders":
					if _, _, err := ApplyOrder(m, s.rec, w); err != nil {
						t.Fatal(err)
					}
				default:
					if _, err := ApplyCart(m, s.rec, w); err != nil {
						t.Fatal(err)
					}
				}
			}
			if (ev != nil) != tc.wantEvent {
				t.Fatalf("event %+v, want event %v", ev, tc.wantEvent)
			}
			if ev != nil {
				if len(ev.Items) != len(tc.wantItems) || ev.Items[0] != tc.wantItems[0] || ev.Type != CartAbandoned || ev.MemberID != "M1" {
					t.Fatalf("event %+v", ev)
				}
				// Released once: a second tick finds nothing.
				if again, _ := Release(m, "M1", tc.steps[len(tc.steps)-1].release.Add(time.Hour)); again != nil {
					t.Fatalf("released twice: %+v", again)
				}
			}
		})
	}
}

func TestOrderShippedOnce(t *testing.T) {
	m := &MemberState{}
	at := time.Unix(0, 0)
	var n int
	for v, st := range []string{"placed", "shipped", "shipped", "delivered"} {
		ev, _, err := ApplyOrder(m, order(int64(v+1), "O1", st, at), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		n += len(ev)
	}
	if n != 1 {
		t.Fatalf("%d order_shipped events, want 1", n)
	}
}

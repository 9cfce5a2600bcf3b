package member

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

func rec(table, op string, v int64, key map[string]any, row any) *topics.CDCRecord {
	r := &topics.CDCRecord{Table: table, Op: op, Version: v, Key: key}
	if row != nil {
		r.Row, _ = json.Marshal(row)
	}
	return r
}

func memberRec(op string, v int64, status string) *topics.CDCRecord {
	var row any
	if op != topics.OpDelete {
		row = topics.MemberRow{MemberID: "M1", Email: "a@example.jp", MailOptIn: true, Status: status, Timezone: "Asia/Tokyo"}
	}
	return rec("members", op, v, map[string]any{"member_id": "M1"}, row)
}

func favRec(op string, v int64, item string) *topics.CDCRecord {
	var row any
	if op != topics.OpDelete {
		row = topics.FavoriteRow{MemberID: "M1", ItemID: item}
	}
	return rec("favorites", op, v, map[string]any{"member_id": "M1", "item_id": item}, row)
}

// applied is member M1's profile after the change rows rs.
func applied(t *testing.T, rs ...*topics.CDCRecord) *Profile {
	t.Helper()
	p := &Profile{MemberID: "M1"}
	for _, r := range rs {
		if _, err := p.ApplyCDC(r); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func index(t *testing.T, p *Profile) []string {
	t.Helper()
	b, err := Codec{}.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := IndexFavorites(p.MemberID, b)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

func TestApplyCDCAndFavoritesIndex(t *testing.T) {
	cases := []struct {
		name   string
		steps  []*topics.CDCRecord
		wantIx []string
		wantOK bool // targetable
	}{
		{"member with favourites", []*topics.CDCRecord{memberRec("i", 1, "active"), favRec("i", 2, "I1"), favRec("i", 3, "I2")}, []string{"I1", "I2"}, true},
		{"favourite removed", []*topics.CDCRecord{memberRec("i", 1, "active"), favRec("i", 2, "I1"), favRec("d", 3, "I1")}, []string{}, true},
		{"late stale insert after delete ignored", []*topics.CDCRecord{memberRec("i", 1, "active"), favRec("d", 5, "I1"), favRec("i", 4, "I1")}, []string{}, true},
		{"withdrawn member not indexed", []*topics.CDCRecord{memberRec("i", 1, "active"), favRec("i", 2, "I1"), memberRec("u", 3, "withdrawn")}, []string{}, false},
		{"deleted member not indexed", []*topics.CDCRecord{memberRec("i", 1, "active"), favRec("i", 2, "I1"), memberRec("d", 3, "")}, []string{}, false},
		{"favourites before member row", []*topics.CDCRecord{favRec("i", 1, "I1")}, []string{}, false},
		{"out-of-order member update ignored", []*topics.CDCRecord{memberRec("i", 1, "active"), memberRec("u", 3, "withdrawn"), memberRec("u", 2, "active")}, []string{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := applied(t, tc.steps...)
			if got := index(t, p); !slices.Equal(got, tc.wantIx) && !(len(got) == 0 && len(tc.wantIx) == 0) {
				t.Errorf("index %v, want %v", got, tc.wantIx)
			}
			if p.Targetable() != tc.wantOK {
				t.Errorf("targetable %v, want %v", p.Targetable(), tc.wantOK)
			}
		})
	}
}

func TestOrdersCountedOnce(t *testing.T) {
	p := &Profile{MemberID: "M1"}
	o := func(v int64, status string) *topics.CDCRecord {
		return rec("orders", "u", v, map[string]any{"order_id": "O1"}, topics.OrderRow{OrderID: "O1", MemberID: "M1", Status: status, OrderedAt: time.Unix(100, 0)})
	}
	for _, r := range []*topics.CDCRecord{o(1, "placed"), o(1, "placed"), o(2, "shipped")} {
		if _, err := p.ApplyCDC(r); err != nil {
			t.Fatal(err)
		}
	}
	if p.OrdersCount != 1 || len(p.Orders) != 1 || p.Orders[0].Status != "shipped" {
		t.Fatalf("orders %+v, count %d", p.Orders, p.OrdersCount)
	}
}

func TestBehaviorIsIdempotentAndLocal(t *testing.T) {
	p := &Profile{MemberID: "M1", Timezone: "Asia/Tokyo"}
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC) // 21:00 in Tokyo
	click := &topics.BehaviorEvent{EventID: "e1", MemberID: "M1", Type: "click", At: at, Attrs: map[string]string{"channel": "LINE"}}
	if !p.ApplyBehavior(click) || p.ApplyBehavior(click) {
		t.Fatal("a redelivered event must apply once")
	}
	if p.Activity[21] != 1 {
		t.Fatalf("activity %v: want one at 21h local", p.Activity)
	}
	if h, ok := p.BestHour(); !ok || h != 21 {
		t.Fatalf("best hour %d %v", h, ok)
	}
	if g := p.Engagement["LINE"]; g.Clicked != 1 {
		t.Fatalf("engagement %+v", g)
	}
	p.ApplyBehavior(&topics.BehaviorEvent{EventID: "e2", MemberID: "M1", Type: "unsubscribe", At: at, Attrs: map[string]string{"channel": "MAIL"}})
	p.MailOptIn, p.Email, p.Exists, p.Status = true, "a@x", true, "active"
	p.ApplyBehavior(&topics.BehaviorEvent{EventID: "e3", MemberID: "M1", Type: "unsubscribe", At: at, Attrs: map[string]string{"channel": "MAIL"}})
	if p.MailOptIn || slices.Contains(p.Reachable(), "MAIL") {
		t.Fatal("unsubscribe from MAIL must opt out")
	}
}

func TestEngagementDecays(t *testing.T) {
	p := &Profile{MemberID: "M1"}
	at := time.Unix(0, 0)
	p.ApplyResult(&topics.DeliveryResult{DeliveryID: "d1", MemberID: "M1", Channel: "MAIL", Status: "sent", At: at})
	p.ApplyResult(&topics.DeliveryResult{DeliveryID: "d1", MemberID: "M1", Channel: "MAIL", Status: "sent", At: at})
	g := p.EngagementAt("MAIL", at.Add(engagementHalfLife))
	if math.Abs(g.Sent-0.5) > 1e-9 {
		t.Fatalf("one send after a half-life counts %v, want 0.5", g.Sent)
	}
	if len(p.RecentSends) != 1 {
		t.Fatalf("recent sends %+v", p.RecentSends)
	}
	f := p.Facts(at.Add(time.Hour))
	if f.SentToday != 1 || f.SentThisWeek != 1 {
		t.Fatalf("facts %+v", f)
	}
}

func TestUnsubscribeHoldsUntilTheShopRecordsIt(t *testing.T) {
	p := &Profile{MemberID: "M1"}
	at := time.Unix(100, 0)
	p.ApplyCDC(memberRec("i", 1, "active")) // mail_opt_in true
	p.ApplyBehavior(&topics.BehaviorEvent{EventID: "u1", MemberID: "M1", Type: "unsubscribe", At: at, Attrs: map[string]string{"channel": "MAIL"}})
	// An unrelated update of the members row, still saying opted in.
	p.ApplyCDC(memberRec("u", 2, "active"))
	if p.MailOptIn || slices.Contains(p.Reachable(), "MAIL") {
		t.Fatal("a members row undid a one-click unsubscribe")
	}
	// The shop records the opt-out; a later opt-in there is a re-subscription.
	off := rec("members", "u", 3, map[string]any{"member_id": "M1"},
		topics.MemberRow{MemberID: "M1", Email: "a@example.jp", MailOptIn: false, Status: "active"})
	p.ApplyCDC(off)
	p.ApplyCDC(memberRec("u", 4, "active"))
	if !p.MailOptIn {
		t.Fatal("a re-subscription recorded by the shop was ignored")
	}
}

// TestReplayMarksArePerPartition: offsets of different partitions are
// unrelated, so a mark on one partition never skips another's records,
// and a per-topic mark from before is honoured once and then superseded.
func TestReplayMarksArePerPartition(t *testing.T) {
	p := &Profile{Offsets: map[string]int64{"behavior.events": 90}}
	if !p.Replayed("behavior.events", 2, 90) || p.Replayed("behavior.events", 2, 91) {
		t.Fatal("a per-topic mark from before is not honoured")
	}
	p.Applied("behavior.events", 2, 91)
	if _, ok := p.Offsets["behavior.events"]; ok {
		t.Error("the per-topic mark survived a per-partition one")
	}
	for _, tc := range []struct {
		partition int32
		offset    int64
		replayed  bool
	}{
		{2, 91, true}, {2, 50, true}, {2, 92, false},
		{3, 0, false}, {3, 91, false}, // another partition's sequence
	} {
		if got := p.Replayed("behavior.events", tc.partition, tc.offset); got != tc.replayed {
			t.Errorf("Replayed(partition %d, offset %d) = %v, want %v", tc.partition, tc.offset, got, tc.replayed)
		}
	}
	if p.Replayed("delivery.results", 2, 0) {
		t.Error("a mark on one topic skips another's")
	}
}

// TestFirstMembersRow: only the first members row a profile sees is first
// (member-state writes no consent row for it), whatever came before it;
// a row after a delete is not.
func TestFirstMembersRow(t *testing.T) {
	cases := []struct {
		name   string
		before []*topics.CDCRecord
		r      *topics.CDCRecord
		want   bool
	}{
		{"new member", nil, memberRec("i", 1, "active"), true},
		{"favourite before the member row", []*topics.CDCRecord{favRec("i", 1, "I1")}, memberRec("i", 2, "active"), true},
		{"a favourite is not a members row", nil, favRec("i", 1, "I1"), false},
		{"update", []*topics.CDCRecord{memberRec("i", 1, "active")}, memberRec("u", 2, "active"), false},
		{"the delete itself", nil, memberRec("d", 1, ""), false},
		{"re-created after a delete", []*topics.CDCRecord{memberRec("i", 1, "active"), memberRec("d", 2, "")}, memberRec("i", 3, "active"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := applied(t, tc.before...)
			if got := p.FirstMembersRow(tc.r); got != tc.want {
				t.Errorf("FirstMembersRow = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSeenIDs(t *testing.T) {
	id := func(i int) string { return fmt.Sprintf("8c3f0a9d-2b7e-4f11-9a0b-%012d", i) }
	t.Run("hash is FNV-1a", func(t *testing.T) {
		f := fnv.New64a()
		f.Write([]byte(id(7)))
		if got, want := seenHash(id(7)), f.Sum64(); got != want {
			t.Fatalf("seenHash = %x, want %x", got, want)
		}
	})
	t.Run("a profile from before keeps its IDs", func(t *testing.T) {
		var legacy Profile
		if err := json.Unmarshal([]byte(`{"member_id":"M1","seen":["e1","e2"]}`), &legacy); err != nil {
			t.Fatal(err)
		}
		if !legacy.seen("e1") || legacy.seen("e3") {
			t.Fatal("legacy IDs not honoured")
		}
		legacy.remember("e3")
		if legacy.Seen != nil || !legacy.seen("e1") || !legacy.seen("e2") || !legacy.seen("e3") {
			t.Fatalf("after the next ID: Seen %q, e1..e3 seen: %v %v %v", legacy.Seen, legacy.seen("e1"), legacy.seen("e2"), legacy.seen("e3"))
		}
		b, err := Codec{}.Encode(&legacy)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"seen":`) || !strings.Contains(string(b), `"seen_hashes":"`) {
			t.Fatalf("encoded: %s", b)
		}
		v, err := Codec{}.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if p := v.(*Profile); !p.seen("e1") || !p.seen("e3") || p.seen("e4") {
			t.Fatal("IDs lost in the round trip")
		}
	})
	t.Run("the window keeps the newest", func(t *testing.T) {
		p := &Profile{}
		for i := range maxSeenIDs + 10 {
			p.remember(id(i))
		}
		if len(p.SeenHashes) != 8*maxSeenIDs {
			t.Fatalf("%d bytes, want %d", len(p.SeenHashes), 8*maxSeenIDs)
		}
		for i, want := range map[int]bool{0: false, 9: false, 10: true, maxSeenIDs + 9: true} {
			if got := p.seen(id(i)); got != want {
				t.Errorf("seen(%d) = %v, want %v", i, got, want)
			}
		}
	})
}

// busyProfile is a member at the limits: 512 seen IDs (as a legacy list
// of strings, or as hashes), 50 recent sends, 20 orders, a cart, and
// exposures, with every other field set too.
func busyProfile(legacySeen bool) *Profile {
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	p := &Profile{MemberID: "M00000001", Exists: true, Email: "m@example.jp", LineUserID: "U123", PushToken: "tok",
		MailOptIn: true, LineOptIn: true, PushOptIn: true, Status: "active", IsDebug: false, Gender: "f",
		Birthday: "1990-01-02", Prefecture: "東京都", Timezone: "Asia/Tokyo", RegisteredAt: at, Segments: []string{"gold", "vip"},
		Favorites:   map[string]time.Time{"I1": at, "I2": at},
		Versions:    map[string]int64{"members": 5, "fav/I1": 6, "fav/I2": 7, "cart/I3": 8},
		Cart:        map[string]CartLine{"I3": {Quantity: 2, AddedAt: at}},
		OrdersCount: 20, LastOrderAt: at,
		Engagement: map[string]Engagement{"LINE": {Sent: 3, Opened: 1, Clicked: 1, At: at}, "MAIL": {Sent: 1, At: at}},
		OptOuts:    map[string]time.Time{"PUSH": at},
		Offsets:    map[string]int64{"behavior.events/3": 100, "delivery.results/3": 50}}
	p.Activity[21] = 7
	for i := range maxSeenIDs {
		id := fmt.Sprintf("8c3f0a9d-2b7e-4f11-9a0b-%012d", i)
		if legacySeen {
			p.Seen = append(p.Seen, id)
		} else {
			p.remember(id)
		}
	}
	for i := range maxRecentSends {
		p.RecentSends = append(p.RecentSends, Send{DeliveryID: fmt.Sprintf("d-%030d", i), CampaignID: "price_drop_fav", Channel: "LINE", At: at.Add(-time.Duration(i) * time.Hour)})
	}
	for i := range maxOrders {
		p.Orders = append(p.Orders, Order{OrderID: fmt.Sprintf("O%08d", i), ItemID: "I1", Status: "shipped", Total: 3980, At: at})
	}
	for i := range maxExposures {
		p.Exposures = append(p.Exposures, Exposure{OfferID: fmt.Sprintf("of-%016d", i), CampaignID: "price_drop_fav", At: at})
	}
	return p
}

// TestReadCodecKeepsWhatReadersRead: ReadCodec leaves out exactly the
// fields it names, and the facts and snapshot a reader derives are those
// of the whole row.
func TestReadCodecKeepsWhatReadersRead(t *testing.T) {
	data, err := Codec{}.Encode(busyProfile(false))
	if err != nil {
		t.Fatal(err)
	}
	v, err := Codec{}.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	full := v.(*Profile)
	v, err = ReadCodec{}.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	read := v.(*Profile)
	now := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	if !reflect.DeepEqual(full.Facts(now), read.Facts(now)) {
		t.Errorf("facts differ:\n full %+v\n read %+v", full.Facts(now), read.Facts(now))
	}
	if !reflect.DeepEqual(full.Snapshot(now), read.Snapshot(now)) {
		t.Errorf("snapshots differ:\n full %+v\n read %+v", full.Snapshot(now), read.Snapshot(now))
	}
	want := *full
	want.Versions, want.Offsets, want.SeenHashes, want.Seen, want.Exposures, want.Orders, want.Cart = nil, nil, nil, nil, nil, nil, nil
	if !reflect.DeepEqual(&want, read) {
		t.Errorf("ReadCodec decoded other than the whole row without its bookkeeping:\n want %+v\n  got %+v", want, *read)
	}
	if _, err := (ReadCodec{}).Decode([]byte(`{"member_id":`)); err == nil {
		t.Error("a malformed row decoded without an error")
	}
}

// BenchmarkDecodeProfile decodes a busy member's profile (busyProfile) as
// filter's join does for every offer: with the seen IDs kept as before (a
// JSON list of strings) and as hashes, with the whole-row codec and with
// ReadCodec.
func BenchmarkDecodeProfile(b *testing.B) {
	for _, tc := range []struct {
		name   string
		legacy bool
		codec  interface{ Decode([]byte) (any, error) }
	}{
		{"seen-strings", true, Codec{}},
		{"seen-hashes", false, Codec{}},
		{"seen-hashes/read-codec", false, ReadCodec{}},
	} {
		data, err := Codec{}.Encode(busyProfile(tc.legacy))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.codec.Decode(data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(data)), "bytes/profile")
		})
	}
}

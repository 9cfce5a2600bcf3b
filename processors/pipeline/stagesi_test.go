package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/campaign"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/processors/timer"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

const testPartitions = 4

// stagesOne are the stages from change rows to offers.filtered.
var stagesOne = []string{memberstate.Group, detect.Group, campaign.Group, audience.Group, filter.Group}

// swappable is a stage.Rules whose set a test replaces mid-stream, as a
// rules.Watcher does when a workbook is published.
type swappable struct{ p atomic.Pointer[rules.Set] }

func (s *swappable) Current() *rules.Set { return s.p.Load() }

func exampleRules(t *testing.T) *rules.Set {
	t.Helper()
	set, err := rules.LoadSet("../../rules/examples/rtm-rules.xlsx")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// harness runs stages against an embedded broker and feeds them CDC rows.
// The timer stages (detect, timing) run on clock, which stands still until
// a test moves it: their tickers are quiet in between.
type harness struct {
	t       *testing.T
	addr    string
	cfg     Config
	client  *kgo.Client
	clock   *testkit.Clock
	version atomic.Int64
	stops   map[string]func()
	built   map[string]*Stage
	// profiles mirrors what member-state makes of the members the test
	// wrote, so offers injected after the filter stage carry the snapshot
	// filter would have attached (see offer).
	profiles map[string]*member.Profile
}

func newHarness(t *testing.T, rs *swappable) *harness {
	b := testkit.Broker(t, "")
	cat := topics.New(testPartitions, 1)
	cl := testkit.Client(t, b.Addr(), kgo.DefaultProduceTopic(""))
	if _, err := topics.Apply(testkit.Context(t), kadm.NewClient(cl), cat, false); err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewClock(time.Now().UTC())
	h := &harness{t: t, addr: b.Addr(), client: cl, clock: clock, stops: map[string]func(){}, built: map[string]*Stage{}, profiles: map[string]*member.Profile{},
		cfg: Config{Brokers: []string{b.Addr()}, Catalogue: cat, DataDir: t.TempDir(), Rules: rs, Log: testkit.Logger(t),
			Detect: detect.Config{Clock: clock}, Timing: timing.Config{Clock: clock}, Send: send.Config{Clock: clock}}}
	t.Cleanup(h.explainFailure) // before the broker closes
	t.Cleanup(h.stopAll)        // before explainFailure: LIFO
	return h
}

// explainFailure logs, for a failed test, how far the records got.
func (h *harness) explainFailure() {
	if !h.t.Failed() {
		return
	}
	for _, tp := range []string{topics.Events, topics.OffersFiltered, topics.OffersRouted, topics.OffersReady,
		topics.OffersExcluded, topics.Deliveries, topics.DeliveryResults, topics.DLQ} {
		recs := testkit.ReadCommitted(h.t, h.addr, tp)
		h.t.Logf("%s: %d records", tp, len(recs))
		if tp == topics.OffersExcluded || tp == topics.DLQ {
			for _, r := range recs {
				h.t.Logf("  %s", r.Value)
			}
		}
	}
}

// caughtUp waits until the groups, upstream first, have processed every
// record on their inputs, and so emitted everything they are going to.
func (h *harness) caughtUp(groups ...string) {
	h.t.Helper()
	testkit.WaitCaughtUp(h.t, h.addr, nil, groups...)
}

// tick sends a tick for at to every partition of stage's loop topic, as the
// stage's ticker does.
func (h *harness) tick(stage string, at time.Time) {
	h.t.Helper()
	v, err := timer.Codec{}.Encode(&timer.Message{Kind: timer.Tick, At: at})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, k := range topics.PartitionKeys("tick-", h.cfg.Catalogue.Partitions) {
		h.produce(topics.LoopOf(stage), k, v)
	}
}

// records returns every record on topic, read up to its end: unlike a
// collector, which may still be fetching, it misses nothing already written.
func (h *harness) records(topic string) []*kgo.Record {
	h.t.Helper()
	return testkit.ReadCommitted(h.t, h.addr, topic)
}

// start runs a stage until h.stop(name) or the end of the test.
func (h *harness) start(name string, dataDir string) {
	h.t.Helper()
	cfg := h.cfg
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	r, err := Build(name, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("stage %s: %v", name, err)
			}
		})
	}
	h.stops[name] = stop
	h.built[name] = r
}

// stop stops the named stages, all at once (each takes a while to leave its
// group), and waits until they have.
func (h *harness) stop(names ...string) {
	var wg sync.WaitGroup
	for _, n := range names {
		if stop := h.stops[n]; stop != nil {
			wg.Go(stop)
		}
	}
	wg.Wait()
}

// stopAll stops every stage still running.
func (h *harness) stopAll() {
	h.stop(slices.Collect(maps.Keys(h.stops))...)
}

func (h *harness) cdc(table, key string, keyCols map[string]any, op string, row any) *topics.CDCRecord {
	h.t.Helper()
	rec := &topics.CDCRecord{Table: table, Op: op, Version: h.version.Add(1), Key: keyCols, TS: time.Now().UTC()}
	if row != nil {
		b, _ := json.Marshal(row)
		rec.Row = b
	}
	v, err := topics.CDCCodec{}.Encode(rec)
	if err != nil {
		h.t.Fatal(err)
	}
	h.produce("cdc."+table, key, v)
	return rec
}

func (h *harness) produce(topic, key string, value []byte) {
	h.t.Helper()
	if err := h.client.ProduceSync(testkit.Context(h.t), &kgo.Record{Topic: topic, Key: []byte(key), Value: value}).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) member(row topics.MemberRow) {
	rec := h.cdc("members", row.MemberID, map[string]any{"member_id": row.MemberID}, topics.OpUpdate, row)
	p := h.profiles[row.MemberID]
	if p == nil {
		p = &member.Profile{MemberID: row.MemberID}
		h.profiles[row.MemberID] = p
	}
	if _, err := p.ApplyCDC(rec); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) favorite(member, item string) {
	h.cdc("favorites", member, map[string]any{"member_id": member, "item_id": item}, topics.OpInsert,
		topics.FavoriteRow{MemberID: member, ItemID: item, CreatedAt: time.Now().UTC()})
}

func (h *harness) item(op string, row topics.ItemRow) {
	h.cdc("items", row.ItemID, map[string]any{"item_id": row.ItemID}, op, row)
}

// collector reads a topic from the start, keeping every record.
type collector struct {
	mu   sync.Mutex
	recs []*kgo.Record
}

func (h *harness) collect(topic string) *collector {
	c := &collector{}
	cl := testkit.Client(h.t, h.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			c.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { c.recs = append(c.recs, r) })
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.recs) }

func (c *collector) offers(t *testing.T) []*topics.Offer {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*topics.Offer
	for _, r := range c.recs {
		o, err := topics.OfferCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatalf("%s: %v", r.Topic, err)
		}
		if want := topics.Partition(r.Key, testPartitions); r.Partition != want || string(r.Key) != o.MemberID {
			t.Errorf("%s: offer for %s keyed %q on partition %d, want key member_id on %d", r.Topic, o.MemberID, r.Key, r.Partition, want)
		}
		out = append(out, o)
	}
	return out
}

func memberIDs(os []*topics.Offer, campaign string) []string {
	var ids []string
	for _, o := range os {
		if o.CampaignID == campaign {
			ids = append(ids, o.MemberID)
		}
	}
	slices.Sort(ids)
	return ids
}

// waitIndexed waits until the audience stage's own copy of
// member-state-table lists n favouriters of item across its partitions.
func (h *harness) waitIndexed(item string, n int) {
	h.t.Helper()
	reg := h.built[audience.Group].Env.Registry
	testkit.Eventually(h.t, time.Minute, fmt.Sprintf("%d favouriters of %s in audience's index", n, item), func() bool {
		count := 0
		for p := range int32(testPartitions) {
			st := reg.Store(string(member.Table), p)
			if st == nil {
				return false
			}
			err := st.Lookup(member.FavoritesIndex, item, func(string) error { count++; return nil })
			if errors.Is(err, state.ErrIndexNotReady) {
				return false // still recovering
			}
			if err != nil {
				h.t.Fatal(err)
			}
		}
		return count == n
	})
}

func strs(format string, idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, fmt.Sprintf(format, i))
	}
	slices.Sort(out)
	return out
}

func TestStagesOneEndToEnd(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	full := exampleRules(t)
	rs.p.Store(full)
	h := newHarness(t, rs)
	for _, s := range stagesOne {
		h.start(s, "")
	}
	filtered := h.collect(topics.OffersFiltered)
	excluded := h.collect(topics.OffersExcluded)
	dlq := h.collect(topics.DLQ)

	// 40 members; every even one favourites I1. M00, M10, M20, M30 are debug
	// users, M04 and M14 opted out of everything, M08 has withdrawn.
	for i := range 40 {
		row := topics.MemberRow{MemberID: fmt.Sprintf("M%02d", i), Email: fmt.Sprintf("m%d@example.jp", i),
			MailOptIn: true, Status: "active", Timezone: "Asia/Tokyo", Prefecture: "東京都"}
		switch i {
		case 0, 10, 20, 30:
			row.IsDebug = true
		case 4, 14:
			row.MailOptIn = false
		case 8:
			row.Status = "withdrawn"
		}
		h.member(row)
		if i%2 == 0 {
			h.favorite(row.MemberID, "I1")
		}
		if i%5 == 0 {
			h.favorite(row.MemberID, "I10") // a prefix of nothing: I1 must not match I10
		}
	}
	h.produce(topics.CDCMembers, "M99", []byte(`{"schema_version":1,"table":"members"`)) // malformed
	h.waitIndexed("I1", 19)                                                              // 20 even members, minus withdrawn M08
	h.waitProfilesBy(filter.Group, 40)

	h.item(topics.OpInsert, topics.ItemRow{ItemID: "I1", Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: 5000, Stock: 3})
	h.item(topics.OpUpdate, topics.ItemRow{ItemID: "I1", Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: 3000, Stock: 3})

	pass := strs("M%02d", 2, 6, 12, 16, 18, 22, 24, 26, 28, 32, 34, 36, 38)
	testkit.Eventually(t, time.Minute, "price-drop offers filtered and excluded", func() bool {
		return filtered.len() == len(pass) && excluded.len() == 6
	})
	if got := memberIDs(filtered.offers(t), "price-drop-big"); !slices.Equal(got, pass) {
		t.Errorf("filtered members %v, want %v", got, pass)
	}
	reasons := map[string]string{}
	for _, o := range excluded.offers(t) {
		d := o.Decisions[len(o.Decisions)-1]
		reasons[o.MemberID] = d.Reason
		if d.Stage != "filter" || d.Outcome != "exclude" {
			t.Errorf("%s: last decision %+v", o.MemberID, d)
		}
	}
	wantReasons := map[string]string{"M00": "debug user", "M10": "debug user", "M20": "debug user", "M30": "debug user",
		"M04": "全チャネル配信停止 (opted out)", "M14": "全チャネル配信停止 (opted out)"}
	for m, r := range wantReasons {
		if !strings.Contains(reasons[m], r) {
			t.Errorf("%s excluded with reason %q, want %q", m, reasons[m], r)
		}
	}
	for _, o := range filtered.offers(t) {
		if o.RulesVersion == "" || o.OfferID != topics.OfferID(o.CampaignID, o.Event.EventID, o.MemberID) || o.Event.DropPct != 40 {
			t.Errorf("offer %+v lacks rules version, deterministic ID or event summary", o)
		}
		var stages []string
		for _, s := range o.Stamps {
			stages = append(stages, s.Stage)
		}
		if !slices.Equal(stages, []string{"campaign", "audience", "filter"}) {
			t.Errorf("offer stamps %v", stages)
		}
	}
	testkit.Eventually(t, 30*time.Second, "the malformed record in the dead-letter topic", func() bool { return dlq.len() >= 1 })
	dl, err := topics.DeadLetterCodec{}.DecodeValue(dlq.recs[0].Value)
	if err != nil || dl.Topic != topics.CDCMembers || dl.Stage != "member-state" || !strings.Contains(dl.Reason, "decoding CDCRecord") {
		t.Errorf("dead letter %+v, %v", dl, err)
	}

	// Mid-stream: M12 withdraws, and the rules change (the filter table is
	// withdrawn, so debug users now pass). A second drop then reaches
	// debug users but never M12.
	h.member(topics.MemberRow{MemberID: "M12", Email: "m12@example.jp", MailOptIn: true, Status: "withdrawn"})
	h.waitIndexed("I1", 18)
	rs.p.Store(full.Without("member-filters"))
	h.item(topics.OpUpdate, topics.ItemRow{ItemID: "I1", Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: 2000, Stock: 3})
	second := append(slices.Clone(pass), "M00", "M04", "M10", "M14", "M20", "M30")
	second = slices.DeleteFunc(second, func(s string) bool { return s == "M12" })
	slices.Sort(second)
	testkit.Eventually(t, time.Minute, "second drop filtered", func() bool { return filtered.len() == len(pass)+len(second) })
	all := filtered.offers(t)
	var got []string
	ids := map[string]bool{}
	for _, o := range all {
		if ids[o.OfferID] {
			t.Errorf("duplicate offer ID %s", o.OfferID)
		}
		ids[o.OfferID] = true
		if o.Event.NewPrice == 2000 {
			got = append(got, o.MemberID)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, second) {
		t.Errorf("second drop reached %v, want %v", got, second)
	}
}

// TestCartAbandonmentTimer drives the detect stage's timer end to end: a
// cart with no order within the window becomes a cart_abandoned event (the
// due-time index, a tick, a loopback release), and the campaign's member
// audience and filter rules apply to it. A member who orders in time gets
// nothing; nothing is released before it is due; the event is released
// once. Time is the harness clock's, so the window is the real default.
func TestCartAbandonmentTimer(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(exampleRules(t))
	h := newHarness(t, rs)
	const window = time.Hour
	h.cfg.Detect.CartWindow = window
	for _, s := range stagesOne {
		h.start(s, "")
	}
	filtered := h.collect(topics.OffersFiltered)

	now := h.clock.Now()
	for _, m := range []string{"M1", "M2", "M3"} {
		h.member(topics.MemberRow{MemberID: m, Email: m + "@example.jp", MailOptIn: true, Status: "active"})
		// An earlier order: the example filter sends cart reminders only to
		// members who have bought before.
		h.cdc("orders", m, map[string]any{"member_id": m, "order_id": "O-" + m}, topics.OpInsert,
			topics.OrderRow{OrderID: "O-" + m, MemberID: m, ItemID: "I9", Status: "delivered", OrderedAt: now.Add(-48 * time.Hour)})
	}
	h.waitProfilesBy(filter.Group, 3)
	for _, m := range []string{"M1", "M2", "M3"} {
		h.cdc("cart_items", m, map[string]any{"member_id": m, "item_id": "I5"}, topics.OpInsert,
			topics.CartItemRow{MemberID: m, ItemID: "I5", Quantity: 1, AddedAt: now})
	}
	// M2 orders within the window; M3's order is for an old cart item only
	// in the sense that it comes before: it is ignored (ordered_at earlier).
	h.cdc("orders", "M2", map[string]any{"member_id": "M2", "order_id": "O-2b"}, topics.OpInsert,
		topics.OrderRow{OrderID: "O-2b", MemberID: "M2", ItemID: "I5", Status: "placed", OrderedAt: now.Add(time.Second)})
	// Every change row is in detect's state before time moves, and a tick
	// just before the window closes releases nothing.
	h.caughtUp(detect.Group)
	h.tick(detect.Group, now.Add(window-time.Nanosecond))
	h.caughtUp(detect.Group)
	if n := len(h.cartAbandoned()); n != 0 {
		t.Fatalf("%d cart_abandoned events before the window closed", n)
	}

	h.clock.Set(now.Add(window)) // the stage's own ticker releases the carts
	testkit.Eventually(t, time.Minute, "cart reminders for M1 and M3", func() bool { return filtered.len() == 2 })
	if got := memberIDs(filtered.offers(t), "cart-reminder"); !slices.Equal(got, []string{"M1", "M3"}) {
		t.Fatalf("cart reminders for %v, want [M1 M3]", got)
	}
	// More ticks, the ticker's and a duplicate: nothing is released twice.
	h.clock.Advance(time.Minute)
	h.tick(detect.Group, now.Add(window))
	h.caughtUp(stagesOne...)
	if n, m := len(h.cartAbandoned()), len(h.records(topics.OffersFiltered)); n != 2 || m != 2 {
		t.Fatalf("%d cart_abandoned events and %d offers, want 2 and 2", n, m)
	}
}

// cartAbandoned returns the cart_abandoned events on the events topic.
func (h *harness) cartAbandoned() []*kgo.Record {
	var out []*kgo.Record
	for _, r := range h.records(topics.Events) {
		if strings.Contains(string(r.Value), `"cart_abandoned"`) {
			out = append(out, r)
		}
	}
	return out
}

// TestStagesRestart stops stages and starts them again — audience on its
// kept Pebble data, filter on an empty data directory (restored from the
// changelog) — with events arriving while they are down: nothing is lost and
// no offer ID appears twice downstream.
func TestStagesRestart(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(exampleRules(t))
	h := newHarness(t, rs)
	audienceDir, filterDir := t.TempDir(), t.TempDir()
	for _, s := range stagesOne {
		switch s {
		case audience.Group:
			h.start(s, audienceDir)
		case filter.Group:
			h.start(s, filterDir)
		default:
			h.start(s, "")
		}
	}
	filtered := h.collect(topics.OffersFiltered)
	for i := range 30 {
		m := fmt.Sprintf("M%02d", i)
		h.member(topics.MemberRow{MemberID: m, Email: m + "@example.jp", MailOptIn: true, Status: "active"})
		h.favorite(m, "I7")
	}
	h.waitIndexed("I7", 30)
	h.waitProfilesBy(filter.Group, 30)
	price := 10000.0
	drop := func() {
		price *= 0.6
		h.item(topics.OpUpdate, topics.ItemRow{ItemID: "I7", Brand: "B", Category: "家電", Price: price, Stock: 1})
	}
	h.item(topics.OpInsert, topics.ItemRow{ItemID: "I7", Brand: "B", Category: "家電", Price: price, Stock: 1})
	drop()
	testkit.Eventually(t, time.Minute, "first drop", func() bool { return filtered.len() == 30 })

	h.stop(audience.Group, filter.Group)
	drop() // arrives while audience and filter are down
	h.start(audience.Group, audienceDir)
	h.start(filter.Group, t.TempDir()) // empty: restores member-state-table from the changelog
	testkit.Eventually(t, time.Minute, "second drop after restart", func() bool { return filtered.len() >= 60 })
	drop()
	testkit.Eventually(t, time.Minute, "third drop", func() bool { return filtered.len() >= 90 })
	h.caughtUp(stagesOne...) // any duplicate has been written
	ids := map[string]int{}
	for _, r := range h.records(topics.OffersFiltered) {
		o, err := topics.OfferCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		ids[o.OfferID]++
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("offer %s emitted %d times", id, n)
		}
	}
	if len(ids) != 90 {
		t.Errorf("%d distinct offers, want 90", len(ids))
	}
}

package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
	"github.com/twmb/franz-go/pkg/kadm"
)

// table compiles a one-table rule set from action columns and rows.
func table(t *testing.T, name string, kind rules.Kind, actions []string, rows ...[]any) *rules.Table {
	t.Helper()
	spec := rules.TableSpec{Name: name, Kind: kind, HitPolicy: rules.HitFirst, Sheet: name}
	for i, a := range actions {
		spec.Columns = append(spec.Columns, rules.Column{Type: rules.ColAction, Template: a, Ref: string(rune('A'+i)) + "3"})
	}
	for i, r := range rows {
		row := rules.Row{Row: 5 + i}
		for _, v := range r {
			row.Cells = append(row.Cells, rules.Value{V: v})
		}
		spec.Rows = append(spec.Rows, row)
	}
	tb, err := rules.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func set(t *testing.T, tables ...*rules.Table) *rules.Set {
	t.Helper()
	s, err := rules.NewSet(tables...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// offer writes o to topic. An offer written after the filter stage gets
// the member snapshot filter would have attached, when the test wrote the
// member and set none itself.
func (h *harness) offer(topic string, o *topics.Offer) {
	h.t.Helper()
	if p := h.profiles[o.MemberID]; p != nil && o.Member == nil && topic != topics.OffersCandidates {
		o.Member = p.Snapshot(h.clock.Now())
	}
	v, err := topics.OfferCodec{}.Encode(o)
	if err != nil {
		h.t.Fatal(err)
	}
	h.produce(topic, o.MemberID, v)
}

func (h *harness) result(r topics.DeliveryResult) {
	v, _ := topics.DeliveryResultCodec{}.Encode(&r)
	h.produce(topics.DeliveryResults, r.MemberID, v)
}

func (h *harness) behavior(e topics.BehaviorEvent) {
	v, _ := topics.BehaviorEventCodec{}.Encode(&e)
	h.produce(topics.BehaviorEvents, e.MemberID, v)
}

// TestCapsHoldUnderBurstsAndReplays: ten campaigns for one member at once
// against a day cap of 3 let exactly three through, and replaying all ten
// takes no further slot and emits nothing.
func TestCapsHoldUnderBurstsAndReplays(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(set(t,
		table(t, "timing", rules.KindTiming, []string{"cap_day", "cap_week"}, []any{3.0, 10.0}),
		table(t, "channels", rules.KindChannel, []string{"channels", "strategy"}, []any{"MAIL", "fixed"})))
	h := newHarness(t, rs)
	for _, s := range []string{memberstate.Group, channel.Group, timing.Group} {
		h.start(s, "")
	}
	ready, excluded := h.collect(topics.OffersReady), h.collect(topics.OffersExcluded)
	h.member(topics.MemberRow{MemberID: "M1", Email: "m1@example.jp", MailOptIn: true, Status: "active", Timezone: "UTC"})

	burst := make([]*topics.Offer, 10)
	for i := range burst {
		burst[i] = &topics.Offer{OfferID: fmt.Sprintf("of-burst-%d", i), CampaignID: fmt.Sprintf("c%d", i), MemberID: "M1", Timing: "now"}
		h.offer(topics.OffersFiltered, burst[i])
	}
	testkit.Eventually(t, time.Minute, "10 decisions", func() bool { return ready.len()+excluded.len() == 10 })
	for _, o := range burst { // replay
		h.offer(topics.OffersFiltered, o)
	}
	// A new offer after the replays, on the same member's partition: once
	// it is decided (capped), every replay before it has been processed.
	h.offer(topics.OffersFiltered, &topics.Offer{OfferID: "of-sentinel", CampaignID: "cx", MemberID: "M1", Timing: "now"})
	testkit.Eventually(t, time.Minute, "the sentinel decided", func() bool { return excluded.len() == 8 })
	if n := len(h.records(topics.OffersReady)); n != 3 {
		t.Fatalf("%d offers passed a day cap of 3 under a burst and its replay", n)
	}
	for _, o := range excluded.offers(t) {
		if d := o.Decisions[len(o.Decisions)-1]; d.Stage != "timing" || d.Reason != timing.ReasonCapDay {
			t.Errorf("%s excluded by %+v, want the day cap", o.OfferID, d)
		}
	}
}

// TestChannelFollowsEngagement: in `best` mode a member who only ever
// clicks LINE gets LINE. The engagement reaches channel the only way it
// can: member-state counts it, filter puts it in the offer's snapshot.
func TestChannelFollowsEngagement(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(set(t, table(t, "channels", rules.KindChannel, []string{"channels", "strategy"}, []any{"MAIL,PUSH,LINE", "best"})))
	h := newHarness(t, rs)
	for _, s := range []string{memberstate.Group, filter.Group, channel.Group} {
		h.start(s, "")
	}
	routed := h.collect(topics.OffersRouted)
	h.member(topics.MemberRow{MemberID: "M5", Email: "m5@example.jp", MailOptIn: true, LineUserID: "U5", LineOptIn: true,
		PushToken: "p5", PushOptIn: true, Status: "active", Timezone: "UTC"})
	at := time.Now().Add(-time.Hour).UTC()
	for _, ch := range []string{"MAIL", "PUSH", "LINE"} {
		for i := range 15 {
			h.result(topics.DeliveryResult{DeliveryID: fmt.Sprintf("d-%s-%d", ch, i), MemberID: "M5", Channel: ch, Status: "sent", At: at})
		}
	}
	for i := range 10 {
		h.behavior(topics.BehaviorEvent{EventID: fmt.Sprintf("click-%d", i), MemberID: "M5", Type: "click", At: at,
			DeliveryID: fmt.Sprintf("d-LINE-%d", i), Attrs: map[string]string{"channel": "LINE"}})
	}
	// Exists too: member-state reads its input topics in no fixed order, so
	// the results can be counted before the member row has arrived.
	h.waitFor(filter.Group, "M5's engagement", func(v []byte) bool {
		var p member.Profile
		json.Unmarshal(v, &p)
		return p.Exists && p.Engagement["LINE"].Clicked == 10 && p.Engagement["MAIL"].Sent == 15 && p.Engagement["PUSH"].Sent == 15
	})
	for i := range 20 {
		h.offer(topics.OffersCandidates, &topics.Offer{OfferID: fmt.Sprintf("of-eng-%d", i), CampaignID: "c", MemberID: "M5"})
	}
	testkit.Eventually(t, time.Minute, "20 routed offers", func() bool { return routed.len() == 20 })
	line := 0
	for _, o := range routed.offers(t) {
		if o.Channel == "LINE" {
			line++
		}
	}
	if line < 18 {
		t.Fatalf("LINE chosen for %d of 20 offers; the member only ever clicks LINE", line)
	}
}

// TestHeldOffersReleasedAcrossRestart: an offer held by quiet hours is
// released when they end, although the timing stage was stopped and
// started again while it was held — not before its due time, at it, and
// exactly once. Time is the harness clock's: nothing waits for real minutes.
func TestHeldOffersReleasedAcrossRestart(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(set(t, table(t, "timing", rules.KindTiming, []string{"quiet_hours", "cap_day"}, []any{"22:00-08:00", 5.0})))
	h := newHarness(t, rs)
	// 23:00 for a UTC member: held until the quiet hours end at 08:00.
	h.clock.Set(time.Date(2026, 11, 24, 23, 0, 0, 0, time.UTC))
	due := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	h.start(memberstate.Group, "")
	h.start(timing.Group, dir)
	ready := h.collect(topics.OffersReady)
	h.member(topics.MemberRow{MemberID: "M7", Email: "m7@example.jp", MailOptIn: true, Status: "active", Timezone: "UTC"})
	h.offer(topics.OffersRouted, &topics.Offer{OfferID: "of-held", CampaignID: "c", MemberID: "M7", Channel: "MAIL", Timing: "now"})
	h.waitFor(timing.Group, "the offer held in the ledger", func(v []byte) bool { return strings.Contains(string(v), `"held":[`) })

	h.stop(timing.Group)
	h.clock.Set(due.Add(-time.Minute))
	h.start(timing.Group, dir)
	// The restarted stage ticks (its ticker's first tick, and one just
	// before the due time) and releases nothing yet.
	h.tick(timing.Group, due.Add(-time.Nanosecond))
	h.caughtUp(timing.Group)
	if n := len(h.records(topics.OffersReady)); n != 0 {
		t.Fatalf("%d offers released during quiet hours", n)
	}

	h.clock.Set(due) // the ticker's next tick releases it
	testkit.Eventually(t, time.Minute, "the held offer released", func() bool { return ready.len() == 1 })
	o := ready.offers(t)[0]
	if d := o.Decisions[len(o.Decisions)-1]; o.OfferID != "of-held" || !o.SendAt.Equal(due) || d.Stage != timing.Group || d.Outcome != "release" {
		t.Fatalf("released %s to be sent at %v with %+v, want of-held at %v by a release", o.OfferID, o.SendAt, d, due)
	}
	// More ticks, the ticker's and duplicates: nothing is released twice.
	h.clock.Advance(time.Hour)
	h.tick(timing.Group, due)
	h.caughtUp(timing.Group)
	if n := len(h.records(topics.OffersReady)); n != 1 {
		t.Fatalf("released %d times", n)
	}
}

// eachRow calls fn with every row of table in stage's local stores until
// fn returns false; it reports false when a partition's store is not open.
func (h *harness) eachRow(stage, table string, fn func(v []byte) bool) bool {
	reg := h.built[stage].Env.Registry
	for p := range int32(testPartitions) {
		st := reg.Store(table, p)
		if st == nil {
			return false
		}
		it, err := st.Iterator()
		if err != nil {
			return false
		}
		for it.Next() {
			v, err := it.Value()
			if err == nil && !fn(v) {
				it.Release()
				return true
			}
		}
		it.Release()
	}
	return true
}

// waitFor polls stage's copy of member-state-table and its own table until
// some row satisfies cond.
func (h *harness) waitFor(stage, what string, cond func([]byte) bool) {
	h.t.Helper()
	testkit.Eventually(h.t, time.Minute, what, func() bool {
		found := false
		for _, tbl := range []string{string(member.Table), topics.TableOf(stage)} {
			if !found {
				h.eachRow(stage, tbl, func(v []byte) bool { found = cond(v); return !found })
			}
		}
		return found
	})
}

// waitProfilesBy waits until stage's copy of member-state-table has n rows
// (filter and audience keep one; the stages after filter read the offer's
// snapshot).
func (h *harness) waitProfilesBy(stage string, n int) {
	h.t.Helper()
	testkit.Eventually(h.t, time.Minute, fmt.Sprintf("%d profiles in %s's table", n, stage), func() bool {
		count := 0
		return h.eachRow(stage, string(member.Table), func([]byte) bool { count++; return true }) && count >= n
	})
}

// crashAfterSend delivers, then panics before the send stage can record the
// delivery: a crash between sending and recording.
type crashAfterSend struct {
	next    send.Deliverer
	crashed atomic.Bool
}

func (c *crashAfterSend) Deliver(ctx context.Context, d *topics.Delivery) channels.Outcome {
	out := c.next.Deliver(ctx, d)
	if c.crashed.CompareAndSwap(false, true) {
		panic("simulated crash after the channel accepted the message")
	}
	return out
}

// TestSendCrashBetweenSendAndRecord: the send stage dies after LINE accepted
// a push but before it recorded the delivery; restarted, it processes the
// delivery again, and LINE (deduplicating on X-Line-Retry-Key, derived from
// the delivery ID) accepts it once.
func TestSendCrashBetweenSendAndRecord(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	sk, err := sinks.Start(ctx, sinks.Config{SMTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	lc := channels.LineDefaults()
	lc.BaseURL, lc.ChannelAccessToken = sk.HTTP.URL(), sk.Config().LineToken
	line, err := channels.NewLineAdapter(lc, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	dl, err := channels.NewDeliverer(line, channels.DelivererConfig{RatePerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	rs := &swappable{}
	rs.p.Store(set(t))
	h := newHarness(t, rs)
	crash := &crashAfterSend{next: dl}
	h.cfg.Deliverer = crash
	dir := t.TempDir()
	results := h.collect(topics.DeliveryResults)

	r, err := Build(send.Group, withDataDir(h.cfg, dir))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(context.Background()) }()
	o := &topics.Offer{OfferID: "of-crash", CampaignID: "c", MemberID: "M9"}
	d, err := channels.NewDelivery(o, channels.NewLineText("U0123456789abcdef0123456789abcdef", "こんにちは"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := topics.DeliveryCodec{}.Encode(d)
	h.produce(topics.Deliveries, d.MemberID, v)
	select {
	case err := <-runErr:
		if err == nil || !strings.Contains(err.Error(), "simulated crash") {
			t.Fatalf("send stage stopped with %v, want the simulated crash", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the send stage did not crash")
	}
	if got := len(sk.HTTP.Line.Accepted()); got != 1 || results.len() != 0 {
		t.Fatalf("before restart: LINE accepted %d, %d results recorded; want 1 and 0", got, results.len())
	}

	h.start(send.Group, dir) // restart on the same local state
	testkit.Eventually(t, time.Minute, "the delivery result after restart", func() bool { return results.len() == 1 })
	if got := len(sk.HTTP.Line.Accepted()); got != 1 {
		t.Fatalf("LINE accepted the push %d times", got)
	}
	if reqs := sk.HTTP.Line.Requests(); reqs != 2 {
		t.Errorf("LINE saw %d requests, want 2 (the resend was deduplicated by LINE)", reqs)
	}
	res, _ := topics.DeliveryResultCodec{}.DecodeValue(results.recs[0].Value)
	if res.Status != topics.StatusSent || res.DeliveryID != d.DeliveryID {
		t.Fatalf("result %+v", res)
	}
}

func withDataDir(c Config, dir string) Config { c.DataDir = dir; return c }

// TestReplayNeverResends runs every stage from change rows to the LINE
// sink, then stops them all, rewinds every consumer group to the earliest
// records, and runs them again: everything is processed a second time, and
// nothing is sent twice.
func TestReplayNeverResends(t *testing.T) {
	t.Parallel()
	ctx := testkit.Context(t)
	sk, err := sinks.Start(ctx, sinks.Config{SMTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	lc := channels.LineDefaults()
	lc.BaseURL, lc.ChannelAccessToken = sk.HTTP.URL(), sk.Config().LineToken
	line, _ := channels.NewLineAdapter(lc, testkit.Logger(t))
	dl, _ := channels.NewDeliverer(line, channels.DelivererConfig{RatePerSecond: -1})
	rs := &swappable{}
	tpl, err := rules.Compile(rules.TableSpec{Name: "templates", Kind: rules.KindTemplate, Sheet: "T",
		Columns: []rules.Column{{Type: rules.ColField, Template: "id"}, {Type: rules.ColField, Template: "channel"},
			{Type: rules.ColField, Template: "body"}, {Type: rules.ColField, Template: "url"}},
		Rows: []rules.Row{{Row: 3, Cells: []rules.Value{{V: "t-line"}, {V: "LINE"}, {V: "値下げ {{.event.item_id}}"}, {V: "https://shop.example.jp/i"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	rs.p.Store(set(t,
		table(t, "timing", rules.KindTiming, []string{"cap_day"}, []any{10.0}),
		table(t, "channels", rules.KindChannel, []string{"channels", "strategy"}, []any{"LINE", "fixed"}), tpl))
	h := newHarness(t, rs)
	h.cfg.Deliverer = dl
	h.cfg.Render = render.Config{TrackingBase: "http://127.0.0.1:1", Keys: testKeys(t), MailFrom: "shop@example.jp"}
	stages := []string{memberstate.Group, channel.Group, timing.Group, render.Group, send.Group}
	for _, s := range stages {
		h.start(s, "")
	}
	results := h.collect(topics.DeliveryResults)
	for i := range 5 {
		m := fmt.Sprintf("R%d", i)
		h.member(topics.MemberRow{MemberID: m, LineUserID: fmt.Sprintf("U%032d", i), LineOptIn: true, Status: "active", Timezone: "UTC"})
	}
	for i := range 5 {
		h.offer(topics.OffersFiltered, &topics.Offer{OfferID: fmt.Sprintf("of-replay-%d", i), CampaignID: "c", MemberID: fmt.Sprintf("R%d", i),
			Template: "t-line", Timing: "now"})
	}
	testkit.Eventually(t, time.Minute, "5 LINE deliveries", func() bool { return results.len() == 5 })
	// Every stage has committed what it read: a replay rewinds committed
	// offsets, and a stage stopped before its first commit has none.
	h.caughtUp(stages...)
	accepted := len(sk.HTTP.Line.Accepted())

	adm := kadm.NewClient(h.client)
	if _, err := Replay(ctx, adm, send.Group, time.Time{}); !errors.Is(err, ErrGroupActive) {
		t.Fatalf("replaying a running stage: %v, want ErrGroupActive", err)
	}
	h.stop(stages...)
	for _, s := range stages {
		n, err := Replay(ctx, adm, s, time.Time{})
		if err != nil || n == 0 {
			t.Fatalf("replay %s: %d partitions, %v", s, n, err)
		}
		// Rewound: the group now lags by everything it had read.
		if lags, err := adm.Lag(ctx, s); err != nil || lags[s].Lag.Total() == 0 {
			t.Fatalf("%s does not lag after the replay: %v", s, err)
		}
	}
	if _, err := Replay(ctx, adm, "no-such-group", time.Time{}); err == nil {
		t.Error("replaying a group that never ran succeeded")
	}
	for _, s := range stages {
		h.start(s, "")
	}
	h.caughtUp(stages...)
	if got, n := len(sk.HTTP.Line.Accepted()), len(h.records(topics.DeliveryResults)); got != accepted || n != 5 {
		t.Fatalf("after a full replay: LINE accepted %d (was %d), %d delivery results (was 5)", got, accepted, n)
	}
}

// TestMemberStateReplayCountsNothingTwice replays member-state over more
// behaviour events than its ring of recent IDs holds: the offsets it keeps
// per topic recognise every one of them.
func TestMemberStateReplayCountsNothingTwice(t *testing.T) {
	t.Parallel()
	rs := &swappable{}
	rs.p.Store(set(t))
	h := newHarness(t, rs)
	h.start(memberstate.Group, "")
	h.member(topics.MemberRow{MemberID: "M3", Status: "active", Timezone: "UTC"})
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	const n = 600 // more than the ring of 512 recent IDs
	for i := range n {
		h.behavior(topics.BehaviorEvent{EventID: fmt.Sprintf("pv-%d", i), MemberID: "M3", Type: "page_view", At: at})
	}
	activity := func() uint32 {
		var got uint32
		h.waitFor(memberstate.Group, "M3's profile", func(v []byte) bool {
			var p member.Profile
			if json.Unmarshal(v, &p) != nil || p.MemberID != "M3" {
				return false
			}
			got = p.Activity[9]
			return true
		})
		return got
	}
	testkit.Eventually(t, time.Minute, "600 page views counted", func() bool { return activity() == n })
	h.stop(memberstate.Group)
	if _, err := Replay(testkit.Context(t), kadm.NewClient(h.client), memberstate.Group, time.Time{}); err != nil {
		t.Fatal(err)
	}
	h.start(memberstate.Group, "")
	h.behavior(topics.BehaviorEvent{EventID: "pv-last", MemberID: "M3", Type: "page_view", At: at})
	testkit.Eventually(t, time.Minute, "the new page view counted after the replay", func() bool { return activity() >= n+1 })
	if got := activity(); got != n+1 {
		t.Fatalf("activity %d after replaying %d events and adding one, want %d", got, n, n+1)
	}
}

package simulate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/xuri/excelize/v2"

	"github.com/rtm-project/rtm/internal/simulate"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/campaign"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/pipeline"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

const partitions = 4

// writeFilterWorkbook writes a candidate workbook holding one table,
// member-filters: the example's rows plus one that excludes members in
// 大阪府 — a marketer tightening the filter.
func writeFilterWorkbook(t *testing.T) string {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	const sheet = "Filters"
	if err := f.SetSheetName("Sheet1", sheet); err != nil {
		t.Fatal(err)
	}
	var X any
	rows := [][]any{
		{"RuleTable", "member-filters"},
		{"Kind", "filter"},
		{"HitPolicy", "first"},
		{},
		{"COLUMNS", "NAME", "CONDITION", "CONDITION", "CONDITION", "CONDITION", "CONDITION", "CONDITION", "ACTION", "ACTION"},
		{X, X, "member.is_debug == $param", "member.status in $param", "(member.mail_opt_in or member.line_opt_in or member.push_opt_in) == $param",
			"campaign.id == $param", "member.orders_count < $param", "member.prefecture in $param", "exclude", "reason"},
		{X, "ルール名", "デバッグ会員", "会員ステータス", "いずれかのチャネルに同意", "キャンペーン", "購入回数未満", "都道府県", "除外", "理由"},
		{X, "デバッグ会員", true, X, X, X, X, X, true, "debug user"},
		{X, "退会・停止会員", X, "withdrawn,suspended", X, X, X, X, true, "退会済みまたは停止中"},
		{X, "配信停止", X, X, false, X, X, X, true, "全チャネル配信停止 (opted out)"},
		{X, "カゴ落ちは購入者のみ", X, X, X, "cart-reminder", 1, X, true, "カゴ落ち通知は購入経験のある会員のみ"},
		{X, "大阪は対象外", X, X, X, X, X, "大阪府", true, "大阪府は対象外"},
		{X, "既定", X, X, X, X, X, X, false, ""},
	}
	for i, r := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow(sheet, cell, &r); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "candidate.xlsx")
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// endState is what a simulation must leave as it was: every topic's end
// offsets and the consumer groups.
func endState(t *testing.T, adm *kadm.Client, cat topics.Catalogue) (map[string]int64, []string) {
	t.Helper()
	ctx := testkit.Context(t)
	var names []string
	for _, tp := range cat.Topics {
		names = append(names, tp.Name)
	}
	var ends kadm.ListedOffsets
	testkit.Eventually(t, 30*time.Second, "end offsets listed without error", func() bool {
		var err error
		ends, err = adm.ListEndOffsets(ctx, names...)
		return err == nil && ends.Error() == nil // the broker's metadata may lag a moment
	})
	out := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset })
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return out, groups.Groups()
}

// TestSimulateTightenedFilter is the end-to-end test: the real
// stages (member-state, campaign, audience, filter, channel, timing) on the
// embedded broker decide a price drop for 24 members; a candidate
// workbook then excludes 大阪府, and simulate lists exactly the members who
// would lose the message — those in 大阪府 who get it today — while its
// "before" side agrees with what the stages actually decided, and nothing
// is written to any topic and no consumer group appears.
func TestSimulateTightenedFilter(t *testing.T) {
	b := testkit.Broker(t, "")
	cat := topics.New(partitions, 1)
	cl := testkit.Client(t, b.Addr(), kgo.DefaultProduceTopic(""))
	ctx := testkit.Context(t)
	adm := kadm.NewClient(cl)
	if _, err := topics.Apply(ctx, adm, cat, false); err != nil {
		t.Fatal(err)
	}
	specs, err := rules.LoadWorkbook("../../rules/examples/rtm-rules.xlsx")
	if err != nil {
		t.Fatal(err)
	}
	txn := testkit.Client(t, b.Addr(), kgo.TransactionalID("simulate-test"))
	if _, err := rules.Publish(ctx, txn, specs, rules.PublishMeta{Author: "test"}); err != nil {
		t.Fatal(err)
	}
	inForce, err := rules.CompileSet(specs)
	if err != nil {
		t.Fatal(err)
	}

	cfg := pipeline.Config{Brokers: []string{b.Addr()}, Catalogue: cat, DataDir: t.TempDir(), Rules: stage.Fixed{Set: inForce}, Log: testkit.Logger(t)}
	built := map[string]*pipeline.Stage{}
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(context.Background())
	t.Cleanup(func() { stop(); wg.Wait() })
	for _, name := range []string{memberstate.Group, campaign.Group, audience.Group, filter.Group, channel.Group, timing.Group} {
		s, err := pipeline.Build(name, cfg)
		if err != nil {
			t.Fatal(err)
		}
		built[name] = s
		wg.Go(func() {
			if err := s.Run(runCtx); err != nil {
				t.Errorf("stage %s: %v", name, err)
			}
		})
	}

	// 24 members favourite I1; every third lives in 大阪府. They live where
	// it is about noon, so the timing rules in force (quiet hours
	// 22:00-08:00) let the offers out whenever the test runs. M01, M02 (東京都)
	// and M03 (大阪府) are debug users, M04 (東京都) and M06 (大阪府) opted
	// out of everything: the filter in force excludes them before the
	// candidate's new row is reached.
	var version int64
	produce := func(topic, key string, v []byte) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cdc := func(table, key string, keyCols map[string]any, row any) {
		t.Helper()
		version++
		rb, _ := json.Marshal(row)
		v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: topics.OpUpdate, Version: version, Key: keyCols, Row: rb, TS: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		produce("cdc."+table, key, v)
	}
	var osaka, all []string
	tz := noonZone(time.Now())
	for i := range 24 {
		id := fmt.Sprintf("M%02d", i)
		row := topics.MemberRow{MemberID: id, Email: id + "@example.jp", MailOptIn: true, Status: "active", Timezone: tz, Prefecture: "東京都"}
		if i%3 == 0 {
			row.Prefecture = "大阪府"
			osaka = append(osaka, id)
		}
		switch i {
		case 1, 2, 3:
			row.IsDebug = true
		case 4, 6:
			row.MailOptIn = false
		}
		all = append(all, id)
		cdc("members", id, map[string]any{"member_id": id}, row)
		cdc("favorites", id, map[string]any{"member_id": id, "item_id": "I1"}, topics.FavoriteRow{MemberID: id, ItemID: "I1", CreatedAt: time.Now().UTC()})
	}
	waitCopies(t, built, len(all))

	from := time.Now().Add(-time.Minute)
	ev := topics.Event{EventID: "items/I1/100/price_drop", Type: "price_drop", Source: topics.CDCItems, ItemID: "I1", Brand: "ナチュラルライフ",
		Category: "キッチン", OldPrice: 5000, NewPrice: 3000, DropPct: 40, Stock: 3, At: time.Now().UTC()}
	v, err := topics.EventCodec{}.Encode(&ev)
	if err != nil {
		t.Fatal(err)
	}
	produce(topics.Events, "I1", v)
	testkit.WaitCaughtUp(t, b.Addr(), nil, campaign.Group, audience.Group, filter.Group, channel.Group, timing.Group)

	// What the stages decided today: the offers timing let through (sent
	// now or held for quiet hours) are the slots of its ledgers.
	today := slotted(t, b.Addr(), "price-drop-big")
	wantToday := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return slices.Contains([]string{"M01", "M02", "M03", "M04", "M06"}, id) })
	if !slices.Equal(today, wantToday) {
		for _, tp := range []string{topics.Events, topics.AudienceRequests, topics.OffersCandidates, topics.OffersFiltered, topics.OffersRouted, topics.OffersReady, topics.OffersExcluded, topics.DLQ, topics.TableOf(timing.Group)} {
			recs := testkit.ReadCommitted(t, b.Addr(), tp)
			t.Logf("%s: %d records", tp, len(recs))
			for _, r := range recs {
				if tp == topics.DLQ {
					t.Logf("  %s", r.Value)
				}
			}
		}
		t.Fatalf("the stages let through %v, want %v", today, wantToday)
	}
	wantLost := slices.DeleteFunc(slices.Clone(osaka), func(id string) bool { return !slices.Contains(today, id) })

	// The stages stop (their tickers write to the loop topics), so that
	// whatever the topics' end offsets do next is the simulation's doing.
	stop()
	wg.Wait()
	candidate, err := rules.LoadWorkbook(writeFilterWorkbook(t))
	if err != nil {
		t.Fatal(err)
	}
	endsBefore, groupsBefore := endState(t, adm, cat)
	start := time.Now()
	rep, err := simulate.Run(ctx, cl, partitions, candidate, simulate.Options{From: from, Samples: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("simulate took %s", time.Since(start))
	endsAfter, groupsAfter := endState(t, adm, cat)
	for k, v := range endsAfter {
		if endsBefore[k] != v {
			t.Errorf("end offset of %s changed by the simulation: %d → %d", k, endsBefore[k], v)
		}
	}
	if len(endsBefore) != len(endsAfter) {
		t.Errorf("the simulation changed the partitions listed: %d → %d", len(endsBefore), len(endsAfter))
	}
	slices.Sort(groupsBefore)
	slices.Sort(groupsAfter)
	if !slices.Equal(groupsBefore, groupsAfter) {
		t.Errorf("consumer groups changed by the simulation: %v → %v", groupsBefore, groupsAfter)
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())
	if rep.Events != 1 || rep.Members != len(all) || len(rep.Campaigns) != 1 {
		t.Fatalf("report of %d events, %d members, %d campaigns; want 1, %d, 1", rep.Events, rep.Members, len(rep.Campaigns), len(all))
	}
	c := rep.Campaigns[0]
	var lost []string
	for _, s := range c.LostBy {
		lost = append(lost, s.MemberID)
		if s.Why.Stage != filter.Group || s.Why.Row != 12 || s.Why.Rule != "大阪は対象外" || s.Why.Reason != "大阪府は対象外" {
			t.Errorf("%s lost the message by %+v, want the filter's row 12 大阪は対象外", s.MemberID, s.Why)
		}
	}
	if !slices.Equal(lost, wantLost) || c.Lost != len(wantLost) || c.Gained != 0 || len(c.GainedBy) != 0 {
		t.Errorf("lost %v (%d), gained %d; want lost exactly %v, gained 0", lost, c.Lost, c.Gained, wantLost)
	}
	if want := (simulate.Count{Before: len(today), After: len(today) - len(wantLost)}); c.Reach != want || c.Messages != want {
		t.Errorf("reach %+v, messages %+v; want %+v", c.Reach, c.Messages, want)
	}
	if c.Offers != (simulate.Count{Before: len(all), After: len(all)}) {
		t.Errorf("offers %+v, want %d on both sides", c.Offers, len(all))
	}
	var osakaRow *simulate.Exclusion
	for i, e := range c.Exclusions {
		if e.Rule == "大阪は対象外" {
			osakaRow = &c.Exclusions[i]
		}
	}
	if osakaRow == nil || osakaRow.Count != (simulate.Count{Before: 0, After: len(wantLost)}) || osakaRow.Table != "member-filters" {
		t.Errorf("exclusions %+v lack member-filters 大阪は対象外 0 → %d", c.Exclusions, len(wantLost))
	}
	for _, want := range []string{"members who lose the message (" + fmt.Sprint(len(wantLost)) + ")", "changed member-filters"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q", want)
		}
	}
}

// waitCopies waits until member-state's table reached the stages that
// keep a copy: audience's index lists n favouriters of I1 and filter's copy
// has n rows.
func waitCopies(t *testing.T, built map[string]*pipeline.Stage, n int) {
	t.Helper()
	testkit.Eventually(t, time.Minute, fmt.Sprintf("%d members in audience's index and filter's copy", n), func() bool {
		favs, rows := 0, 0
		for p := range int32(partitions) {
			st := built[audience.Group].Env.Registry.Store(string(member.Table), p)
			fst := built[filter.Group].Env.Registry.Store(string(member.Table), p)
			if st == nil || fst == nil {
				return false
			}
			err := st.Lookup(member.FavoritesIndex, "I1", func(string) error { favs++; return nil })
			if errors.Is(err, state.ErrIndexNotReady) {
				return false
			}
			if err != nil {
				t.Fatal(err)
			}
			it, err := fst.Iterator()
			if err != nil {
				return false
			}
			for it.Next() {
				rows++
			}
			it.Release()
		}
		return favs == n && rows == n
	})
}

// slotted returns the members, sorted, whose timing ledger holds a slot
// for campaign: the offers the timing stage let through.
func slotted(t *testing.T, addr, campaign string) []string {
	t.Helper()
	last := map[string][]byte{}
	for _, r := range testkit.ReadCommitted(t, addr, topics.TableOf(timing.Group)) {
		last[string(r.Key)] = r.Value
	}
	var out []string
	for id, v := range last {
		var l timing.Ledger
		if err := json.Unmarshal(v, &l); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(l.Slots, func(s timing.Slot) bool { return s.CampaignID == campaign }) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// noonZone is a time zone (Etc/GMT±N) whose clock shows 11:00-12:59 at now.
func noonZone(now time.Time) string {
	k := (12 - now.UTC().Hour() + 24) % 24 // hours east of UTC
	if k > 12 {
		k -= 24
	}
	switch {
	case k > 0:
		return fmt.Sprintf("Etc/GMT-%d", k) // POSIX sign: GMT-9 is 9 hours east
	case k < 0:
		return fmt.Sprintf("Etc/GMT+%d", -k)
	}
	return "Etc/GMT"
}

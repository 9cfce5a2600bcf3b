package timing

import (
	"fmt"
	"testing"
	"time"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

func timingSet(t *testing.T, quiet string, day, week, campDay int) *rules.Set {
	t.Helper()
	spec := rules.TableSpec{Name: "timing", Kind: rules.KindTiming, HitPolicy: rules.HitFirst,
		Columns: []rules.Column{
			{Type: rules.ColAction, Template: "quiet_hours"}, {Type: rules.ColAction, Template: "cap_day"},
			{Type: rules.ColAction, Template: "cap_week"}, {Type: rules.ColAction, Template: "cap_campaign_day"},
		},
		Rows: []rules.Row{{Row: 5, Cells: []rules.Value{{V: quiet}, {V: float64(day)}, {V: float64(week)}, {V: float64(campDay)}}}},
	}
	tb, err := rules.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rules.NewSet(tb)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tokyoMember() *member.Profile {
	return &member.Profile{MemberID: "M1", Exists: true, Status: "active", Timezone: "Asia/Tokyo"}
}

// schedule schedules o for p as the stage does: with the snapshot the
// filter stage attached at now.
func schedule(l *Ledger, set *rules.Set, o *topics.Offer, p *member.Profile, now time.Time) Verdict {
	o.Member = p.Snapshot(now)
	return Schedule(l, set, o, now)
}

func offer(id, campaign, timing string) *topics.Offer {
	return &topics.Offer{OfferID: id, CampaignID: campaign, MemberID: "M1", Timing: timing}
}

// noon in Tokyo.
var noon = time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)

func TestCapsHoldUnderBurstsAndReplays(t *testing.T) {
	set := timingSet(t, "", 3, 10, 0)
	l := &Ledger{}
	passed := 0
	for i := range 10 {
		v := schedule(l, set, offer(fmt.Sprintf("o%d", i), fmt.Sprintf("c%d", i), TimingNow), tokyoMember(), noon)
		if !v.Dropped() {
			passed++
		} else if v.Decision.Reason != ReasonCapDay {
			t.Fatalf("offer %d dropped for %q, want cap_day", i, v.Decision.Reason)
		}
	}
	if passed != 3 {
		t.Fatalf("%d of 10 offers passed a day cap of 3", passed)
	}
	// Replays of a passed and a dropped offer decide nothing and take no slot.
	for _, id := range []string{"o0", "o9"} {
		if v := schedule(l, set, offer(id, "c", TimingNow), tokyoMember(), noon); !v.Duplicate {
			t.Fatalf("replayed %s was decided again: %+v", id, v)
		}
	}
	if len(l.Slots) != 3 {
		t.Fatalf("%d slots, want 3", len(l.Slots))
	}
	// A day later the day cap has room again; the week cap still counts.
	if v := schedule(l, set, offer("o10", "c", TimingNow), tokyoMember(), noon.Add(25*time.Hour)); v.Dropped() {
		t.Fatalf("next day dropped: %+v", v.Decision)
	}
}

func TestCampaignDayCap(t *testing.T) {
	set := timingSet(t, "", 0, 0, 1)
	l := &Ledger{}
	a := schedule(l, set, offer("o1", "sale", TimingNow), tokyoMember(), noon)
	b := schedule(l, set, offer("o2", "sale", TimingNow), tokyoMember(), noon)
	c := schedule(l, set, offer("o3", "other", TimingNow), tokyoMember(), noon)
	if a.Dropped() || !b.Dropped() || b.Decision.Reason != ReasonCapCampaignDay || c.Dropped() {
		t.Fatalf("verdicts %+v %+v %+v", a, b, c)
	}
}

func TestWhen(t *testing.T) {
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	at := func(h, m int) time.Time { return time.Date(2026, 11, 24, h, m, 0, 0, tokyo) }
	cases := []struct {
		name   string
		quiet  string
		timing string
		best   int // member's most active local hour, -1 for none
		now    time.Time
		want   time.Time
	}{
		{"now", "22:00-08:00", TimingNow, -1, at(12, 0), at(12, 0)},
		{"quiet hours move to their end", "22:00-08:00", TimingNow, -1, at(23, 30), at(8, 0).AddDate(0, 0, 1)},
		{"early morning quiet", "22:00-08:00", TimingNow, -1, at(6, 15), at(8, 0)},
		{"best hour later today", "", TimingBestHour, 20, at(12, 0), at(20, 0)},
		{"best hour tomorrow", "", TimingBestHour, 9, at(12, 0), at(9, 0).AddDate(0, 0, 1)},
		{"best hour now", "", TimingBestHour, 12, at(12, 30), at(12, 30)},
		{"best hour inside quiet hours", "22:00-08:00", TimingBestHour, 23, at(12, 0), at(8, 0).AddDate(0, 0, 1)},
		{"best hour unknown sends now", "", TimingBestHour, -1, at(12, 0), at(12, 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tokyoMember()
			if tc.best >= 0 {
				p.Activity[tc.best] = 5
			}
			v := schedule(&Ledger{}, timingSet(t, tc.quiet, 0, 0, 0), offer("o", "c", tc.timing), p, tc.now.UTC())
			if !v.SendAt.Equal(tc.want) {
				t.Fatalf("send at %v, want %v", v.SendAt.In(tokyo), tc.want)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	set := timingSet(t, "22:00-08:00", 0, 0, 0)
	o := offer("o", "c", TimingNow)
	o.ExpiresAt = noon.Add(-time.Minute)
	if v := schedule(&Ledger{}, set, o, tokyoMember(), noon); v.Decision.Reason != ReasonExpired {
		t.Fatalf("verdict %+v", v)
	}
	// Held past its expiry by quiet hours: dropped now rather than later.
	late := noon.Add(11 * time.Hour) // 23:00 in Tokyo
	o = offer("o2", "c", TimingNow)
	o.ExpiresAt = late.Add(time.Hour)
	if v := schedule(&Ledger{}, set, o, tokyoMember(), late); v.Decision.Reason != ReasonExpired {
		t.Fatalf("verdict %+v", v)
	}
}

func TestHeldOffersReleaseInDueOrder(t *testing.T) {
	l := &Ledger{}
	for i, d := range []int{30, 10, 20} {
		l.hold(topics.Offer{OfferID: fmt.Sprint(i)}, noon.Add(time.Duration(d)*time.Minute))
	}
	due := l.due(noon.Add(20 * time.Minute))
	if len(due) != 2 || due[0].Offer.OfferID != "1" || due[1].Offer.OfferID != "2" || len(l.Held) != 1 {
		t.Fatalf("due %+v, held %+v", due, l.Held)
	}
	if again := l.due(noon.Add(20 * time.Minute)); len(again) != 0 {
		t.Fatal("released twice")
	}
}

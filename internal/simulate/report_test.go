package simulate

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

var t0 = time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)

func fired(campaign string) topics.Decision {
	return topics.Decision{Stage: "campaign", Table: "campaigns", Row: 9, Rule: "大幅値下げ", Outcome: "fire"}
}

func offer(member string) *topics.Offer {
	return &topics.Offer{OfferID: "of-" + member, CampaignID: "c1", MemberID: member, Decisions: []topics.Decision{fired("c1")}}
}

func sent(ch string, at time.Time) *Outcome { return &Outcome{Sent: true, Channel: ch, SendAt: at} }

func stopped(stage, table string, row int, rule, reason string) *Outcome {
	return &Outcome{Stopped: &topics.Decision{Stage: stage, Table: table, Row: row, Rule: rule, Outcome: "exclude", Reason: reason}}
}

// TestCompareClassifiesEachOffer: one offer under the rules in force and
// under the candidate (nil: no campaign row fired it) is gained, lost,
// rerouted, rescheduled or unchanged, and the rule that made the
// difference is the one the report names.
func TestCompareClassifiesEachOffer(t *testing.T) {
	osaka := stopped("filter", "member-filters@v2", 12, "大阪は対象外", "大阪府は対象外")
	debug := stopped("filter", "member-filters@v1", 9, "デバッグ会員", "debug user")
	capped := stopped("timing", "timing@v1", 10, "既定", "cap_day")
	for _, tc := range []struct {
		name          string
		before, after *Outcome
		want          string // lost, gained, rerouted, rescheduled or ""
		why           topics.Decision
	}{
		{"sent under both, same channel and time", sent("LINE", t0), sent("LINE", t0), "", topics.Decision{}},
		{"another channel", sent("LINE", t0), sent("MAIL", t0), "rerouted", topics.Decision{}},
		{"another time", sent("LINE", t0), sent("LINE", t0.Add(9*time.Hour)), "rescheduled", topics.Decision{}},
		{"excluded by the candidate's new filter row", sent("LINE", t0), osaka, "lost", *osaka.Stopped},
		{"no longer excluded", debug, sent("MAIL", t0), "gained", *debug.Stopped},
		{"over a cap only under the candidate", sent("MAIL", t0), capped, "lost", *capped.Stopped},
		{"the campaign row no longer fires", sent("MAIL", t0), nil, "lost", fired("c1")},
		{"a campaign row fires only under the candidate", nil, sent("MAIL", t0), "gained", fired("c1")},
		{"excluded under both", debug, osaka, "", topics.Decision{}},
		{"excluded, and not fired under the candidate", debug, nil, "", topics.Decision{}},
		{"a duplicate under the candidate", sent("LINE", t0), &Outcome{Duplicate: true}, "lost",
			topics.Decision{Stage: "timing", Outcome: "duplicate", Reason: "already decided in the window"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAggregate(-1)
			var results [2][]offerOutcome
			for i, o := range []*Outcome{tc.before, tc.after} {
				if o != nil {
					results[i] = append(results[i], offerOutcome{offer: offer("M1"), outcome: *o})
				}
			}
			a.add(&job{event: &topics.Event{EventID: "e1", At: t0}}, results)
			c := a.report()[0]
			got := map[string]int{"lost": c.Lost, "gained": c.Gained, "rerouted": c.Rerouted, "rescheduled": c.Rescheduled}
			for k, n := range got {
				if want := map[bool]int{true: 1}[k == tc.want]; n != want {
					t.Errorf("%s = %d, want %d", k, n, want)
				}
			}
			samples := append(slices.Clone(c.LostBy), c.GainedBy...)
			switch {
			case tc.want == "lost" || tc.want == "gained":
				if len(samples) != 1 || samples[0].MemberID != "M1" || samples[0].EventID != "e1" || samples[0].Why != tc.why {
					t.Errorf("samples %+v, want M1 because of %+v", samples, tc.why)
				}
			case len(samples) > 0:
				t.Errorf("samples %+v for an offer that neither gains nor loses", samples)
			}
		})
	}
}

// TestAggregateCounts: reach counts members once however many messages
// they get; exclusions line up by rule name when a changed table moved
// the rule to another row; caps hit and sends by hour are counted per set.
func TestAggregateCounts(t *testing.T) {
	a := newAggregate(-1)
	job := &job{event: &topics.Event{EventID: "e1", At: t0}}
	oo := func(member string, o *Outcome) offerOutcome {
		of := offer(member)
		of.OfferID += "-" + fmt.Sprint(len(member)) // distinct offers of one member
		return offerOutcome{offer: of, outcome: *o}
	}
	twice := func(m string) offerOutcome { o := oo(m+"x", sent("LINE", t0)); o.offer.MemberID = m; return o }
	a.add(job, [2][]offerOutcome{
		{oo("M1", sent("LINE", t0)), twice("M1"), oo("M2", sent("MAIL", t0.Add(time.Hour))), oo("M3", stopped("filter", "member-filters@v1", 9, "デバッグ会員", "debug user")),
			oo("M4", stopped("timing", "timing@v1", 10, "既定", "cap_day"))},
		{oo("M1", sent("LINE", t0)), twice("M1"), oo("M2", stopped("filter", "member-filters@v2", 13, "大阪は対象外", "大阪府は対象外")),
			oo("M3", stopped("filter", "member-filters@v2", 8, "デバッグ会員", "debug user")), oo("M4", stopped("timing", "timing@v1", 10, "既定", "cap_day"))},
	})
	c := a.report()[0]
	if c.Reach != (Count{2, 1}) || c.Messages != (Count{3, 2}) || c.Offers != (Count{5, 5}) {
		t.Errorf("reach %v, messages %v, offers %v; want 2 → 1, 3 → 2, 5", c.Reach, c.Messages, c.Offers)
	}
	want := []Exclusion{
		{Stage: "filter", Table: "member-filters", Row: 8, Rule: "デバッグ会員", Reason: "debug user", Count: Count{1, 1}},
		{Stage: "filter", Table: "member-filters", Row: 13, Rule: "大阪は対象外", Reason: "大阪府は対象外", Count: Count{0, 1}},
		{Stage: "timing", Table: "timing", Row: 10, Rule: "既定", Reason: "cap_day", Count: Count{1, 1}},
	}
	if !slices.Equal(c.Exclusions, want) {
		t.Errorf("exclusions\n%+v, want\n%+v", c.Exclusions, want)
	}
	if c.Caps["cap_day"] != (Count{1, 1}) || len(c.Caps) != 1 {
		t.Errorf("caps %v", c.Caps)
	}
	if c.Channels["LINE"] != (Count{2, 2}) || c.Channels["MAIL"] != (Count{1, 0}) {
		t.Errorf("channels %v", c.Channels)
	}
	wantHours := []Hour{{At: t0, Count: Count{2, 2}}, {At: t0.Add(time.Hour), Count: Count{1, 0}}}
	if !slices.Equal(c.Hours, wantHours) {
		t.Errorf("hours %+v, want %+v", c.Hours, wantHours)
	}
	var b bytes.Buffer
	r := &Report{Campaigns: []*Campaign{c}}
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"reach      2 → 1 (-1) members; messages 3 → 2 (-1); offers 5",
		"M2  e1  excluded by filter member-filters row 13 \"大阪は対象外\": 大阪府は対象外",
		"caps hit   cap_day 1;",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("text lacks %q:\n%s", line, b.String())
		}
	}
}

// TestMergeIsIndependentOfTheSplit: shards own disjoint members; merged,
// their counts add up and the samples listed are the first in member
// order, whichever shard found them and however few are kept.
func TestMergeIsIndependentOfTheSplit(t *testing.T) {
	job := &job{event: &topics.Event{EventID: "e1", At: t0}}
	lose := func(m string) [2][]offerOutcome {
		return [2][]offerOutcome{{{offer: offer(m), outcome: *sent("LINE", t0)}}, {{offer: offer(m), outcome: *stopped("filter", "f@1", 3, "r", "x")}}}
	}
	for _, tc := range []struct {
		name   string
		shards [][]string
	}{
		{"one shard", [][]string{{"M5", "M1", "M9", "M3", "M7", "M2"}}},
		{"two shards", [][]string{{"M5", "M9", "M7"}, {"M1", "M3", "M2"}}},
		{"three shards, uneven", [][]string{{"M9"}, {"M7", "M5", "M3", "M2"}, {"M1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := newAggregate(3)
			for _, members := range tc.shards {
				sh := newAggregate(3)
				for _, m := range members {
					sh.add(job, lose(m))
				}
				out.merge(sh)
			}
			c := out.report()[0]
			var got []string
			for _, s := range c.LostBy {
				got = append(got, s.MemberID)
			}
			if c.Lost != 6 || c.Reach != (Count{6, 0}) || !slices.Equal(got, []string{"M1", "M2", "M3"}) {
				t.Errorf("lost %d, reach %v, samples %v; want 6, 6 → 0, [M1 M2 M3]", c.Lost, c.Reach, got)
			}
		})
	}
}

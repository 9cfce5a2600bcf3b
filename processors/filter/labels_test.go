package filter

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// TestExclusionLabelsAreBounded: whatever reason text marketers write,
// an exclusion is labelled by the filter table and the rule's row; the
// stage's own reasons keep their names; a rule error's message is dropped.
func TestExclusionLabelsAreBounded(t *testing.T) {
	tb, err := rules.Compile(rules.TableSpec{Name: "member-filters", Kind: rules.KindFilter, Sheet: "Filters",
		Columns: []rules.Column{
			{Type: rules.ColCondition, Template: "member.prefecture == $param", Ref: "B5"},
			{Type: rules.ColAction, Template: "exclude", Ref: "C5"},
			{Type: rules.ColAction, Template: "reason", Ref: "D5"},
		},
		Rows: []rules.Row{
			{Row: 7, Cells: []rules.Value{{V: "大阪府"}, {V: true}, {V: "大阪のお客様には 11/24 のセールを送らない (担当: 田中)"}}},
			{Row: 8, Cells: []rules.Value{{V: "京都府"}, {V: true}, {V: "another free text reason"}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.NewSet(tb)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	active := func(pref string) *member.Profile {
		return &member.Profile{MemberID: "M1", Exists: true, Status: "active", Prefecture: pref}
	}
	o := &topics.Offer{OfferID: "of-1", CampaignID: "セール 11/24 大阪", MemberID: "M1"}
	for _, tc := range []struct {
		name string
		p    *member.Profile
		want []string
	}{
		{"rule with free-text reason", active("大阪府"), []string{ReasonRule, "member-filters", "7"}},
		{"another rule", active("京都府"), []string{ReasonRule, "member-filters", "8"}},
		{"unknown member", nil, []string{ReasonUnknownMember, "", ""}},
		{"withdrawn", &member.Profile{MemberID: "M1", Exists: true, Status: "withdrawn"}, []string{ReasonWithdrawn, "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, snap := Decide(set, o, tc.p, now)
			if snap != nil {
				t.Fatalf("not excluded: %+v", d)
			}
			if got := ExclusionLabels(d); !slices.Equal(got, tc.want) {
				t.Errorf("labels = %q, want %q (decision %+v)", got, tc.want, d)
			}
		})
	}
	// a rule error's message never becomes a label
	d := topics.Decision{Stage: Group, Table: "member-filters", Outcome: "exclude", Reason: ReasonRuleError + ": division by zero at 大阪府"}
	if got, want := ExclusionLabels(d), []string{ReasonRuleError, "member-filters", ""}; !slices.Equal(got, want) {
		t.Errorf("rule error labels = %q, want %q", got, want)
	}
	// a thousand distinct reasons give as many label sets as rows
	seen := map[string]bool{}
	for i := range 1000 {
		d := topics.Decision{Stage: Group, Table: "member-filters@v" + fmt.Sprint(i%3), Rule: fmt.Sprint("rule ", i), Row: 7 + i%2,
			Outcome: "exclude", Reason: fmt.Sprint("reason ", i)}
		seen[fmt.Sprint(ExclusionLabels(d))] = true
	}
	if len(seen) != 2 {
		t.Errorf("1000 reasons over 2 rows (and 3 versions) gave %d label sets, want 2", len(seen))
	}
}

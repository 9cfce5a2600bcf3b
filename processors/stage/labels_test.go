package stage

import (
	"testing"

	"github.com/rtm-project/rtm/topics"
)

func TestRuleLabels(t *testing.T) {
	for _, tc := range []struct {
		d          topics.Decision
		table, row string
	}{
		{topics.Decision{Table: "member-filters@3f2a9c", Rule: "大阪のお客様", Row: 12, Reason: "free text"}, "member-filters", "12"},
		{topics.Decision{Table: "campaigns", Rule: "row 7", Row: 7}, "campaigns", "7"},
		{topics.Decision{Reason: "withdrawn"}, "", ""},
	} {
		if table, row := RuleLabels(tc.d); table != tc.table || row != tc.row {
			t.Errorf("RuleLabels(%+v) = %q, %q; want %q, %q", tc.d, table, row, tc.table, tc.row)
		}
	}
	if got := BoundedLabel("best", "fixed", "best"); got != "best" {
		t.Errorf("BoundedLabel kept nothing: %q", got)
	}
	if got := BoundedLabel("bandit-v2", "fixed", "best"); got != "other" {
		t.Errorf("BoundedLabel(unknown) = %q, want other", got)
	}
}

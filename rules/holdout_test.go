package rules

import (
	"errors"
	"strings"
	"testing"
)

// TestHoldoutOutput: a campaign row's holdout cell is a percentage from 0
// to 100, as a number or as text with or without a % sign; anything else
// is an invalid output at the cell.
func TestHoldoutOutput(t *testing.T) {
	cases := []struct {
		name string
		cell any // nil: no holdout column value
		want float64
		err  string
	}{
		{"empty is none", nil, 0, ""},
		{"a number", 10.0, 10, ""},
		{"a fraction", 2.5, 2.5, ""},
		{"all", 100.0, 100, ""},
		{"text with a percent sign", " 10% ", 10, ""},
		{"text number", "15", 15, ""},
		{"above 100", 100.5, 0, "Campaigns!B5: holdout: want a percentage from 0 to 100, cell holds number 100.5"},
		{"negative", -1.0, 0, "Campaigns!B5: holdout: want a percentage from 0 to 100, cell holds number -1"},
		{"words", "ten", 0, `Campaigns!B5: holdout: want a percentage from 0 to 100, cell holds text "ten"`},
		{"a boolean", true, 0, "Campaigns!B5: holdout: want a percentage from 0 to 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := TableSpec{Name: "campaigns", Kind: KindCampaign, HitPolicy: HitFirst, Sheet: "Campaigns",
				Columns: []Column{{Type: ColAction, Template: "campaign", Ref: "A3"}, {Type: ColAction, Template: "holdout", Ref: "B3"}},
				Rows:    []Row{{Row: 5, Cells: []Value{{V: "c"}, {V: tc.cell}}}}}
			tb, err := Compile(spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalidOutput) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			ds, err := tb.Decide(nil, &Facts{})
			if err != nil || len(ds) != 1 {
				t.Fatalf("decisions %v, %v", ds, err)
			}
			if got := ds[0].Campaign.Holdout; got != tc.want {
				t.Errorf("holdout %v, want %v", got, tc.want)
			}
		})
	}
}

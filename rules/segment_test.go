package rules

import (
	"errors"
	"strings"
	"testing"
)

// TestSegmentAudienceNeedsItsSegment: audience=segment must name a
// segment, and only it may; the error points at the audience cell.
func TestSegmentAudienceNeedsItsSegment(t *testing.T) {
	cases := []struct {
		name              string
		audience, segment string
		want              string // "" for no error
	}{
		{"segment with its name", "segment", "vip", ""},
		{"segment without a name", "segment", "", `Campaigns!B5: audience segment with segment ""`},
		{"a name without a segment audience", "favorites_of_item", "vip", `Campaigns!B5: audience favorites_of_item with segment "vip"`},
		{"neither", "member", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := TableSpec{Name: "campaigns", Kind: KindCampaign, HitPolicy: HitFirst, Sheet: "Campaigns",
				Columns: []Column{{Type: ColAction, Template: "campaign", Ref: "A3"}, {Type: ColAction, Template: "audience", Ref: "B3"},
					{Type: ColAction, Template: "segment", Ref: "C3"}, {Type: ColAction, Template: "template", Ref: "D3"}},
				Rows: []Row{{Row: 5, Cells: []Value{{V: "c"}, {V: tc.audience}, {V: tc.segment}, {V: "t"}}}}}
			_, err := Compile(spec)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidOutput)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

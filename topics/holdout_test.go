package topics

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func TestHeldOut(t *testing.T) {
	members := make([]string, 10000)
	for i := range members {
		members[i] = fmt.Sprintf("M%05d", i)
	}
	count := func(campaign string, pct float64) int {
		n := 0
		for _, m := range members {
			if HeldOut(m, campaign, pct) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		name     string
		pct      float64
		min, max int
	}{
		{"none by default", 0, 0, 0},
		{"negative is none", -5, 0, 0},
		{"NaN is none", math.NaN(), 0, 0},
		{"all", 100, 10000, 10000},
		{"above 100 is all", 150, 10000, 10000},
		{"10 percent", 10, 900, 1100},
		{"half", 50, 4800, 5200},
		{"a fraction of a percent", 0.5, 25, 75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := count("spring-sale", tc.pct); n < tc.min || n > tc.max {
				t.Errorf("holdout %v%% held out %d of %d, want %d to %d", tc.pct, n, len(members), tc.min, tc.max)
			}
		})
	}

	// Nested: a member held out at 5% is held out at 10%; and campaigns
	// draw independently (about 1% of members are in both 10% hold-outs).
	both := 0
	for _, m := range members {
		if HeldOut(m, "spring-sale", 5) && !HeldOut(m, "spring-sale", 10) {
			t.Fatalf("%s held out at 5%% but not at 10%%", m)
		}
		if HeldOut(m, "spring-sale", 10) != HeldOut(m, "spring-sale", 10) {
			t.Fatalf("%s: two answers for the same pair", m)
		}
		if HeldOut(m, "spring-sale", 10) && HeldOut(m, "price-drop", 10) {
			both++
		}
	}
	if both < 50 || both > 150 {
		t.Errorf("%d members in both campaigns' 10%% hold-outs, want about 100 (independent draws)", both)
	}
	// The assignment is a contract (replays, every stage and every release
	// must agree): the first hold-out members of a 10% campaign, pinned.
	var got []string
	for _, m := range members[:100] {
		if HeldOut(m, "spring-sale", 10) {
			got = append(got, m)
		}
	}
	want := []string{"M00005", "M00013", "M00022", "M00023", "M00024", "M00034", "M00041", "M00057", "M00059", "M00063",
		"M00066", "M00075", "M00082", "M00084", "M00088", "M00093"}
	if !slices.Equal(got, want) {
		t.Errorf("10%% hold-out of spring-sale among M00000-M00099: %v, want %v", got, want)
	}
}

func TestAssignHoldout(t *testing.T) {
	o := Offer{MemberID: "M1", CampaignID: "c", Holdout: 100}
	o.AssignHoldout()
	if !o.HeldOut {
		t.Error("holdout 100: not held out")
	}
	o.Holdout = 0
	o.AssignHoldout()
	if o.HeldOut {
		t.Error("holdout 0: held out")
	}
}

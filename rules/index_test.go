package rules_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/rules/rulestest"
)

// The index only prunes: for every member, the indexed table decides
// exactly what the same table evaluating every row decides, under both hit
// policies, and only string equality and `in` columns are indexed.
func TestIndexChangesNoDecision(t *testing.T) {
	collect := rulestest.FilterSpec(200)
	collect.HitPolicy = rules.HitCollect
	reversed := rulestest.FilterSpec(50)
	reversed.Columns[1].Template = "$param == member.status"
	// A column the index must leave alone: not an equality test.
	inequality := rulestest.FilterSpec(50)
	inequality.Columns[1].Template = "member.status != $param"
	cases := []struct {
		name    string
		spec    rules.TableSpec
		indexed []string
	}{
		{"first hit, 200 rows", rulestest.FilterSpec(200), []string{"member.status", "member.prefecture"}},
		{"collect, 200 rows", collect, []string{"member.status", "member.prefecture"}},
		{"$param on the left", reversed, []string{"member.status", "member.prefecture"}},
		{"inequality is not indexed", inequality, []string{"member.prefecture"}},
	}
	members := rulestest.Members(2000)
	// Members whose values no row names, and empty ones.
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 200 {
		m := members[r.IntN(len(members))]
		m.Prefecture, m.Status = []string{"", "Atlantis", "東京都"}[i%3], []string{"", "banned", "active"}[i%3]
		members = append(members, m)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := rules.Compile(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if got := rules.IndexedColumns(tb); !slices.Equal(got, tc.indexed) {
				t.Fatalf("indexed columns %v, want %v", got, tc.indexed)
			}
			plain := rules.Unindexed(tb)
			for i := range members {
				f := &rules.Facts{Member: members[i]}
				got, err := tb.Decide(nil, f)
				if err != nil {
					t.Fatal(err)
				}
				want, err := plain.Decide(nil, f)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("member %d: %d decisions indexed, %d without", i, len(got), len(want))
				}
				for j := range got {
					if got[j].Row != want[j].Row {
						t.Fatalf("member %d decision %d: row %d indexed, row %d without", i, j, got[j].Row, want[j].Row)
					}
				}
			}
		})
	}
}

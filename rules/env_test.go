package rules

import (
	"strings"
	"sync"
	"testing"
)

// reuseSpec is a filter table whose rows read a map (event.attrs), a
// slice (member.segments) and a string (member.prefecture): the three
// shapes of field a reused Facts can change between evaluations.
func reuseSpec() TableSpec {
	return TableSpec{Name: "reuse", Kind: KindFilter, Sheet: "Reuse",
		Columns: []Column{
			{Type: ColName, Ref: "B5"},
			{Type: ColCondition, Template: `event.attrs["utm"] == $param`, Ref: "C5"},
			{Type: ColCondition, Template: "$param in member.segments", Ref: "D5"},
			{Type: ColCondition, Template: "member.prefecture == $param", Ref: "E5"},
			{Type: ColAction, Template: "exclude", Ref: "F5"},
		},
		Rows: []Row{
			{Row: 7, Cells: []Value{{V: "mail"}, {V: "mail"}, {}, {}, {V: true}}},
			{Row: 8, Cells: []Value{{V: "vip"}, {}, {V: "vip"}, {}, {V: true}}},
			{Row: 9, Cells: []Value{{V: "osaka"}, {}, {}, {V: "大阪府"}, {V: true}}},
			{Row: 10, Cells: []Value{{V: "default"}, {}, {}, {}, {V: false}}},
		},
	}
}

// step changes the reused Facts and says which rule must decide.
type step struct {
	name   string
	change func(f *Facts)
	want   string
}

func reuseSteps() []step {
	return []step{
		{"zeroed", func(f *Facts) { *f = Facts{} }, "default"},
		{"new map with utm=mail", func(f *Facts) { f.Event.Attrs = map[string]string{"utm": "mail"} }, "mail"},
		{"another new map with utm=line", func(f *Facts) { f.Event.Attrs = map[string]string{"utm": "line"} }, "default"},
		{"the same map changed in place", func(f *Facts) { f.Event.Attrs["utm"] = "mail" }, "mail"},
		{"map dropped", func(f *Facts) { f.Event.Attrs = nil }, "default"},
		{"new slice with vip", func(f *Facts) { f.Member.Segments = []string{"new", "vip"} }, "vip"},
		{"slice element changed in place", func(f *Facts) { f.Member.Segments[1] = "regular" }, "default"},
		{"slice appended to", func(f *Facts) { f.Member.Segments = append(f.Member.Segments, "vip") }, "vip"},
		{"slice emptied", func(f *Facts) { f.Member.Segments = f.Member.Segments[:0] }, "default"},
		{"string set", func(f *Facts) { f.Member.Prefecture = strings.Clone("大阪府") }, "osaka"},
		{"string changed", func(f *Facts) { f.Member.Prefecture = "東京都" }, "default"},
		{"everything at once", func(f *Facts) {
			f.Event.Attrs = map[string]string{"utm": "mail"}
			f.Member.Segments = []string{"vip"}
			f.Member.Prefecture = "大阪府"
		}, "mail"},
		{"whole Facts overwritten", func(f *Facts) { *f = Facts{Member: Member{Prefecture: "大阪府"}} }, "osaka"},
	}
}

// TestReusedFactsSeeChanges keeps one Facts and changes a map, a slice and
// a string between evaluations, as the Facts doc comment invites: every
// evaluation must see the current content. Goroutines share the pooled
// environments, so under -race it also checks that they hand over cleanly.
func TestReusedFactsSeeChanges(t *testing.T) {
	tb, err := Compile(reuseSpec())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			var f Facts
			for round := range 50 {
				for _, s := range reuseSteps() {
					s.change(&f)
					d, ok, err := tb.Evaluate(&f)
					if err != nil || !ok {
						t.Errorf("goroutine %d round %d, %s: ok=%v err=%v", g, round, s.name, ok, err)
						return
					}
					if d.Rule != s.want {
						t.Errorf("goroutine %d round %d, %s: rule %s, want %s", g, round, s.name, d.Rule, s.want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestReusedFactsZeroAllocs: a reused Facts whose map, slice and string
// fields are replaced between evaluations evaluates without allocating.
// The conditions read the map and the slice whole (len): indexing a map
// fact or searching a list fact goes through expr's reflection, which
// boxes every value it reads (the documented exception, see Evaluate).
func TestReusedFactsZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	tb, err := Compile(TableSpec{Name: "reuse-allocs", Kind: KindFilter, Sheet: "Reuse",
		Columns: []Column{
			{Type: ColName, Ref: "B5"},
			{Type: ColCondition, Template: "len(event.attrs) >= $param", Ref: "C5"},
			{Type: ColCondition, Template: "len(member.segments) >= $param", Ref: "D5"},
			{Type: ColCondition, Template: "member.prefecture == $param", Ref: "E5"},
			{Type: ColAction, Template: "exclude", Ref: "F5"},
		},
		Rows: []Row{
			{Row: 7, Cells: []Value{{V: "attrs"}, {V: 2.0}, {}, {}, {V: true}}},
			{Row: 8, Cells: []Value{{V: "segments"}, {}, {V: 2.0}, {}, {V: true}}},
			{Row: 9, Cells: []Value{{V: "osaka"}, {}, {}, {V: "大阪府"}, {V: true}}},
			{Row: 10, Cells: []Value{{V: "default"}, {}, {}, {}, {V: false}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		attrs map[string]string
		segs  []string
		pref  string
		want  string
	}
	states := []state{
		{map[string]string{"utm": "mail", "cart": "c1"}, nil, "東京都", "attrs"},
		{map[string]string{"utm": "mail"}, []string{"vip", "new"}, "東京都", "segments"},
		{map[string]string{"utm": "mail"}, []string{"vip"}, "大阪府", "osaka"},
		{nil, nil, "東京都", "default"},
	}
	f := &Facts{}
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		s := states[i%len(states)]
		f.Event.Attrs, f.Member.Segments, f.Member.Prefecture = s.attrs, s.segs, s.pref
		d, ok, err := tb.Evaluate(f)
		if err != nil || !ok || d.Rule != s.want {
			t.Fatalf("step %d: rule %s, want %s (ok=%v err=%v)", i, d.Rule, s.want, ok, err)
		}
		i++
	})
	if allocs != 0 {
		t.Errorf("Evaluate allocates %v times per run, want 0", allocs)
	}
}

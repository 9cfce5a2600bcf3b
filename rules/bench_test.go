package rules_test

import (
	"testing"

	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/rules/rulestest"
)

func benchTable(b testing.TB) (*rules.Table, []rules.Member) {
	b.Helper()
	tb, err := rules.Compile(rulestest.FilterSpec(200))
	if err != nil {
		b.Fatal(err)
	}
	return tb, rulestest.Members(1024)
}

// TestBenchTableShape checks that the benchmark does what it claims: most
// members fall through many rows.
func TestBenchTableShape(t *testing.T) {
	tb, members := benchTable(t)
	sum, fallThrough := 0, 0
	for i := range members {
		d, ok, err := tb.Evaluate(&rules.Facts{Member: members[i]})
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		sum += d.Row - 7
		if d.Rule == "default" {
			fallThrough++
		}
	}
	t.Logf("average matching row index %.1f of 200; %d of %d members reach the catch-all", float64(sum)/float64(len(members)), fallThrough, len(members))
	if sum/len(members) < 50 {
		t.Errorf("members match too early (average row %d)", sum/len(members))
	}
}

// BenchmarkFilterFirstHit evaluates a 200-row, 4-condition first-hit filter
// table against varied members, overwriting one Facts per goroutine as a
// stage does.
func BenchmarkFilterFirstHit(b *testing.B) {
	tb, members := benchTable(b)
	var f rules.Facts
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f.Member = members[i%len(members)]
		if _, _, err := tb.Evaluate(&f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFilterFirstHitParallel is the same across goroutines: Tables
// are shared, evaluators are pooled.
func BenchmarkFilterFirstHitParallel(b *testing.B) {
	tb, members := benchTable(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var f rules.Facts
		i := 0
		for pb.Next() {
			f.Member = members[i%len(members)]
			i++
			if _, _, err := tb.Evaluate(&f); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkFilterNewFacts allocates a Facts per message, which costs the
// allocation plus rebinding the environment.
func BenchmarkFilterNewFacts(b *testing.B) {
	tb, members := benchTable(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f := &rules.Facts{Member: members[i%len(members)]}
		if _, _, err := tb.Evaluate(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompile200 measures compiling the table, which every stage does
// when a new version arrives on the rules topic.
func BenchmarkCompile200(b *testing.B) {
	spec := rulestest.FilterSpec(200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rules.Compile(spec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReusedFactsChangingFields keeps one Facts and replaces a map, a
// slice and a string in it before every evaluation, against a table that
// reads all three (through len for the map and the slice, which does not
// box): rebinding every read field per evaluation keeps it at 0 allocs/op.
func BenchmarkReusedFactsChangingFields(b *testing.B) {
	tb, err := rules.Compile(rules.TableSpec{Name: "reuse", Kind: rules.KindFilter, Sheet: "Bench",
		Columns: []rules.Column{
			{Type: rules.ColCondition, Template: "len(event.attrs) >= $param", Ref: "B5"},
			{Type: rules.ColCondition, Template: "len(member.segments) >= $param", Ref: "C5"},
			{Type: rules.ColCondition, Template: "member.prefecture == $param", Ref: "D5"},
			{Type: rules.ColAction, Template: "exclude", Ref: "E5"},
		},
		Rows: []rules.Row{
			{Row: 7, Cells: []rules.Value{{V: 2.0}, {}, {}, {V: true}}},
			{Row: 8, Cells: []rules.Value{{}, {V: 2.0}, {}, {V: true}}},
			{Row: 9, Cells: []rules.Value{{}, {}, {V: "大阪府"}, {V: true}}},
			{Row: 10, Cells: []rules.Value{{}, {}, {}, {V: false}}},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	attrs := []map[string]string{{"utm": "mail", "cart": "c1"}, {"utm": "line"}}
	segs := [][]string{{"vip", "new"}, {"vip"}}
	prefs := []string{"大阪府", "東京都"}
	var f rules.Facts
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.Event.Attrs, f.Member.Segments, f.Member.Prefecture = attrs[i%2], segs[(i/2)%2], prefs[(i/4)%2]
		if _, _, err := tb.Evaluate(&f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderExampleMail renders the example workbook's price-drop mail
// (subject, body and URL) for the sample facts: what render does per
// message, the template data included.
func BenchmarkRenderExampleMail(b *testing.B) {
	set, err := rules.LoadSet("examples/rtm-rules.xlsx")
	if err != nil {
		b.Fatal(err)
	}
	tp, ok := set.Template("price-drop", rules.ChannelMail)
	if !ok {
		b.Fatal("the example workbook has no price-drop mail")
	}
	f := rules.SampleFacts()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tp.Render(f); err != nil {
			b.Fatal(err)
		}
	}
}

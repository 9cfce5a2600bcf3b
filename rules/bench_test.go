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

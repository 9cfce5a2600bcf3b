package grule

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hyperjumptech/grule-rule-engine/ast"
	"github.com/hyperjumptech/grule-rule-engine/builder"
	"github.com/hyperjumptech/grule-rule-engine/engine"
	"github.com/hyperjumptech/grule-rule-engine/pkg"

	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/rules/rulestest"
)

const nRules = 200

// Result receives the decision in GRL.
type Result struct {
	Matched bool
	Exclude bool
	Reason  string
	Row     int64
}

// grl expresses rulestest.FilterRules as GRL: salience gives first-hit
// order (row 0 highest), and Complete() stops the engine after the first
// rule fires, which is what first-hit means.
func grl(frs []rulestest.FilterRule) string {
	var b strings.Builder
	for i, fr := range frs {
		when := "true"
		if fr.Status != "" {
			var prefs []string
			for _, p := range fr.Prefectures {
				prefs = append(prefs, fmt.Sprintf("M.Prefecture == %q", p))
			}
			when = fmt.Sprintf("M.Status == %q && M.Age >= %d && (%s) && M.OrdersCount < %d",
				fr.Status, fr.MinAge, strings.Join(prefs, " || "), fr.MaxOrders)
		}
		fmt.Fprintf(&b, "rule R%03d \"%s\" salience %d {\n when\n  %s\n then\n  R.Matched = true;\n  R.Exclude = %v;\n  R.Reason = %q;\n  R.Row = %d;\n  Complete();\n}\n",
			i, fr.Name, len(frs)-i, when, fr.Exclude, fr.Reason, 7+i)
	}
	return b.String()
}

func gruleLibrary(tb testing.TB) *ast.KnowledgeLibrary {
	tb.Helper()
	lib := ast.NewKnowledgeLibrary()
	if err := builder.NewRuleBuilder(lib).BuildRuleFromResource("filter", "1", pkg.NewBytesResource([]byte(grl(rulestest.FilterRules(nRules))))); err != nil {
		tb.Fatal(err)
	}
	return lib
}

func gruleEval(tb testing.TB, eng *engine.GruleEngine, kb *ast.KnowledgeBase, m *rules.Member) Result {
	var r Result
	dc := ast.NewDataContext()
	if err := dc.Add("M", m); err != nil {
		tb.Fatal(err)
	}
	if err := dc.Add("R", &r); err != nil {
		tb.Fatal(err)
	}
	if err := eng.Execute(dc, kb); err != nil {
		tb.Fatal(err)
	}
	return r
}

// TestSameDecisions proves the two engines run the same table.
func TestSameDecisions(t *testing.T) {
	tb, err := rules.Compile(rulestest.FilterSpec(nRules))
	if err != nil {
		t.Fatal(err)
	}
	kb, err := gruleLibrary(t).NewKnowledgeBaseInstance("filter", "1")
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.NewGruleEngine()
	members := rulestest.Members(256)
	for i := range members {
		d, ok, err := tb.Evaluate(&rules.Facts{Member: members[i]})
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		g := gruleEval(t, eng, kb, &members[i])
		if !g.Matched || int(g.Row) != d.Row || g.Reason != d.Filter.Reason || g.Exclude != d.Filter.Exclude {
			t.Fatalf("member %d: rtm row %d %q, grule %+v", i, d.Row, d.Filter.Reason, g)
		}
	}
}

func BenchmarkRTM(b *testing.B) {
	tb, err := rules.Compile(rulestest.FilterSpec(nRules))
	if err != nil {
		b.Fatal(err)
	}
	members := rulestest.Members(1024)
	var f rules.Facts
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.Member = members[i%len(members)]
		if _, _, err := tb.Evaluate(&f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGruleReusedKB reuses one knowledge-base instance (Execute resets
// it), grule's fastest single-goroutine use.
func BenchmarkGruleReusedKB(b *testing.B) {
	kb, err := gruleLibrary(b).NewKnowledgeBaseInstance("filter", "1")
	if err != nil {
		b.Fatal(err)
	}
	eng := engine.NewGruleEngine()
	members := rulestest.Members(1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		gruleEval(b, eng, kb, &members[i%len(members)])
	}
}

// BenchmarkGruleInstancePerEval takes a fresh knowledge-base instance per
// evaluation, grule's documented way to run concurrently.
func BenchmarkGruleInstancePerEval(b *testing.B) {
	lib := gruleLibrary(b)
	eng := engine.NewGruleEngine()
	members := rulestest.Members(1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		kb, err := lib.NewKnowledgeBaseInstance("filter", "1")
		if err != nil {
			b.Fatal(err)
		}
		gruleEval(b, eng, kb, &members[i%len(members)])
	}
}

package rules

import (
	"errors"
	"testing"
)

// FuzzCompileTemplate fuzzes the condition-template and cell-value
// compiler: whatever marketers type, Compile must return a table or cell
// errors, never panic, and a compiled table must evaluate without panics.
func FuzzCompileTemplate(f *testing.F) {
	seeds := []struct {
		tmpl, text string
		num        float64
		typ        uint8
	}{
		{"event.type == $param", "price_drop", 0, 0},
		{"event.drop_pct >= $param", "", 20, 1},
		{"member.prefecture in $param", "東京都,大阪府", 0, 0},
		{"member.age in $param", "20,30", 0, 0},
		{"$param in member.segments", "vip", 0, 0},
		{"member.is_debug == $param", "", 0, 2},
		{"(member.mail_opt_in or member.line_opt_in) == $param", "", 0, 3},
		{"event.attrs[\"utm\"] == $param", "line", 0, 0},
		{"len(member.segments) > $param && member.status != 'withdrawn'", "", 2, 1},
		{"event.drop_pc >= $param", "", 3, 1},
		{"$env", "x", 0, 0},
		{"member", "x", 0, 0},
		{"event.type == == $param", "x", 0, 0},
		{"member.age / $param > 1", "", 0, 1},
		{"all(member.segments, # startsWith $param)", "v", 0, 0},
		{"let x = $param; x == member.email", "a@b", 0, 0},
	}
	for _, s := range seeds {
		f.Add(s.tmpl, s.text, s.num, s.typ, "exclude")
	}
	f.Fuzz(func(t *testing.T, tmpl, text string, num float64, typ uint8, action string) {
		var v Value
		switch typ % 4 {
		case 0:
			v.V = text
		case 1:
			v.V = num
		case 2:
			v.V = true
		case 3:
			v.V = false
		}
		spec := TableSpec{Name: "fuzz", Kind: KindFilter, Sheet: "Fuzz",
			Columns: []Column{{Type: ColCondition, Template: tmpl, Ref: "B5"}, {Type: ColAction, Template: action, Ref: "C5"}},
			Rows:    []Row{{Row: 7, Cells: []Value{v, {V: true}}}}}
		tb, err := Compile(spec)
		if err != nil {
			var es *Errors
			if !errors.As(err, &es) || len(es.List) == 0 {
				t.Fatalf("error is not *Errors: %#v", err)
			}
			for _, ce := range es.List {
				if ce.Sheet != "Fuzz" || ce.Msg == "" {
					t.Fatalf("cell error without location: %#v", ce)
				}
			}
			return
		}
		for _, facts := range []*Facts{SampleFacts(), {}} {
			_, _, _ = tb.Evaluate(facts) // runtime errors are fine; panics are not
		}
	})
}

package rules

import (
	"bytes"
	"errors"
	"fmt"
	"os"
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

// FuzzTemplate fuzzes template cells: whatever a marketer types, compiling
// returns the template or cell errors, never panics; a compiled template
// renders the sample facts and facts with many segments within its budget
// (or fails with an error), and never writes more than MaxTemplateOutput
// per field.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"{{.member.email}}様、{{.event.new_price | yen}}",
		"{{range .member.segments}}{{.}}{{end}}",
		"{{range 30000000}}{{end}}",
		"{{range $i, $s := .member.segments}}{{range $.member.segments}}{{$i}}{{end}}{{end}}",
		`{{define "a"}}{{template "a"}}{{end}}{{template "a"}}`,
		"{{with .event}}{{if gt .drop_pct 10.0}}{{pct .drop_pct}}{{else}}x{{end}}{{end}}",
		"{{range 3}}{{break}}{{end}}{{_rtm_tick nil}}",
		"{{$x := 1}}{{range $x}}{{$x = 2}}{{end}}",
		"{{printf \"%0100000d\" 1}}",
	} {
		f.Add(s, uint16(1))
	}
	f.Fuzz(func(t *testing.T, body string, segments uint16) {
		set, err := CompileSet([]TableSpec{mailTemplate("t", body)})
		if err != nil {
			var es *Errors
			if !errors.As(err, &es) || len(es.List) == 0 {
				t.Fatalf("error is not *Errors: %#v", err)
			}
			return
		}
		tp, ok := set.Template("t", ChannelMail)
		if !ok {
			return // an empty body compiles to no template
		}
		many := SampleFacts()
		many.Member.Segments = make([]string, int(segments)%2000)
		for i := range many.Member.Segments {
			many.Member.Segments[i] = "seg"
		}
		for _, facts := range []*Facts{SampleFacts(), many, {}} {
			out, err := tp.Render(facts)
			if err == nil && len(out.Body) > MaxTemplateOutput {
				t.Fatalf("rendered %d bytes, over MaxTemplateOutput", len(out.Body))
			}
		}
	})
}

// FuzzReadWorkbook fuzzes the workbook reader with mutations of a real
// workbook: it returns tables or errors, never panics.
func FuzzReadWorkbook(f *testing.F) {
	dir := f.TempDir()
	for i, sheets := range [][]sheetDef{
		{templateSheet("Templates", "templates", []any{"price-drop", "MAIL", "{{.event.brand}}"})},
		{table("Filters", "f", "filter", "", []string{"CONDITION", "ACTION"}, []string{"member.is_debug == $param", "exclude"}, []any{true, true})},
	} {
		b, err := os.ReadFile(writeBook(f, dir, fmt.Sprintf("seed%d.xlsx", i), sheets...))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := ReadWorkbook(bytes.NewReader(data), "fuzz.xlsx")
		if err != nil {
			var es *Errors
			if !errors.As(err, &es) || len(es.List) == 0 {
				t.Fatalf("error is not *Errors: %#v", err)
			}
			return
		}
		if _, err := CompileSet(specs); err != nil && !errors.Is(err, ErrDuplicateTemplate) {
			var es *Errors
			if !errors.As(err, &es) {
				t.Fatalf("tables read from a workbook do not compile: %v", err)
			}
		}
	})
}

package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

// sheetDef is a worksheet given as rows of cells starting at A1.
type sheetDef struct {
	name string
	rows [][]any
}

// table lays a decision table out the standard way: RuleTable (row 1),
// Kind (2), HitPolicy (3, blank if empty), COLUMNS (4), templates (5),
// labels (6), rules from row 7.
func table(sheet, name, kind, policy string, cols, templates []string, rules ...[]any) sheetDef {
	s := sheetDef{name: sheet}
	s.rows = append(s.rows, []any{"RuleTable", name}, []any{"Kind", kind})
	if policy != "" {
		s.rows = append(s.rows, []any{"HitPolicy", policy})
	} else {
		s.rows = append(s.rows, []any{})
	}
	s.rows = append(s.rows, prefixed("COLUMNS", cols), prefixed(nil, templates), prefixed(nil, cols))
	for _, r := range rules {
		s.rows = append(s.rows, append([]any{nil}, r...))
	}
	return s
}

func prefixed[T any](a any, xs []T) []any {
	out := []any{a}
	for _, x := range xs {
		out = append(out, x)
	}
	return out
}

// writeBook writes sheets to dir/name and returns the path.
func writeBook(t testing.TB, dir, name string, sheets ...sheetDef) string {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	for i, s := range sheets {
		if i == 0 {
			if err := f.SetSheetName("Sheet1", s.name); err != nil {
				t.Fatal(err)
			}
		} else if _, err := f.NewSheet(s.name); err != nil {
			t.Fatal(err)
		}
		for r, row := range s.rows {
			cell, _ := excelize.CoordinatesToCellName(1, r+1)
			if err := f.SetSheetRow(s.name, cell, &row); err != nil {
				t.Fatal(err)
			}
		}
	}
	path := filepath.Join(dir, name)
	if err := f.SaveAs(path); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	priceCols      = []string{"NAME", "CONDITION", "CONDITION", "ACTION", "ACTION"}
	priceTemplates = []string{"", "event.type == $param", "event.drop_pct >= $param", "campaign", "timing"}
)

func TestBrokenWorkbooks(t *testing.T) {
	huge := make([][]any, 10_200)
	for i := range huge {
		huge[i] = []any{fmt.Sprintf("r%d", i), "price_drop", i, "c", "now"}
	}
	tests := []struct {
		name   string
		sheets []sheetDef
		want   string
		is     error
	}{
		{
			name: "unknown field",
			sheets: []sheetDef{table("PriceDrop", "price", "campaign", "", priceCols,
				[]string{"", "event.type == $param", "event.drop_pc >= $param", "campaign", "timing"},
				[]any{"a", "price_drop", 20, "c1", "now"})},
			want: "rules.xlsx: PriceDrop!D5: unknown field event.drop_pc (did you mean event.drop_pct?)",
			is:   ErrUnknownField,
		},
		{
			name: "type mismatch, every error reported",
			sheets: []sheetDef{table("PriceDrop", "price", "campaign", "", priceCols, priceTemplates,
				[]any{"a", "price_drop", "abc", "c1", "now"},
				[]any{"b", 20, 20, "c2", "now"},
				[]any{"c", "price_drop", 10, "c3", "now"})},
			want: `rules.xlsx: PriceDrop!D7: type mismatch: condition "event.drop_pct >= $param" with text "abc": invalid operation: >= (mismatched types float64 and string)
rules.xlsx: PriceDrop!C8: type mismatch: condition "event.type == $param" with number 20: invalid operation: == (mismatched types string and int)`,
			is: ErrTypeMismatch,
		},
		{
			name: "template without $param",
			sheets: []sheetDef{table("PriceDrop", "price", "campaign", "", priceCols,
				[]string{"", "event.type == 'price_drop'", "event.drop_pct >= $param", "campaign", "timing"},
				[]any{"a", "x", 20, "c1", "now"})},
			want: `rules.xlsx: PriceDrop!C5: CONDITION template "event.type == 'price_drop'" has no $param: the cell value must go somewhere, such as event.type == $param`,
			is:   ErrParam,
		},
		{
			name: "syntax error",
			sheets: []sheetDef{table("PriceDrop", "price", "campaign", "", priceCols,
				[]string{"", "event.type == == $param", "event.drop_pct >= $param", "campaign", "timing"},
				[]any{"a", "x", 20, "c1", "now"})},
			want: `rules.xlsx: PriceDrop!C5: syntax error in "event.type == == $param": unexpected token Operator("==")`,
			is:   ErrSyntax,
		},
		{
			name: "unknown output and fact not available",
			sheets: []sheetDef{table("Channels", "ch", "channel", "", []string{"CONDITION", "ACTION"},
				[]string{"event.type == $param", "channel"},
				[]any{"x", "MAIL"})},
			want: `rules.xlsx: Channels!B5: event.type is not available in channel tables (facts: member, campaign)
rules.xlsx: Channels!C5: unknown output "channel" for channel tables (want channels, strategy)`,
		},
		{
			name: "invalid output values",
			sheets: []sheetDef{
				table("PriceDrop", "price", "campaign", "", []string{"CONDITION", "ACTION", "ACTION", "ACTION"},
					[]string{"event.type == $param", "campaign", "timing", "expires_after"},
					[]any{"price_drop", "c1", "sometimes", "6 hours"}),
				table("Channels", "ch", "channel", "", []string{"CONDITION", "ACTION"},
					[]string{"member.age < $param", "channels"},
					[]any{30, "LINE,FAX"}),
				table("Timing", "tm", "timing", "", []string{"CONDITION", "ACTION", "ACTION"},
					[]string{"campaign.id == $param", "quiet_hours", "cap_day"},
					[]any{"c1", "22時-8時", -1}),
			},
			want: `rules.xlsx: PriceDrop!D7: timing: want one of now, best_hour, cell holds text "sometimes"
rules.xlsx: PriceDrop!E7: expires_after: want a duration such as 6h, 90m or 2d, cell holds text "6 hours"
rules.xlsx: Channels!C7: channels: unknown channel "FAX" (want MAIL, LINE, PUSH, INAPP)
rules.xlsx: Timing!C7: quiet_hours: quiet_hours "22時-8時": want HH:MM-HH:MM such as 22:00-08:00
rules.xlsx: Timing!D7: cap_day: want a cap of 0 or more, cell holds number -1`,
			is: ErrInvalidOutput,
		},
		{
			name: "hold-out out of range or not a number",
			sheets: []sheetDef{
				table("Sale", "sale", "campaign", "", []string{"CONDITION", "ACTION", "ACTION"},
					[]string{"event.type == $param", "campaign", "holdout"},
					[]any{"price_drop", "c1", 150}),
				table("Restock", "restock", "campaign", "", []string{"CONDITION", "ACTION", "ACTION"},
					[]string{"event.type == $param", "campaign", "holdout"},
					[]any{"back_in_stock", "c2", "ten"}),
				table("Cart", "cart", "campaign", "", []string{"CONDITION", "ACTION", "ACTION"},
					[]string{"event.type == $param", "campaign", "holdout"},
					[]any{"cart_abandoned", "c3", -1}),
			},
			want: `rules.xlsx: Sale!D7: holdout: want a percentage from 0 to 100, cell holds number 150
rules.xlsx: Restock!D7: holdout: want a percentage from 0 to 100, cell holds text "ten"
rules.xlsx: Cart!D7: holdout: want a percentage from 0 to 100, cell holds number -1`,
			is: ErrInvalidOutput,
		},
		{
			name: "duplicate table name",
			sheets: []sheetDef{
				table("A", "same", "filter", "", []string{"CONDITION", "ACTION"}, []string{"member.is_debug == $param", "exclude"}, []any{true, true}),
				table("B", "same", "filter", "", []string{"CONDITION", "ACTION"}, []string{"member.is_debug == $param", "exclude"}, []any{true, true}),
			},
			want: "rules.xlsx: B!B1: duplicate table name same (also on sheet A)",
			is:   ErrDuplicateTable,
		},
		{
			name:   "missing COLUMNS row",
			sheets: []sheetDef{{name: "Filters", rows: [][]any{{"RuleTable", "f"}, {"Kind", "filter"}, {}, {"", "member.is_debug == $param"}}}},
			want:   "rules.xlsx: Filters!A1: missing COLUMNS row: add a row whose A cell is COLUMNS, followed by the template and label rows",
			is:     ErrMissingColumns,
		},
		{
			name: "unknown kind and hit policy",
			sheets: []sheetDef{table("Filters", "f", "filtre", "all", []string{"CONDITION", "ACTION"},
				[]string{"member.is_debug == $param", "exclude"}, []any{true, true})},
			want: `rules.xlsx: Filters!B2: unknown Kind "filtre" (want campaign, filter, channel, timing or template)
rules.xlsx: Filters!B3: unknown HitPolicy "all" (want first or collect)`,
			is: ErrUnknownKind,
		},
		{
			name: "empty rule table",
			sheets: []sheetDef{table("Filters", "f", "filter", "", []string{"CONDITION", "ACTION"},
				[]string{"member.is_debug == $param", "exclude"})},
			want: "rules.xlsx: Filters!B5: table f has no rules",
			is:   ErrEmptyTable,
		},
		{
			name: "campaign row without campaign",
			sheets: []sheetDef{
				table("PriceDrop", "price", "campaign", "", priceCols, priceTemplates,
					[]any{"a", "price_drop", 20, nil, "now"}),
				table("NoCol", "nocol", "campaign", "", []string{"CONDITION", "ACTION"},
					[]string{"event.type == $param", "priority"}, []any{"x", 1}),
			},
			want: `rules.xlsx: PriceDrop!E7: campaign is required: every campaign rule must name one
rules.xlsx: NoCol: campaign tables need an ACTION column for campaign`,
			is: ErrMissingOutput,
		},
		{
			name: "broken templates",
			sheets: []sheetDef{{name: "Templates", rows: [][]any{
				{"RuleTable", "templates"}, {"Kind", "template"}, {},
				{"COLUMNS", "id", "channel", "subject", "body"},
				{nil, "t1", "LINE", "", "こんにちは {{.member.email"},
				{nil, "t2", "MAIL", "{{.member.emial}}様", "本文"},
				{nil, "t3", "FAX", "", "本文"},
			}}},
			want: `rules.xlsx: Templates!E5: body: body:1: unclosed action
rules.xlsx: Templates!D6: subject: subject:1:9: executing "subject" at <.member.emial>: map has no entry for key "emial"
rules.xlsx: Templates!C7: channel: want one of MAIL, LINE, PUSH, INAPP, cell holds text "FAX"`,
			is: ErrTemplate,
		},
		{
			name: "template bombs",
			sheets: []sheetDef{{name: "Templates", rows: [][]any{
				{"RuleTable", "templates"}, {"Kind", "template"}, {},
				{"COLUMNS", "id", "channel", "subject", "body"},
				{nil, "t1", "MAIL", "", "{{range 30000000}}{{end}}"},
				{nil, "t2", "MAIL", "", "{{range 100}}{{range 100}}{{range 100}}{{end}}{{end}}{{end}}"},
				{nil, "t3", "MAIL", "", "{{range 5000}}{{$.member.email}}{{$.member.email}}{{end}}"},
				{nil, "t4", "MAIL", "", `{{define "a"}}x{{end}}{{template "a"}}`},
				{nil, "t5", "MAIL", "", `{{template "x"}}`},
				{nil, "t6", "MAIL", "{{range .member.segments}}{{.}} {{end}}", "{{range 3}}{{if true}}{{range 2}}ok{{end}}{{end}}{{end}}"},
			}}},
			want: `rules.xlsx: Templates!E5: body: body:1:8: template over budget: more than 10000 range iterations
rules.xlsx: Templates!E6: body: body:1:21: template over budget: more than 10000 range iterations
rules.xlsx: Templates!E7: body: template over budget: output larger than 65536 bytes
rules.xlsx: Templates!E8: body: define and block are not allowed in a template cell
rules.xlsx: Templates!E9: body: {{template "x"}} is not allowed in a template cell`,
			is: ErrTemplate,
		},
		{
			name:   "huge sheet",
			sheets: []sheetDef{table("Big", "big", "campaign", "", priceCols, priceTemplates, huge...)},
			want:   "rules.xlsx: Big: sheet has more than 10100 rows (a table holds at most 10000 rules)",
			is:     ErrTooLarge,
		},
		{
			name: "too many columns",
			sheets: []sheetDef{{name: "Wide", rows: [][]any{
				{"RuleTable", "wide"}, {"Kind", "filter"}, {},
				prefixed("COLUMNS", slicesRepeat("CONDITION", 150)),
			}}},
			want: "rules.xlsx: Wide!CX4: row has more than 100 columns",
			is:   ErrTooLarge,
		},
		{
			name: "notes sheets are ignored",
			sheets: []sheetDef{
				{name: "Notes", rows: [][]any{{"メモ", "このシートは無視されます"}}},
				table("Filters", "f", "filter", "", []string{"CONDITION", "ACTION"},
					[]string{"member.is_debug == $param", "exclude"}, []any{"yes", true}),
			},
			want: `rules.xlsx: Filters!B7: type mismatch: condition "member.is_debug == $param" with text "yes": invalid operation: == (mismatched types bool and string)`,
			is:   ErrTypeMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeBook(t, t.TempDir(), "rules.xlsx", tt.sheets...)
			_, err := LoadWorkbook(path)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", err, tt.want)
			}
			var es *Errors
			if !errors.As(err, &es) || len(es.List) != strings.Count(tt.want, "\n")+1 {
				t.Errorf("want *Errors with %d cell errors, got %#v", strings.Count(tt.want, "\n")+1, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) = false", tt.is)
			}
			var ce *CellError
			if !errors.As(err, &ce) || ce.File != "rules.xlsx" {
				t.Errorf("errors.As CellError: %#v", ce)
			}
		})
	}
}

func TestNotAWorkbook(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "rules.xlsx")
	if err := os.WriteFile(text, []byte("name,kind\nprice,campaign\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	csv := filepath.Join(dir, "rules.csv")
	if err := os.WriteFile(csv, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		text: "rules.xlsx: not an .xlsx workbook: zip: not a valid zip file",
		csv:  `rules.csv: not an .xlsx workbook: want an .xlsx file, got ".csv"`,
	} {
		_, err := LoadWorkbook(path)
		if err == nil || err.Error() != want {
			t.Errorf("LoadWorkbook(%s) = %v, want %s", filepath.Base(path), err, want)
		}
		if !errors.Is(err, ErrNotWorkbook) {
			t.Errorf("errors.Is(ErrNotWorkbook) = false for %v", err)
		}
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestTooManyRulesInSpec(t *testing.T) {
	rows := make([][]any, MaxRules+1)
	for i := range rows {
		rows[i] = []any{"r", "active", 1, true}
	}
	_, err := Compile(filterSpec(t, HitFirst, rows))
	if want := "F: 10001 rules, more than the limit of 10000 per table"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

package rules

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// templateSheet lays a template table out: RuleTable (row 1), Kind (2),
// blank (3), COLUMNS id, channel, body (4), templates from row 5 (id in
// B, channel in C, body in D).
func templateSheet(sheet, name string, rows ...[]any) sheetDef {
	s := sheetDef{name: sheet, rows: [][]any{{"RuleTable", name}, {"Kind", "template"}, {}, {"COLUMNS", "id", "channel", "body"}}}
	for _, r := range rows {
		s.rows = append(s.rows, append([]any{nil}, r...))
	}
	return s
}

// campaignSheet lays a campaign table out with a template column: NAME
// (B), CONDITION event.type (C), ACTION campaign (D), ACTION template (E);
// rules from row 7.
func campaignSheet(rows ...[]any) sheetDef {
	return table("Campaigns", "campaigns", "campaign", "", []string{"NAME", "CONDITION", "ACTION", "ACTION"},
		[]string{"", "event.type == $param", "campaign", "template"}, rows...)
}

func load(t *testing.T, dir, name string, sheets ...sheetDef) []TableSpec {
	t.Helper()
	specs, err := LoadWorkbook(writeBook(t, dir, name, sheets...))
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

// TestTemplateVariantsByChannel: one id, one row per channel, looked up
// exactly — no other id stands in for a missing channel, however similar
// its name.
func TestTemplateVariantsByChannel(t *testing.T) {
	specs := load(t, t.TempDir(), "rules.xlsx", templateSheet("Templates", "templates",
		[]any{"price-drop", "LINE", "LINE {{.event.brand}}"},
		[]any{"price-drop", "MAIL", "MAIL {{.event.brand}}"},
		[]any{"price-drop-home", "PUSH", "home push"},
		[]any{"price-drop-home-mail", "MAIL", "home mail"},
	))
	set, err := CompileSet(specs)
	if err != nil {
		t.Fatal(err)
	}
	for ch, want := range map[string]string{ChannelLine: "LINE 無印良品", ChannelMail: "MAIL 無印良品"} {
		tp, ok := set.Template("price-drop", ch)
		if !ok {
			t.Fatalf("no price-drop for %s", ch)
		}
		r, err := tp.Render(SampleFacts())
		if err != nil || r.Body != want || r.Channel != ch || r.TemplateID != "price-drop" {
			t.Errorf("price-drop for %s rendered %+v, %v", ch, r, err)
		}
	}
	for _, miss := range [][2]string{{"price-drop", ChannelPush}, {"price-drop", ChannelInApp}, {"price-drop-home", ChannelMail}, {"price", ChannelLine}} {
		if tp, ok := set.Template(miss[0], miss[1]); ok {
			t.Errorf("Template(%s, %s) found %s for %s", miss[0], miss[1], tp.ID, tp.Channel)
		}
	}
	if got := set.TemplateChannels("price-drop"); !slices.Equal(got, []string{ChannelMail, ChannelLine}) {
		t.Errorf("TemplateChannels(price-drop) = %v, want [MAIL LINE]", got)
	}
	if got := set.TemplateChannels("nope"); got != nil {
		t.Errorf("TemplateChannels(nope) = %v", got)
	}
}

// TestDuplicateTemplateVariant: the same id twice for one channel is the
// error, located at the second id cell and naming the first.
func TestDuplicateTemplateVariant(t *testing.T) {
	path := writeBook(t, t.TempDir(), "rules.xlsx", templateSheet("Templates", "templates",
		[]any{"price_drop", "LINE", "a"},
		[]any{"price_drop", "MAIL", "b"},
		[]any{"price_drop", "line", "c"},
	))
	_, err := LoadWorkbook(path)
	want := "rules.xlsx: Templates!B7: template price_drop for LINE is already defined at B5 (one row per id and channel)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if !errors.Is(err, ErrDuplicateTemplate) {
		t.Error("not ErrDuplicateTemplate")
	}
}

// TestNewSetRefusesDuplicateVariants: two tables defining the same variant
// do not make a set; the error names both cells, and With (the Watcher's
// way) keeps the table first in name order and reports the clash.
func TestNewSetRefusesDuplicateVariants(t *testing.T) {
	dir := t.TempDir()
	a := load(t, dir, "a.xlsx", templateSheet("Templates", "tpl-a", []any{"x", "MAIL", "from a"}, []any{"x", "LINE", "line"}))
	b := load(t, dir, "b.xlsx", templateSheet("Content", "tpl-b", []any{"y", "MAIL", "y"}, []any{"x", "MAIL", "from b"}))
	ta, err := Compile(a[0])
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Compile(b[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewSet(tb, ta)
	want := "b.xlsx: Content!B6: template x for MAIL is also defined by table tpl-a at a.xlsx: Templates!B5"
	if err == nil || err.Error() != want || !errors.Is(err, ErrDuplicateTemplate) {
		t.Fatalf("NewSet: %v\nwant %s", err, want)
	}
	set := (&Set{}).With(ta).With(tb)
	if err := set.Conflicts(); err == nil || err.Error() != want {
		t.Errorf("Conflicts() = %v, want %s", err, want)
	}
	if tp, _ := set.Template("x", ChannelMail); tp == nil || tp.Body != "from a" {
		t.Errorf("x for MAIL = %+v, want tpl-a's", tp)
	}
	if err := set.Without("tpl-b").Conflicts(); err != nil {
		t.Errorf("conflict remains without tpl-b: %v", err)
	}
}

// TestValidateCampaignTemplates: every campaign row names a template id
// with a variant for at least one channel; the error is at the campaign's
// template cell.
func TestValidateCampaignTemplates(t *testing.T) {
	specs := load(t, t.TempDir(), "rules.xlsx",
		campaignSheet(
			[]any{"ok", "price_drop", "c1", "price_drop"},
			[]any{"typo", "price_drop", "c2", "pricedrop"},
			[]any{"none", "price_drop", "c3", nil},
			[]any{"other", "back_in_stock", "c4", "back_in_stock"},
		),
		templateSheet("Templates", "templates", []any{"price_drop", "LINE", "a"}, []any{"price_drop", "MAIL", "b"}),
	)
	err := Validate(specs)
	want := strings.Join([]string{
		"rules.xlsx: Campaigns!E8: campaign c2 names template pricedrop, which no template table defines for any channel (did you mean price_drop?)",
		"rules.xlsx: Campaigns!E9: campaign c3 names no template: its offers could not be rendered",
		"rules.xlsx: Campaigns!E10: campaign c4 names template back_in_stock, which no template table defines for any channel",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("Validate:\n%v\nwant:\n%s", err, want)
	}
	if !errors.Is(err, ErrUnknownTemplate) {
		t.Error("not ErrUnknownTemplate")
	}
	// The templates may come from another workbook passed along.
	more := load(t, t.TempDir(), "content.xlsx", templateSheet("Templates", "more-templates",
		[]any{"pricedrop", "PUSH", "p"}, []any{"back_in_stock", "PUSH", "p"}))
	err = Validate(append(specs, more...))
	if want := "rules.xlsx: Campaigns!E9: campaign c3 names no template: its offers could not be rendered"; err == nil || err.Error() != want {
		t.Fatalf("Validate with content.xlsx: %v, want %s", err, want)
	}
}

// TestValidateDuplicateVariantsAcrossWorkbooks names both workbooks.
func TestValidateDuplicateVariantsAcrossWorkbooks(t *testing.T) {
	dir := t.TempDir()
	a := load(t, dir, "a.xlsx", templateSheet("Templates", "tpl-a", []any{"x", "MAIL", "a"}))
	b := load(t, dir, "b.xlsx", templateSheet("Templates", "tpl-b", []any{"x", "LINE", "b"}, []any{"x", "MAIL", "b"}))
	err := Validate(append(a, b...))
	want := "b.xlsx: Templates!B6: template x for MAIL is also defined by table tpl-a at a.xlsx: Templates!B5"
	if err == nil || err.Error() != want || !errors.Is(err, ErrDuplicateTemplate) {
		t.Fatalf("Validate: %v\nwant %s", err, want)
	}
}

// TestValidateAgainstLiveTables: what Publish checks. Live tables that
// stay take part: a publish may not clash with their variants nor remove
// a template a live campaign uses; what was already broken live does not
// block it.
func TestValidateAgainstLiveTables(t *testing.T) {
	dir := t.TempDir()
	liveSpecs := load(t, dir, "live.xlsx",
		campaignSheet([]any{"ok", "price_drop", "c1", "price_drop"}),
		templateSheet("Templates", "templates", []any{"price_drop", "LINE", "a"}, []any{"cart", "MAIL", "b"}))
	live := map[string]TableSpec{}
	for _, s := range liveSpecs {
		live[s.Name] = s
	}
	// A new content workbook that redefines a live variant.
	clash := load(t, dir, "new.xlsx", templateSheet("Templates", "new-templates", []any{"price_drop", "LINE", "again"}))
	err := validate(clash, live, false)
	want := "new.xlsx: Templates!B5: template price_drop for LINE is also defined by table templates at live.xlsx: Templates!B5"
	if err == nil || err.Error() != want {
		t.Errorf("clash: %v\nwant %s", err, want)
	}
	// With prune the live tables go: nothing left to clash with.
	if err := validate(clash, live, true); err != nil {
		t.Errorf("pruned: %v", err)
	}
	// Republishing the templates without price_drop breaks the live
	// campaign, which is reported at its cell in its workbook.
	removed := load(t, dir, "live.xlsx", templateSheet("Templates", "templates", []any{"cart", "MAIL", "b"}))
	err = validate(removed, live, false)
	want = "live.xlsx: Campaigns!E7: campaign c1 (live table campaigns) uses template price_drop, which this publish removes"
	if err == nil || err.Error() != want {
		t.Errorf("removal: %v\nwant %s", err, want)
	}
	// A live campaign that was already broken does not block unrelated
	// changes.
	broken := map[string]TableSpec{"campaigns": load(t, t.TempDir(), "old.xlsx", campaignSheet([]any{"ghost", "x", "c9", "ghost"}))[0]}
	if err := validate(removed, broken, false); err != nil {
		t.Errorf("pre-existing breakage blocks the publish: %v", err)
	}
}

// TestTemplateBudgetAtRender: a template that passes validation against
// SampleFacts but meets facts large enough to blow a budget at send time
// (event attributes come from the events API) fails with ErrOverBudget
// instead of running away; the same template renders ordinary facts.
func TestTemplateBudgetAtRender(t *testing.T) {
	specs := load(t, t.TempDir(), "rules.xlsx", templateSheet("Templates", "templates",
		[]any{"loops", "MAIL", "{{range .member.segments}}{{range $.member.segments}}.{{end}}{{end}}"},
		[]any{"writes", "LINE", "{{range .member.segments}}{{$.event.brand}}{{end}}"},
	))
	set, err := CompileSet(specs)
	if err != nil {
		t.Fatal(err)
	}
	many := func(n, size int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = strings.Repeat("s", size)
		}
		return s
	}
	tests := []struct {
		id, channel string
		segments    []string
		brand       string
		want        string // "" if it renders
	}{
		{"loops", ChannelMail, many(50, 1), "", ""},                                  // 2,550 iterations
		{"loops", ChannelMail, many(200, 1), "", "more than 10000 range iterations"}, // 40,200
		{"writes", ChannelLine, many(100, 1), "無印良品", ""},
		{"writes", ChannelLine, many(5_000, 1), strings.Repeat("b", 100), "output larger than 65536 bytes"},
	}
	for _, tt := range tests {
		tp, ok := set.Template(tt.id, tt.channel)
		if !ok {
			t.Fatalf("no template %s/%s", tt.id, tt.channel)
		}
		f := SampleFacts()
		f.Member.Segments, f.Event.Brand = tt.segments, tt.brand
		_, err := tp.Render(f)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s with %d segments: %v", tt.id, len(tt.segments), err)
		case tt.want != "" && (!errors.Is(err, ErrOverBudget) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s with %d segments: err = %v; want ErrOverBudget, %s", tt.id, len(tt.segments), err, tt.want)
		}
	}
}

package rules

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rtm-project/rtm/rules/examples"
)

// loadExamples loads the committed example workbook.
func loadExamples(t testing.TB) []TableSpec {
	t.Helper()
	specs, err := ReadWorkbook(bytes.NewReader(examples.Workbook), examples.WorkbookName)
	if err != nil {
		t.Fatalf("loading example workbook: %v", err)
	}
	return specs
}

func exampleSet(t testing.TB) *Set {
	t.Helper()
	var tables []*Table
	for _, s := range loadExamples(t) {
		tb, err := Compile(s)
		if err != nil {
			t.Fatalf("compiling %s: %v", s.Name, err)
		}
		tables = append(tables, tb)
	}
	set, err := NewSet(tables...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestLoadExamples(t *testing.T) {
	specs := loadExamples(t)
	got := map[string]Kind{}
	for _, s := range specs {
		got[s.Name] = s.Kind
	}
	want := map[string]Kind{"campaigns": KindCampaign, "member-filters": KindFilter, "channels": KindChannel, "timing": KindTiming, "templates": KindTemplate}
	if len(got) != len(want) {
		t.Fatalf("tables = %v, want %v", got, want)
	}
	for n, k := range want {
		if got[n] != k {
			t.Errorf("table %s kind = %q, want %q", n, got[n], k)
		}
	}
	if err := Validate(specs); err != nil {
		t.Fatalf("the example workbook does not validate: %v", err)
	}
	// Every campaign's template has a variant for every channel its
	// channel rows can route to: the example never excludes for want of
	// content.
	set := exampleSet(t)
	camps, _ := set.Table("campaigns")
	spec := camps.Spec()
	for _, r := range spec.Rows {
		id, _ := textOf(r.Cells[spec.actionColumn("template")])
		if got := set.TemplateChannels(id); len(got) != len(Channels) {
			t.Errorf("template %s (row %d) has variants for %v, want all of %v", id, r.Row, got, Channels)
		}
	}
	b, _ := json.MarshalIndent(specs[1], "", "  ")
	t.Logf("%s", b)
}

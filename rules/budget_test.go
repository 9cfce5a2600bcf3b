package rules

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestBudgetDeadline: the deadline is checked every 64 iterations and on
// every write, with the clock the budget was given.
func TestBudgetDeadline(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBudget(func() time.Time { return now })
	for i := 1; i < 64; i++ {
		if err := b.tick(); err != nil {
			t.Fatalf("tick %d: %v", i, err)
		}
	}
	w := &cappedWriter{w: io.Discard, bud: b}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatalf("write in time: %v", err)
	}
	now = now.Add(TemplateTimeout + time.Millisecond)
	if _, err := w.Write([]byte("x")); !errors.Is(err, ErrOverBudget) || !strings.Contains(err.Error(), "ran longer") {
		t.Errorf("write after the deadline: %v", err)
	}
	if err := b.tick(); !errors.Is(err, ErrOverBudget) || !errors.Is(err, ErrOverTime) || !strings.Contains(err.Error(), "ran longer") {
		t.Errorf("64th tick after the deadline: %v", err)
	}
	// The other budgets are the template's own: not a matter of time.
	for i := 0; i <= MaxTemplateIterations; i++ {
		b.deadline = now.Add(time.Hour)
		if err := b.tick(); err != nil {
			if !errors.Is(err, ErrOverBudget) || errors.Is(err, ErrOverTime) {
				t.Errorf("over the iteration budget: %v is ErrOverTime", err)
			}
			return
		}
	}
	t.Error("the iteration budget never ran out")
}

// BenchmarkTemplateBudget renders 9,900 range iterations (99 segments in
// two nested ranges, just under MaxTemplateIterations): what a template at
// the iteration budget costs, to size TemplateTimeout against.
func BenchmarkTemplateBudget(b *testing.B) {
	set, err := CompileSet([]TableSpec{mailTemplate("t", "{{range .member.segments}}{{range $.member.segments}}{{end}}{{end}}")})
	if err != nil {
		b.Fatal(err)
	}
	tp, _ := set.Template("t", ChannelMail)
	f := SampleFacts()
	f.Member.Segments = make([]string, 99)
	for b.Loop() {
		if _, err := tp.Render(f); err != nil {
			b.Fatal(err)
		}
	}
}

// mailTemplate is a template table of one MAIL template, id with body.
func mailTemplate(id, body string) TableSpec {
	return TableSpec{Name: "templates", Kind: KindTemplate, Sheet: "Templates",
		Columns: []Column{{Type: ColField, Template: "id", Ref: "B4"}, {Type: ColField, Template: "channel", Ref: "C4"},
			{Type: ColField, Template: "body", Ref: "D4"}},
		Rows: []Row{{Row: 5, Cells: []Value{{V: id}, {V: "MAIL"}, {V: body}}}}}
}

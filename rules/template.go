package rules

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Template is one row of a template table: the variant of message ID for
// one channel. Campaign tables name the ID; the channel stage picks a
// channel among those the ID has a variant for, and render uses exactly
// that variant (Set.Template(id, channel)). Its text fields are Go
// text/templates over .member, .event and .campaign, using the same
// snake_case field names as conditions: {{.member.email}},
// {{.event.new_price | yen}}.
type Template struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Subject string `json:"subject,omitempty"`
	Body    string `json:"body,omitempty"`
	AltText string `json:"alt_text,omitempty"`
	URL     string `json:"url,omitempty"`
	Trace   Trace  `json:"trace"`

	parsed [4]*template.Template // subject, body, alt_text, url; nil if empty
	// file and cell locate the row's id cell, for errors about the variant.
	file, cell string
}

// templateKey identifies a template variant.
type templateKey struct{ id, channel string }

// at locates a cell for a message about another cell: the cell alone on
// the same sheet, sheet!cell in the same workbook, else with the workbook.
func at(file, sheet, cell, fromFile, fromSheet string) string {
	switch {
	case file == fromFile && sheet == fromSheet:
		return cell
	case file == fromFile || file == "":
		return sheet + "!" + cell
	}
	return file + ": " + sheet + "!" + cell
}

// Rendered is a template executed against facts.
type Rendered struct {
	TemplateID string `json:"template_id"`
	Channel    string `json:"channel"`
	Subject    string `json:"subject,omitempty"`
	Body       string `json:"body,omitempty"`
	AltText    string `json:"alt_text,omitempty"`
	URL        string `json:"url,omitempty"`
}

// templateFields are the columns of a template table.
var templateFields = []string{"id", "channel", "subject", "body", "alt_text", "url"}

// templateFuncs are available in every template (tickFunc is the budget's,
// inserted by parseTemplate).
var templateFuncs = template.FuncMap{
	tickFunc: tick,
	// yen formats a price: 1980 → ¥1,980.
	"yen": func(v any) string {
		f, ok := toFloat(v)
		if !ok {
			return fmt.Sprint(v)
		}
		return "¥" + groupThousands(int64(math.Round(f)))
	},
	// pct formats a percentage: 23.4 → 23%.
	"pct": func(v any) string {
		f, ok := toFloat(v)
		if !ok {
			return fmt.Sprint(v)
		}
		return strconv.FormatInt(int64(math.Round(f)), 10) + "%"
	},
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// SampleFacts are the facts templates are executed against at validation
// time, so that a template that fails to render is a publish-time error.
func SampleFacts() *Facts {
	return &Facts{
		Event: Event{
			Type: "price_drop", ItemID: "item-1001", MemberID: "m-1", Brand: "無印良品", Category: "キッチン",
			OldPrice: 2480, NewPrice: 1980, DropPct: 20.2, Stock: 12,
			At:    time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC),
			Attrs: map[string]string{"cart_id": "c-1"},
		},
		Member: Member{
			MemberID: "m-1", Email: "hanako@example.jp", Status: "active", Gender: "female",
			Birthday: "1990-05-01", Age: 35, Prefecture: "東京都", Timezone: "Asia/Tokyo",
			MailOptIn: true, LineOptIn: true, PushOptIn: true,
			Reachable: []string{ChannelMail, ChannelLine, ChannelPush, ChannelInApp},
			Segments:  []string{"vip"}, FavoritesCount: 8, OrdersCount: 3, DaysSinceLastOrder: 12,
		},
		Campaign: Campaign{ID: "price-drop", Priority: 10, Audience: AudienceFavoritesOfItem, Template: "price-drop", Timing: TimingNow},
	}
}

// templateData turns facts into the maps templates see, keyed by the
// snake_case json names (missing keys are errors, so typos are caught),
// with the values a JSON round trip would give: numbers float64, times
// RFC 3339 strings, lists []any, and nil for a nil map or list. It builds
// them directly: marshalling the facts and unmarshalling them into maps
// cost about a fifth of rendering a message. TestTemplateDataIsTheJSONRoundTrip
// fills every field of Facts and fails when a field is missing here or
// mapped differently from its JSON.
func templateData(f *Facts) (map[string]any, error) {
	e, m, c := &f.Event, &f.Member, &f.Campaign
	for _, x := range [...]float64{e.OldPrice, e.NewPrice, e.DropPct} {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("encoding facts: unsupported number %v", x)
		}
	}
	at, err := e.At.MarshalText()
	if err != nil {
		return nil, fmt.Errorf("encoding facts: %w", err)
	}
	var attrs any // nil, as JSON's null decodes
	if e.Attrs != nil {
		a := make(map[string]any, len(e.Attrs))
		for k, v := range e.Attrs {
			a[k] = v
		}
		attrs = a
	}
	return map[string]any{
		"event": map[string]any{
			"type": e.Type, "item_id": e.ItemID, "member_id": e.MemberID, "brand": e.Brand, "category": e.Category,
			"old_price": e.OldPrice, "new_price": e.NewPrice, "drop_pct": e.DropPct, "stock": float64(e.Stock),
			"at": string(at), "attrs": attrs,
		},
		"member": map[string]any{
			"member_id": m.MemberID, "email": m.Email, "status": m.Status, "is_debug": m.IsDebug, "gender": m.Gender,
			"birthday": m.Birthday, "age": float64(m.Age), "prefecture": m.Prefecture, "timezone": m.Timezone,
			"mail_opt_in": m.MailOptIn, "line_opt_in": m.LineOptIn, "push_opt_in": m.PushOptIn,
			"reachable": anyList(m.Reachable), "segments": anyList(m.Segments),
			"favorites_count": float64(m.FavoritesCount), "orders_count": float64(m.OrdersCount),
			"sent_today": float64(m.SentToday), "sent_this_week": float64(m.SentThisWeek),
			"days_since_last_order": float64(m.DaysSinceLastOrder),
		},
		"campaign": map[string]any{
			"id": c.ID, "priority": float64(c.Priority), "audience": c.Audience, "template": c.Template, "timing": c.Timing,
		},
	}, nil
}

// anyList is a list of strings as a JSON round trip gives it: []any, or
// nil for nil.
func anyList(ss []string) any {
	if ss == nil {
		return nil
	}
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Render executes the template against facts.
func (t *Template) Render(f *Facts) (Rendered, error) {
	data, err := templateData(f)
	if err != nil {
		return Rendered{}, err
	}
	return t.render(data)
}

func (t *Template) render(data map[string]any) (Rendered, error) {
	out := Rendered{TemplateID: t.ID, Channel: t.Channel}
	dst := [4]*string{&out.Subject, &out.Body, &out.AltText, &out.URL}
	bud := newBudget(budgetClock) // one budget for all the fields
	var buf bytes.Buffer
	for i := range t.parsed {
		if t.parsed[i] == nil {
			continue
		}
		if err := t.execute(i, data, bud, &buf); err != nil {
			return Rendered{}, fmt.Errorf("rendering template %s %s: %w", t.ID, templateFields[i+2], err)
		}
		*dst[i] = buf.String()
	}
	return out, nil
}

// execute renders field i into buf under bud (budget.go).
func (t *Template) execute(i int, data map[string]any, bud *budget, buf *bytes.Buffer) error {
	buf.Reset()
	data[budgetKey] = bud
	defer delete(data, budgetKey)
	return t.parsed[i].Execute(&cappedWriter{w: buf, bud: bud}, data)
}

// compileTemplates compiles a template table: parse every text field and
// execute it against SampleFacts.
func compileTemplates(spec *TableSpec, sheet string, errs *errorList) []*Template {
	n := errs.len()
	col := map[string]int{}
	for i, c := range spec.Columns {
		name := strings.TrimSpace(c.Template)
		known := false
		for _, f := range templateFields {
			known = known || f == name
		}
		switch {
		case c.Type != ColField || !known:
			errs.add(sheet, c.Ref, ErrBadColumn, "unknown template column %q (want %s)", c.Template, strings.Join(templateFields, ", "))
		case col[name] != 0:
			errs.add(sheet, c.Ref, ErrBadColumn, "column %s appears twice", name)
		default:
			col[name] = i + 1
		}
	}
	for _, need := range []string{"id", "channel"} {
		if col[need] == 0 {
			errs.add(sheet, "", ErrMissingColumns, "template tables need an %s column", need)
		}
	}
	if col["body"] == 0 && col["subject"] == 0 && col["alt_text"] == 0 {
		errs.add(sheet, "", ErrMissingColumns, "template tables need a body, subject or alt_text column")
	}
	if errs.len() > n {
		return nil
	}
	data, err := templateData(SampleFacts())
	if err != nil {
		errs.add(sheet, "", ErrTemplate, "%s", err)
		return nil
	}
	var out []*Template
	ids := map[templateKey]string{} // → id cell of the first row
	for ri := range spec.Rows {
		r := &spec.Rows[ri]
		get := func(name string) (string, string) {
			i := col[name] - 1
			if i < 0 || i >= len(r.Cells) {
				return "", ""
			}
			s, _ := textOf(r.Cells[i])
			if _, isStr := r.Cells[i].V.(string); isStr {
				s = r.Cells[i].V.(string) // keep template whitespace
			}
			return s, spec.cellRef(i, r)
		}
		t := &Template{Trace: Trace{Table: spec.Name, Version: spec.Meta.Version, Sheet: sheet, Row: r.Row},
			file: spec.Meta.SourceFile}
		t.ID, _ = get("id")
		t.ID = strings.TrimSpace(t.ID)
		t.cell = spec.cellRef(col["id"]-1, r)
		t.Trace.Rule = t.ID
		ok := true
		if t.ID == "" {
			errs.add(sheet, t.cell, ErrMissingOutput, "template id is empty")
			ok = false
		}
		ch, chRef := get("channel")
		if chRef == "" {
			chRef = spec.cellRef(col["channel"]-1, r)
		}
		if cs, err := channelsOf(Value{V: ch}); err != nil || len(cs) != 1 {
			errs.add(sheet, chRef, ErrInvalidOutput, "channel: want one of %s, cell holds %s", strings.Join(Channels, ", "), Value{V: ch})
			ok = false
		} else {
			t.Channel = cs[0]
		}
		if ok {
			// One row per (id, channel): the same id on another row is
			// the message's variant for another channel.
			k := templateKey{t.ID, t.Channel}
			if prev, dup := ids[k]; dup {
				errs.add(sheet, t.cell, ErrDuplicateTemplate, "template %s for %s is already defined at %s (one row per id and channel)", t.ID, t.Channel, prev)
				ok = false
			} else {
				ids[k] = t.cell
			}
		}
		texts := [4]*string{&t.Subject, &t.Body, &t.AltText, &t.URL}
		for i, name := range templateFields[2:] {
			src, cref := get(name)
			*texts[i] = src
			if strings.TrimSpace(src) == "" {
				continue
			}
			if len([]rune(src)) > MaxCellLen {
				errs.add(sheet, cref, ErrTooLarge, "cell has %d characters, more than the limit of %d", len([]rune(src)), MaxCellLen)
				ok = false
				continue
			}
			p, err := parseTemplate(name, src)
			if err != nil {
				errs.add(sheet, cref, ErrTemplate, "%s: %s", name, templateMsg(err))
				ok = false
				continue
			}
			t.parsed[i] = p
		}
		if !ok {
			continue
		}
		if _, err := t.render(data); err != nil {
			for i, p := range t.parsed {
				if p == nil {
					continue
				}
				// Each field on its own budget, so that every failing cell
				// is named.
				if err := t.execute(i, data, newBudget(budgetClock), new(bytes.Buffer)); err != nil {
					errs.add(sheet, spec.cellRef(col[templateFields[i+2]]-1, r), ErrTemplate, "%s: %s", templateFields[i+2], templateMsg(err))
				}
			}
			continue
		}
		out = append(out, t)
	}
	return out
}

// templateMsg strips text/template's "template: name:" prefix; a budget
// error reads as where the template was and which budget it spent.
func templateMsg(err error) string {
	msg := err.Error()
	if ob := (*overBudget)(nil); errors.As(err, &ob) {
		if loc, _, ok := strings.Cut(strings.TrimPrefix(msg, "template: "), ": executing "); ok {
			return loc + ": " + ob.Error()
		}
		return ob.Error()
	}
	msg = strings.TrimPrefix(msg, "template: ")
	return msg
}

package rules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// PublishMeta is recorded with every published table.
type PublishMeta struct {
	Author string
	// SourceFile overrides the specs' source file name when set.
	SourceFile string
	// PublishedAt defaults to now.
	PublishedAt time.Time
	// Prune deletes tables that are on the rules topic but not in the
	// published specs (a tombstone on rules, a null value on history).
	Prune bool
}

// PublishReport says what Publish did.
type PublishReport struct {
	Published []Change // added or changed tables, and pruned ones
	Unchanged []string // table names whose content hash was already live
}

// Publish validates specs (compiling every table; all errors are returned
// and nothing is written if any table is invalid) and writes the tables
// whose content hash differs from the rules topic to both the rules and
// rules.history topics in one transaction, so that every stage sees either
// none or all of a workbook's changes and history never misses a version.
//
// client must be a transactional producer (kgo.TransactionalID) and must
// not have a transaction open; Publish reads the current rules with a
// separate, short-lived consumer that shares client's connection options.
func Publish(ctx context.Context, client *kgo.Client, specs []TableSpec, meta PublishMeta) (PublishReport, error) {
	if id, _ := client.OptValue(kgo.TransactionalID).(string); id == "" {
		return PublishReport{}, errors.New("publishing rules: client needs kgo.TransactionalID to write both topics atomically")
	}
	current, err := List(ctx, client)
	if err != nil {
		return PublishReport{}, fmt.Errorf("publishing rules: %w", err)
	}
	if err := validate(specs, current, meta.Prune); err != nil {
		return PublishReport{}, err
	}
	if meta.PublishedAt.IsZero() {
		meta.PublishedAt = time.Now().UTC()
	}
	var report PublishReport
	var recs []*kgo.Record
	for _, c := range Diff(current, specs) {
		switch c.Op {
		case OpUnchanged:
			report.Unchanged = append(report.Unchanged, c.Name)
			continue
		case OpRemoved:
			if !meta.Prune {
				continue
			}
			recs = append(recs,
				&kgo.Record{Topic: topics.Rules, Key: []byte(c.Name)},
				&kgo.Record{Topic: topics.RulesHistory, Key: []byte(c.Name)})
			report.Published = append(report.Published, c)
			continue
		}
		spec := *c.proposed
		spec.Meta = Meta{Version: spec.ContentHash(), SourceFile: spec.Meta.SourceFile, Author: meta.Author, PublishedAt: meta.PublishedAt}
		if meta.SourceFile != "" {
			spec.Meta.SourceFile = meta.SourceFile
		}
		b, err := MarshalSpec(&spec)
		if err != nil {
			return PublishReport{}, err
		}
		hdr := []kgo.RecordHeader{{Key: "version", Value: []byte(spec.Meta.Version)}}
		recs = append(recs,
			&kgo.Record{Topic: topics.Rules, Key: []byte(spec.Name), Value: b, Headers: hdr},
			&kgo.Record{Topic: topics.RulesHistory, Key: []byte(spec.Name), Value: b, Headers: hdr})
		report.Published = append(report.Published, c)
	}
	if len(recs) == 0 {
		return report, nil
	}
	if err := produceTxn(ctx, client, recs); err != nil {
		return PublishReport{}, fmt.Errorf("publishing rules: %w", err)
	}
	return report, nil
}

// produceTxn writes records in one transaction, aborting on any failure.
func produceTxn(ctx context.Context, client *kgo.Client, recs []*kgo.Record) error {
	if err := client.BeginTransaction(); err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		if aerr := client.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort); aerr != nil {
			return fmt.Errorf("producing: %w (abort failed: %v)", err, aerr)
		}
		return fmt.Errorf("producing: %w", err)
	}
	if err := client.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("committing transaction: %w", err)
	}
	return nil
}

// Validate compiles every spec and checks the tables together: table
// names are unique, no two rows define the same template (id, channel)
// pair, and every campaign row names a template id that has a variant for
// at least one channel. Every problem is returned, located at its cell.
// Pass every workbook that makes up the rules (`rtm rules validate
// campaigns.xlsx content.xlsx`); Publish checks the same against the live
// tables that stay.
func Validate(specs []TableSpec) error { return validate(specs, nil, false) }

// validate is Validate for specs that are published over live tables:
// live tables that the specs do not replace (and prune does not delete)
// take part in the checks, so that a publish cannot clash with them or
// take away a template a live campaign uses.
func validate(specs []TableSpec, live map[string]TableSpec, prune bool) error {
	errs := &errorList{}
	names := map[string]bool{}
	var proposed []*Table
	for _, s := range specs {
		errs.file = s.Meta.SourceFile
		if names[s.Name] {
			errs.add(s.Sheet, "B1", ErrDuplicateTable, "duplicate table name %s", s.Name)
			continue
		}
		names[s.Name] = true
		if t := compileSpec(s, errs); t != nil {
			proposed = append(proposed, t)
		}
	}
	// Live tables, compiled as a Watcher would: one that does not compile
	// is not in force, so it takes no part.
	var kept []*Table
	liveIDs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(live)) {
		t := compileSpec(live[name], &errorList{})
		if t == nil {
			continue
		}
		for _, tp := range t.templates {
			liveIDs[tp.ID] = true
		}
		if !names[name] && !prune {
			kept = append(kept, t)
		}
	}
	// Kept tables first, so that a clash between a kept and a proposed
	// table is reported at the proposed one.
	all := append(slices.Clip(kept), proposed...)
	isProposed := func(i int) bool { return i >= len(kept) }
	variants := map[templateKey]*Template{}
	ids := map[string]bool{}
	for i, t := range all {
		for _, tp := range t.templates {
			ids[tp.ID] = true
			k := templateKey{tp.ID, tp.Channel}
			prev, dup := variants[k]
			if !dup {
				variants[k] = tp
				continue
			}
			if isProposed(i) {
				errs.file = tp.file
				errs.add(tp.Trace.Sheet, tp.cell, ErrDuplicateTemplate, "template %s for %s is also defined by table %s at %s",
					tp.ID, tp.Channel, prev.Trace.Table, at(prev.file, prev.Trace.Sheet, prev.cell, tp.file, tp.Trace.Sheet))
			}
		}
	}
	for i, t := range all {
		if t.Kind() != KindCampaign {
			continue
		}
		col := t.spec.actionColumn("template")
		for ri := range t.rules {
			r := &t.rules[ri]
			id := r.out.campaign.Template
			if ids[id] {
				continue
			}
			// A kept live campaign is reported only when this publish
			// removes its template, not for what was already broken.
			if !isProposed(i) && (id == "" || !liveIDs[id]) {
				continue
			}
			cell := fmt.Sprintf("row %d", r.trace.Row)
			if col >= 0 {
				cell = t.spec.cellRef(col, &Row{Row: r.trace.Row})
			}
			errs.file = t.spec.Meta.SourceFile
			switch {
			case id == "":
				errs.add(r.trace.Sheet, cell, ErrUnknownTemplate, "campaign %s names no template: its offers could not be rendered", r.out.campaign.Campaign)
			case !isProposed(i):
				errs.add(r.trace.Sheet, cell, ErrUnknownTemplate, "campaign %s (live table %s) uses template %s, which this publish removes", r.out.campaign.Campaign, t.Name(), id)
			default:
				errs.add(r.trace.Sheet, cell, ErrUnknownTemplate, "campaign %s names template %s, which no template table defines for any channel%s", r.out.campaign.Campaign, id, suggestTemplate(id, ids))
			}
		}
	}
	return errs.err()
}

// actionColumn returns the index of the ACTION column setting output, or -1.
func (s *TableSpec) actionColumn(output string) int {
	for i, c := range s.Columns {
		if c.Type == ColAction && strings.TrimSpace(c.Template) == output {
			return i
		}
	}
	return -1
}

// suggestTemplate names the closest known template id, for a typo.
func suggestTemplate(id string, ids map[string]bool) string {
	best, bestD := "", 4
	for _, k := range slices.Sorted(maps.Keys(ids)) {
		if d := editDistance(k, id); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// List reads the rules topic to its current end: the live version of every
// table, by name.
func List(ctx context.Context, client *kgo.Client) (map[string]TableSpec, error) {
	out := map[string]TableSpec{}
	err := readAll(ctx, client, topics.Rules, func(r *kgo.Record) error {
		if r.Value == nil {
			delete(out, string(r.Key))
			return nil
		}
		s, err := UnmarshalSpec(r.Value)
		if err != nil {
			// A bad record is skipped, like the Watcher does: the table
			// will be replaced by the next publish.
			return nil
		}
		out[string(r.Key)] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing rules: %w", err)
	}
	return out, nil
}

// History reads every published version of a table from rules.history,
// oldest first. Deletions appear as specs with only Name set.
func History(ctx context.Context, client *kgo.Client, name string) ([]TableSpec, error) {
	var out []TableSpec
	err := readAll(ctx, client, topics.RulesHistory, func(r *kgo.Record) error {
		if string(r.Key) != name {
			return nil
		}
		if r.Value == nil {
			out = append(out, TableSpec{Name: name})
			return nil
		}
		s, err := UnmarshalSpec(r.Value)
		if err != nil {
			return nil
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading history of %s: %w", name, err)
	}
	return out, nil
}

// Rollback re-publishes an earlier version of a table from rules.history.
// toVersion may be a unique prefix of the version hash.
func Rollback(ctx context.Context, client *kgo.Client, name, toVersion string, meta PublishMeta) (PublishReport, error) {
	if toVersion == "" {
		return PublishReport{}, errors.New("rolling back: empty version")
	}
	hist, err := History(ctx, client, name)
	if err != nil {
		return PublishReport{}, err
	}
	var match *TableSpec
	for i := range hist {
		if strings.HasPrefix(hist[i].Meta.Version, toVersion) {
			if match != nil && match.Meta.Version != hist[i].Meta.Version {
				return PublishReport{}, fmt.Errorf("rolling back %s: version prefix %s is ambiguous", name, toVersion)
			}
			match = &hist[i]
		}
	}
	if match == nil {
		return PublishReport{}, fmt.Errorf("rolling back %s: version %s not found in %s", name, toVersion, topics.RulesHistory)
	}
	meta.Prune = false
	return Publish(ctx, client, []TableSpec{*match}, meta)
}

// ChangeOp is the kind of a Change.
type ChangeOp string

const (
	OpAdded     ChangeOp = "added"
	OpChanged   ChangeOp = "changed"
	OpRemoved   ChangeOp = "removed"
	OpUnchanged ChangeOp = "unchanged"
)

// Change is the difference of one table between the live rules and a
// proposed set.
type Change struct {
	Name string   `json:"name"`
	Op   ChangeOp `json:"op"`
	From string   `json:"from,omitempty"` // live version
	To   string   `json:"to,omitempty"`   // proposed version
	// Rows lists the worksheet rows (of the proposed table, or of the live
	// one for removed rows) whose rule was added, changed or removed.
	Rows []RowChange `json:"rows,omitempty"`

	proposed *TableSpec
}

// RowChange is one rule row that differs.
type RowChange struct {
	Op  ChangeOp `json:"op"`
	Row int      `json:"row"`
}

func (c Change) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", c.Op, c.Name)
	if c.From != "" {
		fmt.Fprintf(&b, " %.12s", c.From)
	}
	if c.From != "" && c.To != "" {
		b.WriteString(" →")
	}
	if c.To != "" {
		fmt.Fprintf(&b, " %.12s", c.To)
	}
	for _, r := range c.Rows {
		fmt.Fprintf(&b, "\n  row %d %s", r.Row, r.Op)
	}
	return b.String()
}

// Diff compares the live tables (as returned by List) with proposed specs,
// for `rtm rules diff`. Changes are in name order.
func Diff(current map[string]TableSpec, proposed []TableSpec) []Change {
	var out []Change
	seen := map[string]bool{}
	for i := range proposed {
		p := &proposed[i]
		seen[p.Name] = true
		to := p.ContentHash()
		cur, ok := current[p.Name]
		switch {
		case !ok:
			out = append(out, Change{Name: p.Name, Op: OpAdded, To: to, proposed: p})
		case cur.Meta.Version == to:
			out = append(out, Change{Name: p.Name, Op: OpUnchanged, From: to, To: to, proposed: p})
		default:
			out = append(out, Change{Name: p.Name, Op: OpChanged, From: cur.Meta.Version, To: to, Rows: diffRows(&cur, p), proposed: p})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(current)) {
		if !seen[name] {
			out = append(out, Change{Name: name, Op: OpRemoved, From: current[name].Meta.Version})
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// diffRows compares rules by worksheet row. Columns changing shape marks
// every row changed.
func diffRows(a, b *TableSpec) []RowChange {
	key := func(s *TableSpec, r Row) string {
		cs, _ := MarshalSpec(&TableSpec{Columns: s.Columns, Rows: []Row{{Cells: r.Cells}}})
		return string(cs)
	}
	old := map[int]string{}
	for _, r := range a.Rows {
		old[r.Row] = key(a, r)
	}
	var out []RowChange
	seen := map[int]bool{}
	for _, r := range b.Rows {
		seen[r.Row] = true
		prev, ok := old[r.Row]
		switch {
		case !ok:
			out = append(out, RowChange{OpAdded, r.Row})
		case prev != key(b, r):
			out = append(out, RowChange{OpChanged, r.Row})
		}
	}
	for _, r := range a.Rows {
		if !seen[r.Row] {
			out = append(out, RowChange{OpRemoved, r.Row})
		}
	}
	return out
}

package rules

import (
	"fmt"
	"maps"
	"slices"
)

// Set is an immutable collection of compiled tables, as served by a
// Watcher. Stages evaluate all tables of their kind, in name order.
type Set struct {
	tables    map[string]*Table
	byKind    map[Kind][]*Table
	templates map[templateKey]*Template
	// channels lists, per template id, the channels it has a variant for,
	// in the order of Channels.
	channels map[string][]string
	// conflicts are template variants defined by more than one table.
	conflicts *errorList
}

// NewSet builds a set; table names must be unique, and so must template
// (id, channel) pairs across template tables: a clash is an *Errors
// naming both cells (ErrDuplicateTemplate).
func NewSet(tables ...*Table) (*Set, error) {
	m := make(map[string]*Table, len(tables))
	for _, t := range tables {
		if _, dup := m[t.Name()]; dup {
			return nil, fmt.Errorf("building rule set: %w: %s", ErrDuplicateTable, t.Name())
		}
		m[t.Name()] = t
	}
	s := newSet(m)
	if err := s.Conflicts(); err != nil {
		return nil, err
	}
	return s, nil
}

func newSet(m map[string]*Table) *Set {
	s := &Set{tables: m, byKind: map[Kind][]*Table{}, templates: map[templateKey]*Template{},
		channels: map[string][]string{}, conflicts: &errorList{}}
	names := slices.Sorted(maps.Keys(m))
	for _, n := range names {
		t := m[n]
		s.byKind[t.Kind()] = append(s.byKind[t.Kind()], t)
		for _, tp := range t.templates {
			k := templateKey{tp.ID, tp.Channel}
			if prev, dup := s.templates[k]; dup {
				// Publish refuses this; a set assembled record by record
				// (a Watcher mid-publish, or tables published around
				// Publish) keeps the table first in name order, the same
				// choice in every process, and reports the clash.
				s.conflicts.file = tp.file
				s.conflicts.add(tp.Trace.Sheet, tp.cell, ErrDuplicateTemplate, "template %s for %s is also defined by table %s at %s",
					tp.ID, tp.Channel, prev.Trace.Table, at(prev.file, prev.Trace.Sheet, prev.cell, tp.file, tp.Trace.Sheet))
				continue
			}
			s.templates[k] = tp
		}
	}
	for k := range s.templates {
		s.channels[k.id] = append(s.channels[k.id], k.channel)
	}
	for id, cs := range s.channels {
		slices.SortFunc(cs, func(a, b string) int { return slices.Index(Channels, a) - slices.Index(Channels, b) })
		s.channels[id] = cs
	}
	return s
}

// Conflicts reports template variants defined by more than one table of
// the set (nil when there are none); the set uses the one of the table
// first in name order.
func (s *Set) Conflicts() error {
	if s == nil {
		return nil
	}
	return s.conflicts.err()
}

// Table returns the table with the given name.
func (s *Set) Table(name string) (*Table, bool) {
	if s == nil {
		return nil, false
	}
	t, ok := s.tables[name]
	return t, ok
}

// Kind returns the tables of a kind in name order. The slice is shared:
// do not modify it.
func (s *Set) Kind(k Kind) []*Table {
	if s == nil {
		return nil
	}
	return s.byKind[k]
}

// Tables returns every table in name order.
func (s *Set) Tables() []*Table {
	if s == nil {
		return nil
	}
	out := make([]*Table, 0, len(s.tables))
	for _, n := range slices.Sorted(maps.Keys(s.tables)) {
		out = append(out, s.tables[n])
	}
	return out
}

// Len returns the number of tables.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.tables)
}

// Template returns the variant of template id for channel. The lookup is
// exact: no other id and no other channel stands in for a missing variant.
func (s *Set) Template(id, channel string) (*Template, bool) {
	if s == nil {
		return nil, false
	}
	t, ok := s.templates[templateKey{id, channel}]
	return t, ok
}

// TemplateChannels returns the channels template id has a variant for, in
// the order of Channels, or nil for an unknown id. The slice is shared: do
// not modify it.
func (s *Set) TemplateChannels(id string) []string {
	if s == nil {
		return nil
	}
	return s.channels[id]
}

// With returns a copy of the set with t added or replaced.
func (s *Set) With(t *Table) *Set {
	m := make(map[string]*Table, s.Len()+1)
	if s != nil {
		maps.Copy(m, s.tables)
	}
	m[t.Name()] = t
	return newSet(m)
}

// Without returns a copy of the set without the named table.
func (s *Set) Without(name string) *Set {
	m := make(map[string]*Table, s.Len())
	if s != nil {
		maps.Copy(m, s.tables)
	}
	delete(m, name)
	return newSet(m)
}

// Versions returns table name → version.
func (s *Set) Versions() map[string]string {
	out := map[string]string{}
	if s == nil {
		return out
	}
	for n, t := range s.tables {
		out[n] = t.Version()
	}
	return out
}

// Templates returns the templates of a template table, in row order.
func (t *Table) Templates() []*Template { return t.templates }

// CompileSet compiles specs (as LoadWorkbook returns them) into a Set.
func CompileSet(specs []TableSpec) (*Set, error) {
	tables := make([]*Table, 0, len(specs))
	for _, s := range specs {
		t, err := Compile(s)
		if err != nil {
			return nil, err
		}
		tables = append(tables, t)
	}
	return NewSet(tables...)
}

// LoadSet loads a workbook and compiles it into a Set (tools, tests,
// benchmarks; running stages get theirs from a Watcher).
func LoadSet(path string) (*Set, error) {
	specs, err := LoadWorkbook(path)
	if err != nil {
		return nil, err
	}
	return CompileSet(specs)
}

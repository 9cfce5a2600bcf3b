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
	templates map[string]*Template
}

// NewSet builds a set; table names must be unique, and so must template
// ids across template tables.
func NewSet(tables ...*Table) (*Set, error) {
	m := make(map[string]*Table, len(tables))
	for _, t := range tables {
		if _, dup := m[t.Name()]; dup {
			return nil, fmt.Errorf("building rule set: %w: %s", ErrDuplicateTable, t.Name())
		}
		m[t.Name()] = t
	}
	return newSet(m), nil
}

func newSet(m map[string]*Table) *Set {
	s := &Set{tables: m, byKind: map[Kind][]*Table{}, templates: map[string]*Template{}}
	names := slices.Sorted(maps.Keys(m))
	for _, n := range names {
		t := m[n]
		s.byKind[t.Kind()] = append(s.byKind[t.Kind()], t)
		for _, tp := range t.templates {
			// On a clash the table first in name order wins; Publish
			// refuses clashes within one workbook.
			if _, dup := s.templates[tp.ID]; !dup {
				s.templates[tp.ID] = tp
			}
		}
	}
	return s
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

// Template returns the message template with the given id.
func (s *Set) Template(id string) (*Template, bool) {
	if s == nil {
		return nil, false
	}
	t, ok := s.templates[id]
	return t, ok
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

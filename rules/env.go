package rules

import (
	"reflect"
	"sort"
	"unsafe"
)

// The evaluation environment.
//
// expr reads struct fields through reflect.Value.Interface, which allocates
// for every string, float and slice it boxes: a 200-row table would box
// hundreds of values per evaluation. Instead every rule is compiled against
// a flat, typed map environment ("member.prefecture": string, ...) — expr
// loads such identifiers with a single map lookup (OpLoadFast) — and the
// map's values are views: interface values whose data word points straight
// at the field inside the caller's Facts. Building a view allocates nothing,
// a view is rebuilt only when the Facts pointer changes, and a view always
// shows the field's current content. The price is the rule documented on
// Facts: do not modify it while an evaluation against it runs. Views never
// escape an evaluation: conditions are checked to return bool and outputs
// are constants taken from cells.

// fact is one top-level fact (event, member, campaign).
type fact struct {
	name   string
	offset uintptr // of the sub-struct inside Facts
	typ    reflect.Type
}

// field is one fact field that rules can read, e.g. member.prefecture.
type field struct {
	id     int
	name   string // flat name: "member.prefecture"
	fact   string // "member"
	typ    reflect.Type
	offset uintptr // inside Facts
	// typeWord is the runtime type word of an interface holding typ.
	typeWord unsafe.Pointer
	// direct reports that typ is pointer-shaped: the interface data word
	// holds the value itself rather than a pointer to it.
	direct bool
}

var (
	facts      []fact
	fields     []*field
	fieldIndex = map[string]*field{} // by flat name
	// envSample is the typed environment the checker sees.
	envSample = map[string]any{}
)

func init() {
	ft := reflect.TypeFor[Facts]()
	for i := range ft.NumField() {
		sf := ft.Field(i)
		fc := fact{name: sf.Tag.Get("expr"), offset: sf.Offset, typ: sf.Type}
		facts = append(facts, fc)
		for j := range sf.Type.NumField() {
			inner := sf.Type.Field(j)
			name := fc.name + "." + inner.Tag.Get("expr")
			zero := reflect.Zero(inner.Type).Interface()
			f := &field{
				id:       len(fields),
				name:     name,
				fact:     fc.name,
				typ:      inner.Type,
				offset:   sf.Offset + inner.Offset,
				typeWord: (*eface)(unsafe.Pointer(&zero)).typ,
				direct:   isDirectIface(inner.Type),
			}
			fields = append(fields, f)
			fieldIndex[name] = f
			envSample[name] = zero
		}
	}
}

// eface is the runtime layout of an empty interface.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// isDirectIface mirrors the runtime's rule for storing a value directly in
// an interface's data word.
func isDirectIface(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Map, reflect.Pointer, reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	case reflect.Struct:
		return t.NumField() == 1 && isDirectIface(t.Field(0).Type)
	case reflect.Array:
		return t.Len() == 1 && isDirectIface(t.Elem())
	}
	return false
}

// view returns an interface value showing field f of *facts without copying
// or allocating.
func (f *field) view(base *Facts) any {
	p := unsafe.Add(unsafe.Pointer(base), f.offset)
	var v any
	e := (*eface)(unsafe.Pointer(&v))
	e.typ = f.typeWord
	if f.direct {
		e.data = *(*unsafe.Pointer)(p)
	} else {
		e.data = p
	}
	return v
}

// fieldsOf returns the flat field names of a fact, sorted.
func fieldsOf(fact string) []string {
	var out []string
	for _, f := range fields {
		if f.fact == fact {
			out = append(out, f.name)
		}
	}
	sort.Strings(out)
	return out
}

// closestField suggests a field for a misspelt name, or "".
func closestField(fact, name string) string {
	best, bestD := "", 4
	for _, f := range fieldsOf(fact) {
		if d := editDistance(f, name); d < bestD {
			best, bestD = f, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// binding is a reusable environment bound to one *Facts. It is not safe for
// concurrent use; Tables keep bindings in a sync.Pool.
type binding struct {
	env   map[string]any
	facts *Facts
	bound []bool // by field id, for the current facts
}

func newBinding() *binding {
	b := &binding{env: make(map[string]any, len(fields)), bound: make([]bool, len(fields))}
	for _, f := range fields {
		b.env[f.name] = envSample[f.name]
	}
	return b
}

// bind makes the environment show the given fields of f.
func (b *binding) bind(f *Facts, used []*field) {
	if b.facts != f {
		b.facts = f
		clear(b.bound)
	}
	for _, fl := range used {
		if !b.bound[fl.id] {
			b.env[fl.name] = fl.view(f)
			b.bound[fl.id] = true
		}
	}
}

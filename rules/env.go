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
// loads such identifiers with a single map lookup (OpLoadFast) — and before
// every evaluation bind stores, for each field the table reads, an
// interface value showing that field of the caller's Facts. Making one
// allocates nothing:
//
//   - A field that Go stores indirectly in an interface (strings, numbers,
//     bools, slices, time.Time: everything but maps today) is shown by a
//     view, an interface whose data word points at the field inside the
//     Facts. Whoever reads the view reads the field's memory at that
//     moment, so a view cannot lag behind the field.
//   - A field stored directly (pointer-shaped: a map) has its value in the
//     data word itself, so the interface is a copy of the pointer, stale as
//     soon as the field is reassigned. bind therefore re-reads it from the
//     Facts on every evaluation; copying a pointer allocates nothing either.
//
// Which of the two a type is, is the runtime's decision, and it has changed
// between Go releases (Go 1.26 decides by size and pointer words rather
// than by kind). It is not restated here: init boxes each field type's zero
// value and looks at the result — a pointer-shaped zero is stored as a nil
// data word, an indirect one never is.
//
// There is deliberately no cache keyed by the *Facts pointer: bind rewrites
// every field the table reads, every time (a map assignment per field, a
// handful per table, against tens of expr instructions per row), so an
// evaluation sees exactly the Facts' content when it starts, whether the
// caller passes a new Facts or overwrites one. The rule that remains is the
// one documented on Facts: do not modify a Facts while an evaluation
// against it runs. Views never escape an evaluation: conditions are checked
// to return bool and outputs are constants taken from cells.
//
// The alternative — compiling common "field op $param" shapes to typed Go
// closures and keeping expr for the rest — would still need this
// environment for the rest, so it would add a second evaluator without
// removing the first.

// fact is one top-level fact (event, member, campaign).
type fact struct {
	name   string
	offset uintptr // of the sub-struct inside Facts
	typ    reflect.Type
}

// field is one fact field that rules can read, e.g. member.prefecture.
type field struct {
	name   string // flat name: "member.prefecture"
	fact   string // "member"
	typ    reflect.Type
	offset uintptr // inside Facts
	// typeWord is the runtime type word of an interface holding typ.
	typeWord unsafe.Pointer
	// direct reports that the runtime stores typ in the data word of an
	// interface (pointer-shaped) rather than a pointer to it.
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
			ze := (*eface)(unsafe.Pointer(&zero))
			f := &field{
				name:     name,
				fact:     fc.name,
				typ:      inner.Type,
				offset:   sf.Offset + inner.Offset,
				typeWord: ze.typ,
				// The runtime's own answer: an indirect value is always
				// reached through a non-nil pointer, a pointer-shaped
				// zero value is the nil pointer itself.
				direct: ze.data == nil,
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

// view returns an interface value showing field f of *base without
// allocating: for an indirect type it points at the field, for a
// pointer-shaped one it holds the field's current pointer (so it must be
// taken again whenever the field may have changed: bind does, every time).
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

// binding is a reusable environment. It is not safe for concurrent use;
// Tables keep bindings in a sync.Pool.
type binding struct {
	env map[string]any
}

func newBinding() *binding {
	b := &binding{env: make(map[string]any, len(fields))}
	for _, f := range fields {
		b.env[f.name] = envSample[f.name]
	}
	return b
}

// bind makes the environment show the current content of the given fields
// of f. It runs before every evaluation and keeps nothing from the last.
func (b *binding) bind(f *Facts, used []*field) {
	for _, fl := range used {
		b.env[fl.name] = fl.view(f)
	}
}

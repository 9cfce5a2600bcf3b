package rules

import (
	"math/bits"
	"reflect"
	"unsafe"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// Indexing, as a rule engine indexes its alpha nodes.
//
// A CONDITION column of the form `fact.field == $param` or
// `fact.field in $param` over a string field is an equality test against
// the cell's constant(s). For such a column the table keeps, for every
// value any row names, the set of rows that can match it: the rows naming
// it plus the rows whose cell is empty (no condition there). An
// evaluation reads the field once, looks its value up in each indexed
// column and intersects the sets; only the candidate rows left run their
// programs, in row order. A row outside the candidates has an indexed
// condition that is false, so its conjunction is false: skipping it
// changes no decision, whatever the hit policy. (It also skips whatever
// that row's program would have done before reaching the false test; the
// one observable difference is that a runtime error in a condition left of
// a false indexed one, such as a division by zero, is no longer reported
// for that row.) Each row's program still holds every condition, so an
// index can only prune, never decide.

// bitset is a set of rule positions.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int) { b[i/64] |= 1 << (uint(i) % 64) }

// colIndex indexes one equality column.
type colIndex struct {
	field *field
	// byValue is, for each value some row names, the rows that match it;
	// other is the rows that match any value (an empty cell).
	byValue map[string]bitset
	other   bitset
}

// candidates returns the rows every indexed column allows for f, in dst
// (grown as needed); ok is false when the table has no index.
func (t *Table) candidates(dst bitset, f *Facts) (bitset, bool) {
	if len(t.index) == 0 {
		return dst, false
	}
	n := (len(t.rules) + 63) / 64
	if cap(dst) < n {
		dst = make(bitset, n)
	}
	dst = dst[:n]
	for i, ix := range t.index {
		v := *(*string)(unsafe.Add(unsafe.Pointer(f), ix.field.offset))
		set, ok := ix.byValue[v]
		if !ok {
			set = ix.other
		}
		if i == 0 {
			copy(dst, set)
			continue
		}
		for w := range dst {
			dst[w] &= set[w]
		}
	}
	return dst, true
}

// each calls fn for the position of every set bit, in order, until fn
// returns false; it reports whether it ran to the end.
func (b bitset) each(fn func(int) bool) bool {
	for w, word := range b {
		for word != 0 {
			i := w*64 + bits.TrailingZeros64(word)
			if !fn(i) {
				return false
			}
			word &= word - 1
		}
	}
	return true
}

// buildIndex indexes the table's equality columns. It runs after every row
// compiled, so rule k is spec row k.
func (c *tableCompiler) buildIndex(t *Table) {
	for col, ct := range c.conds {
		if ct == nil || !ct.ok {
			continue
		}
		fl, op := c.equalityField(ct)
		if fl == nil {
			continue
		}
		ix := &colIndex{field: fl, byValue: map[string]bitset{}, other: newBitset(len(t.rules))}
		indexable := true
		for k := range t.spec.Rows {
			r := &t.spec.Rows[k]
			var v Value
			if col < len(r.Cells) {
				v = r.Cells[col]
			}
			if v.IsEmpty() {
				ix.other.set(k)
				continue
			}
			values, ok := stringConstants(ct, v, op)
			if !ok {
				indexable = false
				break
			}
			for _, s := range values {
				if ix.byValue[s] == nil {
					ix.byValue[s] = newBitset(len(t.rules))
				}
				ix.byValue[s].set(k)
			}
		}
		if !indexable {
			continue
		}
		for _, set := range ix.byValue {
			for w := range set {
				set[w] |= ix.other[w]
			}
		}
		t.index = append(t.index, ix)
	}
}

// equalityField returns the string field a column template tests for
// equality with its cell ("==" or "in"), or nil.
func (c *tableCompiler) equalityField(ct *condTemplate) (*field, string) {
	tree, err := parser.Parse(ct.src)
	if err != nil {
		return nil, ""
	}
	c.analyse(&tree.Node)
	bin, ok := tree.Node.(*ast.BinaryNode)
	if !ok || (bin.Operator != "==" && bin.Operator != "in") {
		return nil, ""
	}
	l, r := bin.Left, bin.Right
	if bin.Operator == "==" && isParam(l) {
		l, r = r, l
	}
	id, ok := l.(*ast.IdentifierNode)
	if !ok || !isParam(r) {
		return nil, ""
	}
	fl := fieldIndex[id.Value]
	if fl == nil || fl.typ.Kind() != reflect.String || fl.typ != reflect.TypeFor[string]() {
		return nil, ""
	}
	if bin.Operator == "in" && !ct.list {
		return nil, ""
	}
	return fl, bin.Operator
}

func isParam(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == paramName
}

// stringConstants returns the string constant(s) a cell compares with.
func stringConstants(ct *condTemplate, v Value, op string) ([]string, bool) {
	lit, err := literal(ct, v)
	if err != nil {
		return nil, false
	}
	switch n := lit().(type) {
	case *ast.StringNode:
		return []string{n.Value}, op == "=="
	case *ast.ArrayNode:
		if op != "in" {
			return nil, false
		}
		out := make([]string, 0, len(n.Nodes))
		for _, e := range n.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			out = append(out, s.Value)
		}
		return out, true
	}
	return nil, false
}

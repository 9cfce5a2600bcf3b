package rules

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/checker/nature"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
)

// Limits that keep a hostile or accidental workbook from exhausting memory.
const (
	MaxRules   = 10_000 // rows per table
	MaxColumns = 100    // columns per table
	MaxCellLen = 4_000  // characters per cell
)

// paramName is the placeholder for the cell value in condition templates.
const paramName = "$param"

// factsByKind lists the facts each kind may read.
var factsByKind = map[Kind][]string{
	KindCampaign: {"event"},
	KindFilter:   {"member", "campaign", "event"},
	KindChannel:  {"member", "campaign"},
	KindTiming:   {"member", "campaign"},
}

// Table is a compiled table. It is immutable and safe for concurrent use.
type Table struct {
	spec      TableSpec
	rules     []rule
	used      []*field // fact fields read by any rule, for binding
	templates []*Template
	// index holds the equality columns' candidate sets (index.go).
	index []*colIndex
}

// rule is one compiled row.
type rule struct {
	trace Trace
	// program is nil for a row without conditions: it always matches.
	program *vm.Program
	out     outputs
}

// Name returns the table name.
func (t *Table) Name() string { return t.spec.Name }

// Kind returns the table kind.
func (t *Table) Kind() Kind { return t.spec.Kind }

// HitPolicy returns the table's hit policy.
func (t *Table) HitPolicy() HitPolicy { return t.spec.HitPolicy }

// Version returns the content hash the table was compiled from.
func (t *Table) Version() string { return t.spec.Meta.Version }

// Spec returns a copy of the spec the table was compiled from. Its slices
// are shared: do not modify them.
func (t *Table) Spec() TableSpec { return t.spec }

// Len returns the number of rules (or templates).
func (t *Table) Len() int { return len(t.rules) + len(t.templates) }

// Compile validates a spec and compiles it. Errors are *Errors listing every
// problem with its file, sheet and cell. Meta.Version is filled in when
// empty and checked when set, so a tampered or corrupted record is refused.
func Compile(spec TableSpec) (*Table, error) {
	errs := &errorList{file: spec.Meta.SourceFile}
	t := compileSpec(spec, errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return t, nil
}

func compileSpec(spec TableSpec, errs *errorList) *Table {
	sheet := spec.Sheet
	if sheet == "" {
		sheet = spec.Name
	}
	hash := spec.ContentHash()
	if spec.Meta.Version == "" {
		spec.Meta.Version = hash
	} else if spec.Meta.Version != hash {
		errs.add(sheet, "", ErrBadHeader, "version %s does not match the content hash %s", spec.Meta.Version, hash)
		return nil
	}
	if spec.HitPolicy == "" {
		spec.HitPolicy = HitFirst
	}
	n := errs.len()
	if strings.TrimSpace(spec.Name) == "" {
		errs.add(sheet, "B1", ErrBadHeader, "table name is empty")
	}
	if !spec.Kind.valid() {
		errs.add(sheet, "", ErrUnknownKind, "unknown Kind %q (want campaign, filter, channel, timing or template)", spec.Kind)
	}
	if spec.HitPolicy != HitFirst && spec.HitPolicy != HitCollect {
		errs.add(sheet, "", ErrUnknownHitPolicy, "unknown HitPolicy %q (want first or collect)", spec.HitPolicy)
	}
	if len(spec.Columns) == 0 {
		errs.add(sheet, "", ErrMissingColumns, "no COLUMNS row: add a row whose A cell is COLUMNS")
	}
	if len(spec.Columns) > MaxColumns {
		errs.add(sheet, "", ErrTooLarge, "%d columns, more than the limit of %d", len(spec.Columns), MaxColumns)
	}
	if len(spec.Rows) > MaxRules {
		errs.add(sheet, "", ErrTooLarge, "%d rules, more than the limit of %d per table", len(spec.Rows), MaxRules)
	}
	if errs.len() > n {
		return nil
	}
	if len(spec.Rows) == 0 {
		ref := ""
		if len(spec.Columns) > 0 {
			ref = spec.Columns[0].Ref
		}
		errs.add(sheet, ref, ErrEmptyTable, "table %s has no rules", spec.Name)
		return nil
	}
	for i := range spec.Rows {
		if len(spec.Rows[i].Cells) > len(spec.Columns) {
			errs.add(sheet, spec.cellRef(len(spec.Columns), &spec.Rows[i]), ErrBadColumn, "row has %d cells but the table has %d columns", len(spec.Rows[i].Cells), len(spec.Columns))
		}
	}
	if errs.len() > n {
		return nil
	}
	t := &Table{spec: spec}
	if spec.Kind == KindTemplate {
		t.templates = compileTemplates(&t.spec, sheet, errs)
		return t
	}
	c := newTableCompiler(&t.spec, sheet, errs)
	c.columns()
	if errs.len() > n {
		return nil
	}
	for i := range t.spec.Rows {
		if r, ok := c.row(&t.spec.Rows[i]); ok {
			t.rules = append(t.rules, r)
		}
	}
	t.used = c.usedFields()
	if errs.len() > n {
		return nil
	}
	c.buildIndex(t)
	return t
}

func (l *errorList) len() int { return len(l.list) }

// tableCompiler compiles the rows of one decision table.
type tableCompiler struct {
	spec  *TableSpec
	sheet string
	errs  *errorList
	facts map[string]bool // allowed facts
	// per column
	conds   []*condTemplate // nil for non-condition columns
	outputs []string        // output name for ACTION columns
	nameCol int
	// cfg checks and compiles rule conditions; tcfg checks templates with
	// $param of unknown type.
	cfg, tcfg *conf.Config
	used      map[*field]bool
}

// condTemplate is an analysed CONDITION template.
type condTemplate struct {
	src string
	ref string
	// listElem is set when the template uses "x in $param": the cell is a
	// comma-separated list of values of this kind (String, Int, Float64) or
	// reflect.Invalid when the element type is inferred from the text.
	list     bool
	listElem reflect.Kind
	ok       bool
}

func newTableCompiler(spec *TableSpec, sheet string, errs *errorList) *tableCompiler {
	c := &tableCompiler{spec: spec, sheet: sheet, errs: errs, nameCol: -1, used: map[*field]bool{}}
	c.facts = map[string]bool{}
	for _, f := range factsByKind[spec.Kind] {
		c.facts[f] = true
	}
	c.cfg = newConfig(false)
	c.tcfg = newConfig(true)
	return c
}

// newConfig returns an expr config over the flat fact environment,
// expecting a bool result. With anyParam, $param is declared of type any so
// that a template can be checked before any cell value is known.
func newConfig(anyParam bool) *conf.Config {
	env := make(types.Map, len(envSample)+1)
	for k, v := range envSample {
		env[k] = types.TypeOf(v)
	}
	if anyParam {
		env[paramName] = anyType{}
	}
	cfg := conf.CreateNew()
	for _, op := range []expr.Option{expr.Env(env), expr.AsBool()} {
		op(cfg)
	}
	cfg.Check()
	return cfg
}

// anyType is the interface type any, which the checker accepts on either
// side of every operator.
type anyType struct{}

func (anyType) Nature() nature.Nature { return nature.FromType(reflect.TypeFor[any]()) }
func (anyType) Equal(types.Type) bool { return true }
func (anyType) String() string        { return "any" }

// columns analyses the column templates.
func (c *tableCompiler) columns() {
	n := len(c.spec.Columns)
	c.conds = make([]*condTemplate, n)
	c.outputs = make([]string, n)
	seen := map[string]string{}
	for i, col := range c.spec.Columns {
		switch col.Type {
		case ColCondition:
			c.conds[i] = c.condition(col)
		case ColAction:
			name := strings.TrimSpace(col.Template)
			_, ok := outputDefs[c.spec.Kind][name]
			switch {
			case name == "":
				c.errs.add(c.sheet, col.Ref, ErrParam, "ACTION template is empty: write an output name (%s)", outputNames(c.spec.Kind))
			case !ok:
				c.errs.add(c.sheet, col.Ref, ErrUnknownOutput, "unknown output %q for %s tables (want %s)", name, c.spec.Kind, outputNames(c.spec.Kind))
			case seen[name] != "":
				c.errs.add(c.sheet, col.Ref, ErrBadColumn, "output %s is already set by column %s", name, seen[name])
			default:
				seen[name] = col.Ref
				c.outputs[i] = name
			}
		case ColName:
			if c.nameCol >= 0 {
				c.errs.add(c.sheet, col.Ref, ErrBadColumn, "more than one NAME column")
			}
			c.nameCol = i
		case ColDescription:
		default:
			c.errs.add(c.sheet, col.Ref, ErrBadColumn, "unknown column type %q (want CONDITION, ACTION, NAME or DESCRIPTION)", col.Type)
		}
	}
	for name, def := range outputDefs[c.spec.Kind] {
		if def.required && seen[name] == "" {
			c.errs.add(c.sheet, "", ErrMissingOutput, "%s tables need an ACTION column for %s", c.spec.Kind, name)
		}
	}
}

// condition analyses a CONDITION template: syntax, fields, $param use, and
// a type check with $param of unknown type.
func (c *tableCompiler) condition(col Column) *condTemplate {
	ct := &condTemplate{src: col.Template, ref: col.Ref}
	if strings.TrimSpace(col.Template) == "" {
		c.errs.add(c.sheet, col.Ref, ErrParam, "CONDITION template is empty: write an expression using $param, such as event.type == $param")
		return ct
	}
	tree, err := parser.Parse(col.Template)
	if err != nil {
		c.errs.add(c.sheet, col.Ref, ErrSyntax, "syntax error in %q: %s", col.Template, exprMsg(err))
		return ct
	}
	a := c.analyse(&tree.Node)
	for _, e := range a.errs {
		c.errs.add(c.sheet, col.Ref, e.kind, "%s", e.msg)
	}
	if len(a.errs) > 0 {
		return ct
	}
	if a.params == 0 {
		c.errs.add(c.sheet, col.Ref, ErrParam, "CONDITION template %q has no $param: the cell value must go somewhere, such as event.type == $param", col.Template)
		return ct
	}
	ct.list, ct.listElem = a.list, a.listElem
	if _, err := checker.Check(tree, c.tcfg); err != nil {
		c.errs.add(c.sheet, col.Ref, ErrTypeMismatch, "condition %q: %s", col.Template, exprMsg(err))
		return ct
	}
	ct.ok = true
	return ct
}

type analysis struct {
	params   int
	list     bool
	listElem reflect.Kind
	errs     []struct {
		kind error
		msg  string
	}
}

// analyse rewrites fact field access (member.prefecture) into flat
// identifiers of the environment, and reports unknown fields, facts the
// kind may not read, $env, and how $param is used.
func (c *tableCompiler) analyse(node *ast.Node) *analysis {
	a := &analysis{}
	ast.Walk(node, &flattener{c: c, a: a})
	flattenErrs := len(a.errs) > 0
	ast.Walk(node, visitFunc(func(n *ast.Node) {
		switch x := (*n).(type) {
		case *ast.IdentifierNode:
			if x.Value == paramName {
				a.params++
			}
			if _, isFact := c.factNamed(x.Value); isFact && !flattenErrs {
				a.err(ErrUnknownField, "use a field of %s, such as %s", x.Value, fieldsOf(x.Value)[0])
			}
			if x.Value == "$env" {
				a.err(ErrUnknownField, "$env is not available in rules")
			}
		case *ast.BinaryNode:
			if x.Operator != "in" {
				return
			}
			if id, ok := x.Right.(*ast.IdentifierNode); ok && id.Value == paramName {
				a.list = true
				a.listElem = reflect.Invalid
				if l, ok := x.Left.(*ast.IdentifierNode); ok {
					if f := fieldIndex[l.Value]; f != nil {
						a.listElem = f.typ.Kind()
					}
				}
			}
		}
	}))
	return a
}

func (a *analysis) err(kind error, format string, args ...any) {
	a.errs = append(a.errs, struct {
		kind error
		msg  string
	}{kind, fmt.Sprintf(format, args...)})
}

func (c *tableCompiler) factNamed(name string) (string, bool) {
	for _, f := range facts {
		if f.name == name {
			return name, true
		}
	}
	return "", false
}

type visitFunc func(*ast.Node)

func (f visitFunc) Visit(n *ast.Node) { f(n) }

// flattener turns member.prefecture into the identifier "member.prefecture".
// ast.Walk visits children first, so nested access such as
// event.attrs["utm"] becomes ("event.attrs")["utm"].
type flattener struct {
	c *tableCompiler
	a *analysis
}

func (v *flattener) Visit(n *ast.Node) {
	m, ok := (*n).(*ast.MemberNode)
	if !ok {
		return
	}
	id, ok := m.Node.(*ast.IdentifierNode)
	if !ok {
		return
	}
	factName, isFact := v.c.factNamed(id.Value)
	if !isFact {
		return
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		v.a.err(ErrUnknownField, "write %s.<field>: computed field names are not supported", factName)
		return
	}
	flat := factName + "." + prop.Value
	if !v.c.facts[factName] {
		v.a.err(ErrUnknownField, "%s is not available in %s tables (facts: %s)", flat, v.c.spec.Kind, strings.Join(factsByKind[v.c.spec.Kind], ", "))
		return
	}
	f := fieldIndex[flat]
	if f == nil {
		if s := closestField(factName, flat); s != "" {
			v.a.err(ErrUnknownField, "unknown field %s (did you mean %s?)", flat, s)
		} else {
			v.a.err(ErrUnknownField, "unknown field %s (fields: %s)", flat, strings.Join(fieldsOf(factName), ", "))
		}
		return
	}
	// Replace the member access with the flat identifier; keep the
	// location so that expr's messages still point at the source.
	ident := &ast.IdentifierNode{Value: flat}
	ident.SetLocation(m.Location())
	ast.Patch(n, ident)
}

// row compiles one rule row.
func (c *tableCompiler) row(r *Row) (rule, bool) {
	ok := true
	out := newOutputs(c.spec.Kind)
	ru := rule{trace: Trace{Table: c.spec.Name, Version: c.spec.Meta.Version, Sheet: c.sheet, Row: r.Row}}
	var conds []ast.Node
	var texts []string
	var firstCond string
	for i := range c.spec.Columns {
		var v Value
		if i < len(r.Cells) {
			v = r.Cells[i]
		}
		ref := c.spec.cellRef(i, r)
		if s, isStr := v.V.(string); isStr && len([]rune(s)) > MaxCellLen {
			c.errs.add(c.sheet, ref, ErrTooLarge, "cell has %d characters, more than the limit of %d", len([]rune(s)), MaxCellLen)
			ok = false
			continue
		}
		switch {
		case c.conds[i] != nil:
			if v.IsEmpty() || !c.conds[i].ok {
				continue
			}
			node, text, err := c.conditionCell(c.conds[i], v)
			if err != nil {
				c.errs.add(c.sheet, ref, errKind(err), "%s", err.Error())
				ok = false
				continue
			}
			if firstCond == "" {
				firstCond = ref
			}
			conds = append(conds, node)
			texts = append(texts, text)
		case c.outputs[i] != "":
			if v.IsEmpty() {
				if outputDefs[c.spec.Kind][c.outputs[i]].required {
					c.errs.add(c.sheet, ref, ErrMissingOutput, "%s is required: every %s rule must name one", c.outputs[i], c.spec.Kind)
					ok = false
				}
				continue
			}
			if err := outputDefs[c.spec.Kind][c.outputs[i]].set(out, v); err != nil {
				c.errs.add(c.sheet, ref, ErrInvalidOutput, "%s: %s", c.outputs[i], err)
				ok = false
			}
		case i == c.nameCol:
			ru.trace.Rule, _ = textOf(v)
		}
	}
	if c.spec.Kind == KindCampaign && out.campaign != nil {
		if cc := out.campaign; (cc.Audience == AudienceSegment) != (cc.Segment != "") {
			ref := fmt.Sprintf("row %d", r.Row)
			if col := c.spec.actionColumn("audience"); col >= 0 {
				ref = c.spec.cellRef(col, r)
			}
			c.errs.add(c.sheet, ref, ErrInvalidOutput, "audience %s with segment %q: a segment audience names its segment, and only a segment audience names one", cc.Audience, cc.Segment)
			ok = false
		}
	}
	if !ok {
		return rule{}, false
	}
	ru.out = out
	if len(conds) > 0 {
		node := conds[0]
		for _, n := range conds[1:] {
			node = &ast.BinaryNode{Operator: "&&", Left: node, Right: n}
		}
		src := strings.Join(texts, " && ")
		prog, err := c.compileNode(node, src)
		if err != nil {
			c.errs.add(c.sheet, firstCond, ErrTypeMismatch, "rule conditions %s: %s", src, exprMsg(err))
			return rule{}, false
		}
		ru.program = prog
	}
	if ru.trace.Rule == "" {
		ru.trace.Rule = fmt.Sprintf("row %d", r.Row)
	}
	return ru, true
}

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errKind(err error) error {
	if k, ok := err.(*kindError); ok {
		return k.kind
	}
	return nil
}

// conditionCell builds the checked AST of one condition cell.
func (c *tableCompiler) conditionCell(ct *condTemplate, v Value) (ast.Node, string, error) {
	lit, err := literal(ct, v)
	if err != nil {
		return nil, "", &kindError{ErrTypeMismatch, fmt.Sprintf("condition %q: %s", ct.src, err)}
	}
	tree, err := parser.Parse(ct.src)
	if err != nil { // checked in condition; cannot happen
		return nil, "", &kindError{ErrSyntax, exprMsg(err)}
	}
	c.analyse(&tree.Node)
	ast.Walk(&tree.Node, visitFunc(func(n *ast.Node) {
		if id, ok := (*n).(*ast.IdentifierNode); ok {
			if id.Value == paramName {
				ast.Patch(n, lit())
			} else if f := fieldIndex[id.Value]; f != nil {
				c.used[f] = true
			}
		}
	}))
	text := tree.Node.String()
	tree.Source = file.NewSource(text)
	if _, err := checker.Check(tree, c.cfg); err != nil {
		return nil, "", &kindError{ErrTypeMismatch, fmt.Sprintf("type mismatch: condition %q with %s: %s", ct.src, v, exprMsg(err))}
	}
	return tree.Node, text, nil
}

// compileNode checks, optimizes and compiles a combined row condition.
func (c *tableCompiler) compileNode(node ast.Node, src string) (*vm.Program, error) {
	tree := &parser.Tree{Node: node, Source: file.NewSource(src)}
	if _, err := checker.Check(tree, c.cfg); err != nil {
		return nil, err
	}
	if err := optimizer.Optimize(&tree.Node, c.cfg); err != nil {
		return nil, err
	}
	return compiler.Compile(tree, c.cfg)
}

func (c *tableCompiler) usedFields() []*field {
	var out []*field
	for _, f := range fields {
		if c.used[f] {
			out = append(out, f)
		}
	}
	return out
}

// literal returns a constructor of fresh AST nodes for a cell value (nodes
// are typed by the checker, so each use needs its own).
func literal(ct *condTemplate, v Value) (func() ast.Node, error) {
	if ct.list {
		items, err := listItems(ct.listElem, v)
		if err != nil {
			return nil, err
		}
		return func() ast.Node {
			arr := &ast.ArrayNode{}
			for _, it := range items {
				arr.Nodes = append(arr.Nodes, scalar(it))
			}
			return arr
		}, nil
	}
	if v.V == nil {
		return nil, fmt.Errorf("empty cell")
	}
	return func() ast.Node { return scalar(v.V) }, nil
}

func scalar(x any) ast.Node {
	switch x := x.(type) {
	case string:
		return &ast.StringNode{Value: x}
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return &ast.IntegerNode{Value: int(x)}
		}
		return &ast.FloatNode{Value: x}
	case bool:
		return &ast.BoolNode{Value: x}
	}
	return &ast.NilNode{}
}

// listItems turns a cell used as "x in $param" into list items typed after x.
func listItems(elem reflect.Kind, v Value) ([]any, error) {
	switch x := v.V.(type) {
	case float64, bool:
		return []any{x}, nil
	case string:
		parts := splitList(x)
		if len(parts) == 0 {
			return nil, fmt.Errorf("empty list")
		}
		items := make([]any, len(parts))
		numeric := true
		nums := make([]float64, len(parts))
		for i, p := range parts {
			items[i] = p
			n, err := strconv.ParseFloat(p, 64)
			if err != nil {
				numeric = false
			}
			nums[i] = n
		}
		switch elem {
		case reflect.String:
			return items, nil
		case reflect.Int, reflect.Float64:
			if !numeric {
				return nil, fmt.Errorf("list %q: want numbers", x)
			}
		default:
			if !numeric {
				return items, nil
			}
		}
		for i, n := range nums {
			items[i] = n
		}
		return items, nil
	}
	return nil, fmt.Errorf("empty cell")
}

// exprMsg returns expr's message without the location and snippet, which
// refer to the template rather than the cell.
func exprMsg(err error) string {
	if fe, ok := err.(*file.Error); ok {
		return fe.Message
	}
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

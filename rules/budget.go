package rules

import (
	"errors"
	"fmt"
	"io"
	"text/template"
	"text/template/parse"
	"time"
)

// Template execution budgets. A template is marketer input run for every
// offer, so it runs under limits that hold whatever it says and whatever
// the facts hold (event attributes come from the events API): text/template
// cannot be interrupted, so the limits are enforced from inside the
// execution, on every range iteration and every write. The same limits hold
// for the trial run at validate/publish (against SampleFacts), so a
// template bomb is rejected with its cell, and at send time in render,
// where a template over budget sends the offer to the dead-letter topic.
const (
	// MaxTemplateIterations bounds the range iterations of one render,
	// over all of a template's fields and nested ranges.
	MaxTemplateIterations = 10_000
	// MaxTemplateOutput bounds what one field renders to, in bytes
	// (a mail body of 64 KiB is already far past what mail clients show).
	MaxTemplateOutput = 64 << 10
	// TemplateTimeout bounds one render's execution time: a backstop
	// behind the iteration and output budgets (which bound the work), far
	// above what a render within them takes (5.2 ms for 9,900 iterations,
	// 52 ms under the race detector: BenchmarkTemplateBudget), so a loaded
	// machine or a GC pause does not fail a good template.
	TemplateTimeout = 250 * time.Millisecond
)

// budgetClock is the budgets' clock; the package's tests stop it, so that
// which budget a test template spends does not depend on the machine.
var budgetClock = time.Now

// ErrOverBudget is the error of a template that went over a budget.
var ErrOverBudget = errors.New("template over budget")

// ErrOverTime is also the error of a render that went over
// TemplateTimeout only. Unlike the iteration and output budgets, which
// are properties of the template and its facts, time is also one of the
// machine: a render stage may try such a render again before it calls
// the offer bad.
var ErrOverTime = errors.New("template render over time")

// overBudget is a budget error; text/template wraps it in its ExecError
// (whose text names the internal tick call), templateMsg unwraps it.
type overBudget struct {
	msg  string
	time bool // over TemplateTimeout
}

func (e *overBudget) Error() string { return ErrOverBudget.Error() + ": " + e.msg }
func (e *overBudget) Is(target error) bool {
	return target == ErrOverBudget || (e.time && target == ErrOverTime)
}

func overBudgetf(format string, args ...any) error {
	return &overBudget{msg: fmt.Sprintf(format, args...)}
}

// budgetKey is where render puts the execution's budget in the data the
// template sees; the tick calls inserted into every range body read it as
// $._rtm_budget. Marketers' field names are snake_case facts, never this.
const budgetKey = "_rtm_budget"

// tickFunc is the function inserted at the start of every range body.
const tickFunc = "_rtm_tick"

// budget is one render's execution budget.
type budget struct {
	iterations int
	deadline   time.Time
	now        func() time.Time
}

func newBudget(now func() time.Time) *budget {
	return &budget{deadline: now().Add(TemplateTimeout), now: now}
}

// tick counts one range iteration; the clock is read every 64 iterations
// (and by every write), so a tight loop costs a counter increment.
func (b *budget) tick() error {
	b.iterations++
	if b.iterations > MaxTemplateIterations {
		return overBudgetf("more than %d range iterations", MaxTemplateIterations)
	}
	if b.iterations%64 == 0 {
		return b.checkTime()
	}
	return nil
}

func (b *budget) checkTime() error {
	if b.now().After(b.deadline) {
		return &overBudget{msg: fmt.Sprintf("ran longer than %v", TemplateTimeout), time: true}
	}
	return nil
}

// tick is the template function: it renders nothing and aborts the
// execution with its error once the budget is spent.
func tick(b *budget) (string, error) {
	if b == nil {
		return "", overBudgetf("no budget (%s is internal)", tickFunc)
	}
	return "", b.tick()
}

// cappedWriter fails the execution once a field's output passes
// MaxTemplateOutput, and once the budget's time is up.
type cappedWriter struct {
	w   io.Writer
	n   int
	bud *budget
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	if c.n > MaxTemplateOutput {
		return 0, overBudgetf("output larger than %d bytes", MaxTemplateOutput)
	}
	if err := c.bud.checkTime(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// parseTemplate parses one template cell and prepares it for budgeted
// execution: it refuses define, block and template (a template calling
// templates can recurse, and nothing a message needs calls for them) and
// inserts a budget tick at the start of every range body.
func parseTemplate(name, src string) (*template.Template, error) {
	p, err := template.New(name).Option("missingkey=error").Funcs(templateFuncs).Parse(src)
	if err != nil {
		return nil, err
	}
	if ts := p.Templates(); len(ts) > 1 || (len(ts) == 1 && ts[0] != p) {
		return nil, errors.New("define and block are not allowed in a template cell")
	}
	if p.Tree == nil || p.Tree.Root == nil {
		return p, nil
	}
	if err := budgetNodes(p.Tree.Root); err != nil {
		return nil, err
	}
	return p, nil
}

// budgetNodes walks a parse tree: it rejects template calls and makes
// every range body start with {{_rtm_tick $._rtm_budget}}.
func budgetNodes(l *parse.ListNode) error {
	if l == nil {
		return nil
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.TemplateNode:
			return fmt.Errorf("{{template %q}} is not allowed in a template cell", n.Name)
		case *parse.IfNode:
			if err := branch(&n.BranchNode); err != nil {
				return err
			}
		case *parse.WithNode:
			if err := branch(&n.BranchNode); err != nil {
				return err
			}
		case *parse.RangeNode:
			if err := branch(&n.BranchNode); err != nil {
				return err
			}
			if n.List == nil {
				n.List = &parse.ListNode{NodeType: parse.NodeList, Pos: n.Position()}
			}
			n.List.Nodes = append([]parse.Node{tickAction(n.Position())}, n.List.Nodes...)
		}
	}
	return nil
}

func branch(b *parse.BranchNode) error {
	if err := budgetNodes(b.List); err != nil {
		return err
	}
	return budgetNodes(b.ElseList)
}

// tickAction is {{_rtm_tick $._rtm_budget}}, placed at pos (the range's,
// so an error points at the loop).
func tickAction(pos parse.Pos) *parse.ActionNode {
	fn := parse.NewIdentifier(tickFunc).SetPos(pos)
	arg := &parse.VariableNode{NodeType: parse.NodeVariable, Pos: pos, Ident: []string{"$", budgetKey}}
	cmd := &parse.CommandNode{NodeType: parse.NodeCommand, Pos: pos, Args: []parse.Node{fn, arg}}
	return &parse.ActionNode{NodeType: parse.NodeAction, Pos: pos,
		Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Pos: pos, Cmds: []*parse.CommandNode{cmd}}}
}

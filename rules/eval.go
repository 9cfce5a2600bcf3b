package rules

import (
	"fmt"
	"sync"

	"github.com/expr-lang/expr/vm"
)

// Trace says which rule decided: it travels with offers so that "why did
// (or didn't) this member get this message" has an answer.
type Trace struct {
	Table   string `json:"table"`
	Version string `json:"version"`
	Sheet   string `json:"sheet"`
	// Row is the 1-based worksheet row of the rule.
	Row int `json:"row"`
	// Rule is the NAME cell, or "row N" when the table has no names.
	Rule string `json:"rule"`
}

func (t Trace) String() string {
	return fmt.Sprintf("%s@%.12s %s!%d (%s)", t.Table, t.Version, t.Sheet, t.Row, t.Rule)
}

// Decision is the outcome of one matching rule. Exactly one output pointer
// is set, according to the table's kind. Outputs are shared by every
// decision of the same rule: treat them as read-only.
type Decision struct {
	Trace
	Campaign *CampaignOutput `json:"campaign,omitempty"`
	Filter   *FilterOutput   `json:"filter,omitempty"`
	Channel  *ChannelOutput  `json:"channel,omitempty"`
	Timing   *TimingOutput   `json:"timing,omitempty"`
}

// evaluator is the per-evaluation machinery, pooled: a VM with its stack
// and an environment bound to the caller's Facts.
type evaluator struct {
	vm vm.VM
	b  *binding
	// cand is the scratch set of candidate rows (index.go).
	cand bitset
}

var evaluators = sync.Pool{New: func() any { return &evaluator{b: newBinding()} }}

// Evaluate runs a first-hit evaluation: it returns the decision of the first
// matching rule, or false when no rule matches. Under the collect policy it
// also returns the first match; use EvaluateAll for every match.
//
// Evaluate does not allocate, whether f is new or a reused Facts
// overwritten since the last call; conditions that index a map fact
// (event.attrs["utm"]) or search a list fact ("vip" in member.segments) are
// the exception: expr's reflection boxes each value it reads from them.
// Every evaluation sees f's content as it is when the evaluation starts; f
// must not be modified while Evaluate runs.
func (t *Table) Evaluate(f *Facts) (Decision, bool, error) {
	var d Decision
	found := false
	err := t.each(f, func(r *rule) bool {
		d = r.decision()
		found = true
		return false
	})
	return d, found, err
}

// EvaluateAll calls fn for every matching rule in row order until fn
// returns false, whatever the hit policy.
func (t *Table) EvaluateAll(f *Facts, fn func(Decision) bool) error {
	return t.each(f, func(r *rule) bool { return fn(r.decision()) })
}

// Decide applies the table's hit policy: the first match for first-hit
// tables, every match for collect tables. It appends to dst and returns it.
func (t *Table) Decide(dst []Decision, f *Facts) ([]Decision, error) {
	err := t.each(f, func(r *rule) bool {
		dst = append(dst, r.decision())
		return t.spec.HitPolicy == HitCollect
	})
	return dst, err
}

func (r *rule) decision() Decision {
	return Decision{
		Trace:    r.trace,
		Campaign: r.out.campaign,
		Filter:   r.out.filter,
		Channel:  r.out.channel,
		Timing:   r.out.timing,
	}
}

// each evaluates rules in order, calling match for each matching rule until
// it returns false.
func (t *Table) each(f *Facts, match func(*rule) bool) error {
	if t.spec.Kind == KindTemplate {
		return fmt.Errorf("evaluating %s: %w", t.spec.Name, ErrNotDecisionTable)
	}
	if f == nil {
		return fmt.Errorf("evaluating %s: nil facts", t.spec.Name)
	}
	e := evaluators.Get().(*evaluator)
	defer evaluators.Put(e)
	e.b.bind(f, t.used)
	var err error
	try := func(i int) bool {
		r := &t.rules[i]
		if r.program != nil {
			out, rerr := e.vm.Run(r.program, e.b.env)
			if rerr != nil {
				err = fmt.Errorf("evaluating %s: %w", r.trace, rerr)
				return false
			}
			if ok, _ := out.(bool); !ok {
				return true
			}
		}
		return match(r)
	}
	cand, indexed := t.candidates(e.cand, f)
	e.cand = cand
	if indexed {
		cand.each(try)
		return err
	}
	for i := range t.rules {
		if !try(i) {
			break
		}
	}
	return err
}

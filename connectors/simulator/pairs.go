package simulator

import (
	"math/rand/v2"

	"github.com/rtm-project/rtm/connectors/mssql"
)

type writer = mssql.Writer

// pairs is a set of (member, item) with deterministic random picks: a
// slice for order (map iteration order is random, seeds must not be) and
// an index for membership.
type pairs struct {
	list  [][2]string
	index map[[2]string]int
}

func (p *pairs) has(m, i string) bool { _, ok := p.index[[2]string{m, i}]; return ok }

func (p *pairs) add(m, i string) {
	k := [2]string{m, i}
	if p.index == nil {
		p.index = map[[2]string]int{}
	}
	if _, ok := p.index[k]; ok {
		return
	}
	p.index[k] = len(p.list)
	p.list = append(p.list, k)
}

func (p *pairs) remove(m, i string) {
	k := [2]string{m, i}
	at, ok := p.index[k]
	if !ok {
		return
	}
	last := p.list[len(p.list)-1]
	p.list[at] = last
	p.index[last] = at
	p.list = p.list[:len(p.list)-1]
	delete(p.index, k)
}

func (p *pairs) random(r *rand.Rand) ([2]string, bool) {
	if len(p.list) == 0 {
		return [2]string{}, false
	}
	return p.list[r.IntN(len(p.list))], true
}

// of returns the items paired with member m, in list order.
func (p *pairs) of(m string) []string {
	var out []string
	for _, k := range p.list {
		if k[0] == m {
			out = append(out, k[1])
		}
	}
	return out
}

// Package channel is the channel-optimisation stage: for each filtered offer
// it reads the member snapshot the filter stage attached and picks the
// channel — MAIL, LINE, PUSH or INAPP — by the published channel rule
// tables: `fixed` takes the first reachable channel in the table's order,
// `best` learns from the member's engagement with Thompson sampling. Only
// channels the offer's template has a variant for are candidates. A member
// reachable on none of the listed channels is dropped with reason
// no_channel; one reachable only on channels without content, with reason
// no_template.
package channel

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/rtm-project/rtm/topics"
)

// Strategies a channel table can name.
const (
	StrategyFixed = "fixed"
	StrategyBest  = "best"
)

// Prior is a channel's population prior: the Beta(Alpha, Beta) belief in its
// engagement rate before anything is known about the member. It stands for
// the population's experience, so a new member starts where members at large
// are, and a member's own opens and clicks move it from there.
type Prior struct{ Alpha, Beta float64 }

// DefaultPriors are pseudo-counts of engagement per send: LINE and push are
// read more than mail, in-app least. Operators tune them from the
// population's delivery.results.
var DefaultPriors = map[string]Prior{
	topics.ChannelLine:  {Alpha: 2, Beta: 8},
	topics.ChannelPush:  {Alpha: 1.5, Beta: 8.5},
	topics.ChannelMail:  {Alpha: 1, Beta: 9},
	topics.ChannelInApp: {Alpha: 0.5, Beta: 9.5},
}

// openWeight is how much an open counts towards engagement relative to a
// click.
const openWeight = 0.3

// Choose picks the channel for an offer, or "" when the member is reachable
// on none of the listed ones. For `best`, the random draws are seeded from
// the offer ID: a replayed offer meets the same draws, so with unchanged
// engagement and rules it is routed the same way (what protects against a
// second send is timing's ledger of decided offer IDs, not this).
func Choose(m *topics.MemberSnapshot, listed []string, strategy, offerID string, priors map[string]Prior) string {
	var candidates []string
	for _, c := range listed {
		if m.Reachable(c) && !slices.Contains(candidates, c) {
			candidates = append(candidates, c)
		}
	}
	if len(candidates) == 0 {
		return ""
	}
	if strategy != StrategyBest || len(candidates) == 1 {
		return candidates[0]
	}
	rng := rand.New(rand.NewPCG(seed(offerID)))
	best, bestDraw := "", -1.0
	for _, c := range candidates {
		pr, ok := priors[c]
		if !ok {
			pr = Prior{Alpha: 1, Beta: 9}
		}
		g := m.Engagement[c] // decayed as of the snapshot
		success := math.Min(g.Clicked+openWeight*g.Opened, g.Sent)
		draw := betaSample(rng, pr.Alpha+success, pr.Beta+math.Max(g.Sent-success, 0))
		if draw > bestDraw {
			best, bestDraw = c, draw
		}
	}
	return best
}

func seed(s string) (uint64, uint64) {
	h := fnv.New64a()
	h.Write([]byte(s))
	a := h.Sum64()
	h.Write([]byte{0})
	return a, h.Sum64()
}

// betaSample draws from Beta(a, b) as X/(X+Y) with X~Gamma(a), Y~Gamma(b).
func betaSample(r *rand.Rand, a, b float64) float64 {
	x, y := gammaSample(r, a), gammaSample(r, b)
	if x+y == 0 {
		return 0
	}
	return x / (x + y)
}

// gammaSample draws from Gamma(k, 1) (Marsaglia and Tsang; boosted for k<1).
func gammaSample(r *rand.Rand, k float64) float64 {
	if k < 1 {
		return gammaSample(r, k+1) * math.Pow(r.Float64(), 1/k)
	}
	d := k - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

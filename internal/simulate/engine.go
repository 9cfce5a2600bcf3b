package simulate

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/campaign"
	"github.com/rtm-project/rtm/processors/channel"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Before and After index the two rule sets everywhere in this package:
// the rules in force, and those with the candidate published over them.
const (
	Before = 0
	After  = 1
)

// State is the member state the simulation reads, as it is now: the member
// table (member-state-table) with the audience stage's indexes, and the
// timing stage's ledgers (timing-table), per partition. Fill it with Put
// and PutLedger, then call Index once before simulating.
type State struct {
	partitions int32
	parts      []*partState
}

type partState struct {
	rows    map[string][]byte // member → encoded profile (member.Codec)
	ledgers map[string][]byte // member → encoded ledger (timing.Codec)
	// index is index name → key → members, sorted as a Pebble prefix scan
	// of the audience stage's store returns them.
	index map[string]map[string][]string
}

// NewState returns an empty state of partitions partitions.
func NewState(partitions int32) *State {
	s := &State{partitions: partitions, parts: make([]*partState, partitions)}
	for i := range s.parts {
		s.parts[i] = &partState{rows: map[string][]byte{}, ledgers: map[string][]byte{}}
	}
	return s
}

// Partitions is the partition count of the member-keyed topics.
func (s *State) Partitions() int32 { return s.partitions }

// Members is how many members the member table holds.
func (s *State) Members() int {
	n := 0
	for _, p := range s.parts {
		n += len(p.rows)
	}
	return n
}

// Ledgers is how many timing ledgers were read.
func (s *State) Ledgers() int {
	n := 0
	for _, p := range s.parts {
		n += len(p.ledgers)
	}
	return n
}

// Put applies one record of the member table's changelog on partition p:
// the last value of a key wins, and a nil value (a tombstone) deletes it,
// as a compacted topic read from the start does.
func (s *State) Put(p int32, key string, value []byte) {
	put(s.parts[p].rows, key, value)
}

// PutLedger applies one record of timing-table's changelog on partition p.
func (s *State) PutLedger(p int32, key string, value []byte) {
	put(s.parts[p].ledgers, key, value)
}

func put(m map[string][]byte, key string, value []byte) {
	if value == nil {
		delete(m, key)
		return
	}
	m[key] = value
}

// Index builds every partition's audience indexes from its rows with the
// member table's own indexers (member.Indexes), so an item-wide audience is
// answered exactly as the audience stage answers it from its copy: the
// same members (targetable ones only), in key order.
func (s *State) Index() error {
	indexers := member.Indexes()
	for _, p := range s.parts {
		p.index = map[string]map[string][]string{}
		for name := range indexers {
			p.index[name] = map[string][]string{}
		}
		for key, row := range p.rows {
			for name, ix := range indexers {
				keys, err := ix(key, row)
				if err != nil {
					return fmt.Errorf("indexing %s by %s: %w", key, name, err)
				}
				for _, k := range keys {
					p.index[name][k] = append(p.index[name][k], key)
				}
			}
		}
		for _, byKey := range p.index {
			for _, ms := range byKey {
				slices.Sort(ms)
			}
		}
	}
	return nil
}

// lookup is the partition's members under key of index, in key order.
func (s *State) lookup(p int32, index, key string) []string { return s.parts[p].index[index][key] }

// profile decodes a member's row, nil when the table has none.
func (s *State) profile(p int32, id string) (*member.Profile, error) {
	b, ok := s.parts[p].rows[id]
	if !ok {
		return nil, nil
	}
	v, err := member.Codec{}.Decode(b)
	if err != nil {
		return nil, err
	}
	return v.(*member.Profile), nil
}

// ledger is the member's frequency ledger as it stood when the window
// began, as far as the ledger of now tells: the slots of sends before from
// (they count against the caps of offers in the window), without the
// offers decided in the window, which the simulation decides again, and
// without the record of decided offer IDs (replay protection, which would
// make every offer of the window a duplicate). A ledger that does not
// decode is an empty one, as the timing stage treats a value it cannot read.
func (s *State) ledger(p int32, id string, from time.Time) *timing.Ledger {
	l := &timing.Ledger{}
	b, ok := s.parts[p].ledgers[id]
	if !ok {
		return l
	}
	v, err := timing.Codec{}.Decode(b)
	if err != nil {
		return l
	}
	now := v.(*timing.Ledger)
	for _, sl := range now.Slots {
		if sl.At.Before(from) {
			l.Slots = append(l.Slots, sl)
		}
	}
	return l
}

// Outcome is what happened to one offer under one rule set.
type Outcome struct {
	Sent    bool      `json:"sent"`
	Channel string    `json:"channel,omitempty"`
	SendAt  time.Time `json:"send_at,omitzero"`
	// Stopped is the decision that excluded the offer (filter, channel
	// or timing), nil when it is sent.
	Stopped *topics.Decision `json:"stopped,omitempty"`
	// Duplicate: timing had decided this offer already (an event read
	// twice in the window); it is neither sent again nor excluded.
	Duplicate bool `json:"duplicate,omitempty"`
}

// offerOutcome pairs an offer with its outcome under one rule set.
type offerOutcome struct {
	offer   topics.Offer
	outcome Outcome
}

// decide runs one offer through filter, channel and timing, the stages'
// own decision functions, at now, against the member's profile p and the
// rule set's ledger l for the member.
func decide(set *rules.Set, o *topics.Offer, p *member.Profile, l *timing.Ledger, now time.Time) Outcome {
	d, snap := filter.Decide(set, o, p, now)
	if snap == nil {
		return Outcome{Stopped: &d}
	}
	o.Member = snap
	d, ch := channel.Route(set, o, channel.DefaultPriors)
	if ch == "" {
		return Outcome{Stopped: &d}
	}
	o.Channel = ch
	v := timing.Schedule(l, set, o, now)
	switch {
	case v.Duplicate:
		return Outcome{Duplicate: true, Channel: ch}
	case v.Dropped():
		return Outcome{Stopped: &v.Decision, Channel: ch}
	}
	return Outcome{Sent: true, Channel: ch, SendAt: v.SendAt}
}

// job is one event and what the campaign stage fires for it under each
// rule set.
type job struct {
	event   *topics.Event
	firings [2][]campaign.Firing
}

// engine runs events through both rule sets. Events come in one at a
// time (Event) in the order of the merged topic; the campaign decision is
// made at once, and the offers are decided by shards that each own some
// partitions of the member-keyed topics, as a stage's instances do, so a
// member's offers are decided in event order against its own ledgers.
type engine struct {
	sets   [2]*rules.Set
	state  *State
	from   time.Time
	shards []*shard
	wg     sync.WaitGroup
	// counts of what the campaign stage would not have processed
	skipped  int
	deadLtrs [2]int
	events   int
}

type shard struct {
	e       *engine
	parts   []int32
	in      chan *job
	ledgers [2]map[string]*timing.Ledger
	// profiles are decoded rows, reused across events: the member table
	// does not change during a run and the stages' decisions only read a
	// profile. Bounded by maxProfiles (then dropped and refilled).
	profiles map[string]*member.Profile
	agg      *aggregate
}

// maxProfiles bounds a shard's decoded profiles (about 2 KB each).
const maxProfiles = 200_000

// newEngine starts workers shards (at most one per partition).
func newEngine(before, after *rules.Set, st *State, from time.Time, workers, samples int) *engine {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, int(st.partitions))
	e := &engine{sets: [2]*rules.Set{before, after}, state: st, from: from}
	for i := range workers {
		sh := &shard{e: e, in: make(chan *job, 256), agg: newAggregate(samples),
			ledgers: [2]map[string]*timing.Ledger{{}, {}}, profiles: map[string]*member.Profile{}}
		for p := int32(i); p < st.partitions; p += int32(workers) {
			sh.parts = append(sh.parts, p)
		}
		e.shards = append(e.shards, sh)
		e.wg.Go(sh.run)
	}
	return e
}

// Event simulates one event record (key as on the events topic, on
// partition p of events).
func (e *engine) Event(key []byte, partition int32, value []byte) {
	ev, err := topics.EventCodec{}.DecodeValue(value)
	if err != nil {
		e.skipped++
		return
	}
	// The campaign stage dead-letters an event whose key is not its
	// identity or that sits on another partition than its key's.
	id, err := stage.EventIdentity(ev)
	if err != nil || id != string(key) || topics.Partition(key, e.state.partitions) != partition {
		e.skipped++
		return
	}
	e.event(ev)
}

func (e *engine) event(ev *topics.Event) {
	e.events++
	j := &job{event: ev}
	for i, set := range e.sets {
		sum, decs, err := campaign.Decide(set, ev, nil)
		if err != nil {
			e.deadLtrs[i]++
			continue
		}
		for _, d := range decs {
			f, err := campaign.Fire(ev, sum, d)
			if err != nil {
				e.deadLtrs[i]++
				continue
			}
			j.firings[i] = append(j.firings[i], f)
		}
	}
	if len(j.firings[Before]) == 0 && len(j.firings[After]) == 0 {
		return
	}
	for _, sh := range e.shards {
		sh.in <- j
	}
}

// close waits for the shards and merges what they found.
func (e *engine) close() *aggregate {
	for _, sh := range e.shards {
		close(sh.in)
	}
	e.wg.Wait()
	out := newAggregate(e.shards[0].agg.samples)
	for _, sh := range e.shards {
		out.merge(sh.agg)
	}
	return out
}

func (sh *shard) run() {
	for j := range sh.in {
		sh.job(j)
	}
}

func (sh *shard) owns(p int32) bool { return slices.Contains(sh.parts, p) }

// offers are the offer candidates of a job on this shard's partitions
// under rule set i: an offer to the event's member, or, for an item-wide
// audience, one per member the partition's index finds (audience.Target
// and audience.Match, as the audience stage does on each partition).
func (sh *shard) offers(j *job, i int) []topics.Offer {
	var out []topics.Offer
	st := sh.e.state
	for _, f := range j.firings[i] {
		if f.Offer != nil {
			if sh.owns(topics.Partition([]byte(f.Offer.MemberID), st.partitions)) {
				out = append(out, *f.Offer)
			}
			continue
		}
		for _, p := range sh.parts {
			req := *f.Request
			req.Partition = p
			index, key, why, err := audience.Target(&req)
			if err != nil {
				continue // the audience stage dead-letters it; nobody gets an offer
			}
			for _, m := range st.lookup(p, index, key) {
				out = append(out, audience.Match(&req, m, why))
			}
		}
	}
	return out
}

func (sh *shard) job(j *job) {
	now := j.event.At
	var results [2][]offerOutcome
	for i := range 2 {
		for _, o := range sh.offers(j, i) {
			p, seen := sh.profiles[o.MemberID]
			if !seen {
				var err error
				if p, err = sh.e.state.profile(topics.Partition([]byte(o.MemberID), sh.e.state.partitions), o.MemberID); err != nil {
					// A row the filter stage's join could not decode
					// either: decided as for a member without a profile.
					p = nil
				}
				if len(sh.profiles) >= maxProfiles {
					clear(sh.profiles)
				}
				sh.profiles[o.MemberID] = p
			}
			l := sh.ledgers[i][o.MemberID]
			if l == nil {
				l = sh.e.state.ledger(topics.Partition([]byte(o.MemberID), sh.e.state.partitions), o.MemberID, sh.e.from)
				sh.ledgers[i][o.MemberID] = l
			}
			out := decide(sh.e.sets[i], &o, p, l, now)
			results[i] = append(results[i], offerOutcome{offer: o, outcome: out})
		}
	}
	sh.agg.add(j, results)
}

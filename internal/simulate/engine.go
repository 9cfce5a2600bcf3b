package simulate

import (
	"bytes"
	"fmt"
	"reflect"
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
// and PutLedger, then call Index once before simulating, and put nothing
// after: simulating moves the rows it decodes out of the table.
type State struct {
	partitions int32
	parts      []*partState
}

type partState struct {
	rows    map[string][]byte // member → encoded profile (member.Codec)
	ledgers map[string][]byte // member → encoded ledger (timing.Codec)
	// profiles are rows decoded (nil: undecodable), moved out of rows the
	// first time an offer to the member is decided: a profile is decoded
	// once and held once, and the stages' decisions only read it.
	profiles map[string]*member.Profile
	// index is index name → key → members, sorted as a Pebble prefix scan
	// of the audience stage's store returns them.
	index map[string]map[string][]string
}

// NewState returns an empty state of partitions partitions.
func NewState(partitions int32) *State {
	s := &State{partitions: partitions, parts: make([]*partState, partitions)}
	for i := range s.parts {
		s.parts[i] = &partState{rows: map[string][]byte{}, ledgers: map[string][]byte{}, profiles: map[string]*member.Profile{}}
	}
	return s
}

// Partitions is the partition count of the member-keyed topics.
func (s *State) Partitions() int32 { return s.partitions }

// Members is how many members the member table holds.
func (s *State) Members() int {
	n := 0
	for _, p := range s.parts {
		n += len(p.rows) + len(p.profiles)
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

// put keeps a copy of value: a record's value shares its memory with the
// rest of the fetched batch, which the copy lets go (with the versions of
// a key that later records replace).
func put(m map[string][]byte, key string, value []byte) {
	if value == nil {
		delete(m, key)
		return
	}
	m[key] = bytes.Clone(value)
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

// profile is a member's profile on partition p, nil when the member table
// has no row for it or one the filter stage's join could not decode either
// (decided as for a member without a profile). Only the shard that owns
// partition p calls it: it moves the row it decodes to profiles.
func (s *State) profile(p int32, id string) *member.Profile {
	ps := s.parts[p]
	if prof, ok := ps.profiles[id]; ok {
		return prof
	}
	b, ok := ps.rows[id]
	if !ok {
		return nil
	}
	var prof *member.Profile
	if v, err := (member.Codec{}).Decode(b); err == nil {
		prof = v.(*member.Profile)
	}
	ps.profiles[id] = prof
	delete(ps.rows, id)
	return prof
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

// offerOutcome pairs an offer with its outcome under one rule set. The
// offer is the shard's: it is valid until the shard's next job, so what
// outlives the job (a sample) copies what it needs.
type offerOutcome struct {
	offer   *topics.Offer
	outcome Outcome
}

// decide runs one offer through filter, channel and timing, the stages'
// own decision functions, at now, against the member's profile p and the
// rule set's ledger l for the member.
func decide(set *rules.Set, o *topics.Offer, p *member.Profile, l *timing.Ledger, now time.Time) Outcome {
	d, snap := filter.Decide(set, o, p, now)
	if snap == nil {
		return Outcome{Stopped: stop(d)}
	}
	o.Member = snap
	d, ch := channel.Route(set, o, channel.DefaultPriors)
	if ch == "" {
		return Outcome{Stopped: stop(d)}
	}
	o.Channel = ch
	return scheduled(timing.Schedule(l, set, o, now), ch)
}

// stop is an outcome's Stopped: a copy of d made only for an exclusion,
// so an offer that passes allocates nothing for the decisions it passed.
func stop(d topics.Decision) *topics.Decision { return &d }

// scheduled is the outcome of timing's verdict on an offer routed to ch.
func scheduled(v timing.Verdict, ch string) Outcome {
	switch {
	case v.Duplicate:
		return Outcome{Duplicate: true, Channel: ch}
	case v.Dropped():
		return Outcome{Stopped: stop(v.Decision), Channel: ch}
	}
	return Outcome{Sent: true, Channel: ch, SendAt: v.SendAt}
}

// shared says which stages decide alike under both rule sets because the
// sets hold the same tables for them, by name and version: a table's
// version is the hash of its content (rules.Compile refuses a spec whose
// version is not), so the same name and version is the same table, and
// the same input gets the same decision under either set. A decision
// made once then stands for both, which is most of the work when a
// candidate changes one table.
type shared struct{ campaign, filter, channel, timing bool }

func sharedStages(before, after *rules.Set) shared {
	return shared{
		campaign: sameTables(before, after, rules.KindCampaign),
		filter:   sameTables(before, after, rules.KindFilter),
		// The channel stage chooses among the channels the offer's
		// template has variants for: the template tables count too.
		channel: sameTables(before, after, rules.KindChannel, rules.KindTemplate),
		timing:  sameTables(before, after, rules.KindTiming),
	}
}

func sameTables(a, b *rules.Set, kinds ...rules.Kind) bool {
	for _, k := range kinds {
		if !slices.EqualFunc(a.Kind(k), b.Kind(k), func(x, y *rules.Table) bool {
			return x == y || (x.Name() == y.Name() && x.Version() == y.Version())
		}) {
			return false
		}
	}
	return true
}

// job is one event and what the campaign stage fires for it under each
// rule set. paired: the firings are the same under both (sameFirings), so
// the offers are too and are decided side by side.
type job struct {
	event   *topics.Event
	firings [2][]campaign.Firing
	paired  bool
}

// engine runs events through both rule sets. Events come in one at a
// time (Event) in the order of the merged topic; the campaign decision is
// made at once, and the offers are decided by shards that each own some
// partitions of the member-keyed topics, as a stage's instances do, so a
// member's offers are decided in event order against its own ledgers.
type engine struct {
	sets [2]*rules.Set
	// share: decide once what both sets decide alike (shared, and events
	// both sets fire alike); otherwise every offer is decided under each
	// set on its own.
	share  bool
	shared shared
	state  *State
	from   time.Time
	shards []*shard
	wg     sync.WaitGroup
	// counts of what the campaign stage would not have processed
	skipped  int
	deadLtrs [2]int
	events   int
	// fired counts the events some campaign fires for (under either set),
	// paired those of them whose offers were decided side by side.
	fired, paired int
}

type shard struct {
	e     *engine
	parts []int32
	in    chan *job
	// ledgers are each member's frequency ledgers under the two rule
	// sets. While every decision recorded for a member was the same under
	// both, the ledgers are equal and held once (ledgers[m][Before] ==
	// ledgers[m][After]), so timing decides once for both; the first
	// decision that differs gives each set its own copy (own).
	ledgers map[string]*[2]*timing.Ledger
	agg     *aggregate
	// offers and results are the current job's, reused from job to job.
	offers  [2][]topics.Offer
	results [2][]offerOutcome
}

// newEngine starts workers shards (at most one per partition). With share
// false every offer is decided under each set on its own, as if the sets
// had no table in common: the plain path the shared one is tested against.
func newEngine(before, after *rules.Set, st *State, from time.Time, workers, samples int, share bool) *engine {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, int(st.partitions))
	e := &engine{sets: [2]*rules.Set{before, after}, state: st, from: from, share: share}
	if share {
		e.shared = sharedStages(before, after)
	}
	for i := range workers {
		sh := &shard{e: e, in: make(chan *job, 256), agg: newAggregate(samples),
			ledgers: map[string]*[2]*timing.Ledger{}}
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
	j := &job{event: ev, paired: e.shared.campaign}
	var failed int
	for i, set := range e.sets {
		if j.paired && i == After {
			j.firings[After] = j.firings[Before] // and as many failures
		} else {
			j.firings[i], failed = fire(set, ev)
		}
		e.deadLtrs[i] += failed
	}
	if len(j.firings[Before]) == 0 && len(j.firings[After]) == 0 {
		return
	}
	e.fired++
	if e.share && !j.paired && sameFirings(j.firings[Before], j.firings[After]) {
		j.firings[After], j.paired = j.firings[Before], true
	}
	if j.paired {
		e.paired++
	}
	for _, sh := range e.shards {
		sh.in <- j
	}
}

// sameFirings reports whether two rule sets fire the same for an event
// but for the campaign table's version (Offer.RulesVersion), which no
// later stage reads: a changed campaign table fires most events as the
// one in force does, and their offers are then decided side by side.
func sameFirings(a, b []campaign.Firing) bool {
	return slices.EqualFunc(a, b, func(x, y campaign.Firing) bool {
		switch {
		case x.Offer != nil && y.Offer != nil:
			return sameOffer(*x.Offer, *y.Offer)
		case x.Request != nil && y.Request != nil:
			xr, yr := *x.Request, *y.Request
			xr.Offer, yr.Offer = topics.Offer{}, topics.Offer{}
			return sameOffer(x.Request.Offer, y.Request.Offer) && reflect.DeepEqual(xr, yr)
		}
		return false
	})
}

func sameOffer(x, y topics.Offer) bool {
	x.RulesVersion, y.RulesVersion = "", ""
	return reflect.DeepEqual(x, y)
}

// fire is what the campaign stage emits for an event under set, and how
// many times it would dead-letter it instead (a table it cannot evaluate,
// a decision it cannot fire).
func fire(set *rules.Set, ev *topics.Event) (out []campaign.Firing, failed int) {
	sum, decs, err := campaign.Decide(set, ev, nil)
	if err != nil {
		return nil, 1
	}
	for _, d := range decs {
		f, err := campaign.Fire(ev, sum, d)
		if err != nil {
			failed++
			continue
		}
		out = append(out, f)
	}
	return out, failed
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
// and audience.Match, as the audience stage does on each partition). They
// are written over the shard's buffer for set i.
func (sh *shard) collect(j *job, i int) []topics.Offer {
	out := sh.offers[i][:0]
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
	sh.offers[i] = out
	return out
}

func (sh *shard) job(j *job) {
	now := j.event.At
	res := &sh.results
	res[Before], res[After] = res[Before][:0], res[After][:0]
	if j.paired {
		offers := sh.collect(j, Before)
		for k := range offers {
			o := &offers[k]
			out := sh.pair(o, now)
			res[Before] = append(res[Before], offerOutcome{offer: o, outcome: out[Before]})
			res[After] = append(res[After], offerOutcome{offer: o, outcome: out[After]})
		}
	} else {
		for i := range 2 {
			offers := sh.collect(j, i)
			for k := range offers {
				o := &offers[k]
				l := own(sh.ledger(o.MemberID), i)
				out := decide(sh.e.sets[i], o, sh.profile(o.MemberID), l, now)
				res[i] = append(res[i], offerOutcome{offer: o, outcome: out})
			}
		}
	}
	sh.agg.add(j, *res)
}

// pair decides an offer under both rule sets at once: each stage whose
// tables the sets share decides once for both, as long as its input is the
// same under both; the others decide under each set.
func (sh *shard) pair(o *topics.Offer, now time.Time) [2]Outcome {
	e := sh.e
	var out [2]Outcome
	p := sh.profile(o.MemberID)
	var snap [2]*topics.MemberSnapshot
	if e.shared.filter {
		d, s := filter.Decide(e.sets[Before], o, p, now)
		if s == nil {
			why := stop(d)
			return [2]Outcome{{Stopped: why}, {Stopped: why}}
		}
		snap = [2]*topics.MemberSnapshot{s, s}
	} else {
		for i := range 2 {
			d, s := filter.Decide(e.sets[i], o, p, now)
			if s == nil {
				out[i] = Outcome{Stopped: stop(d)}
			}
			snap[i] = s
		}
	}
	// A snapshot is a function of the profile and the time
	// (member.Profile.Snapshot), so the snapshots the two filters passed
	// on are equal, and so are the offers channel reads.
	var ch [2]string
	if e.shared.channel && snap[Before] != nil && snap[After] != nil {
		o.Member = snap[Before]
		d, c := channel.Route(e.sets[Before], o, channel.DefaultPriors)
		if c == "" {
			why := stop(d)
			return [2]Outcome{{Stopped: why}, {Stopped: why}}
		}
		ch = [2]string{c, c}
	} else {
		for i := range 2 {
			if snap[i] == nil {
				continue
			}
			o.Member = snap[i]
			d, c := channel.Route(e.sets[i], o, channel.DefaultPriors)
			if c == "" {
				out[i] = Outcome{Stopped: stop(d)}
			}
			ch[i] = c
		}
	}
	if ch[Before] == "" && ch[After] == "" {
		return out
	}
	ls := sh.ledger(o.MemberID)
	// Timing decides once when its tables, the offer (same channel) and
	// the member's ledger are the same under both sets; the ledger stays
	// shared, as the same decision is recorded in both.
	if e.shared.timing && ch[Before] == ch[After] && ls[Before] == ls[After] {
		o.Member, o.Channel = snap[Before], ch[Before]
		v := scheduled(timing.Schedule(ls[Before], e.sets[Before], o, now), ch[Before])
		return [2]Outcome{v, v}
	}
	for i := range 2 {
		if ch[i] == "" {
			continue
		}
		o.Member, o.Channel = snap[i], ch[i]
		out[i] = scheduled(timing.Schedule(own(ls, i), e.sets[i], o, now), ch[i])
	}
	return out
}

func (sh *shard) profile(id string) *member.Profile {
	return sh.e.state.profile(topics.Partition([]byte(id), sh.e.state.partitions), id)
}

// ledger is the member's pair of ledgers, read from the state the first
// time (one ledger for both sets: they start equal).
func (sh *shard) ledger(id string) *[2]*timing.Ledger {
	ls := sh.ledgers[id]
	if ls == nil {
		l := sh.e.state.ledger(topics.Partition([]byte(id), sh.e.state.partitions), id, sh.e.from)
		ls = &[2]*timing.Ledger{l, l}
		sh.ledgers[id] = ls
	}
	return ls
}

// own is set i's ledger of a pair, about to record a decision of set i
// alone: a ledger the sets shared is copied first, so each has its own
// from now on.
func own(ls *[2]*timing.Ledger, i int) *timing.Ledger {
	if ls[Before] == ls[After] {
		ls[After] = cloneLedger(ls[Before])
	}
	return ls[i]
}

// cloneLedger is a copy of l that shares no memory Schedule writes to
// (it appends to and deletes from the slices in place).
func cloneLedger(l *timing.Ledger) *timing.Ledger {
	c := *l
	c.Slots, c.Held, c.Done = slices.Clone(l.Slots), slices.Clone(l.Held), slices.Clone(l.Done)
	return &c
}

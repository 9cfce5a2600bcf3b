// Package simulate tries a rule change on real traffic before it is
// published (`rtm simulate`, and the summary `rtm rules publish` shows):
// it replays the events of a window through the rules in force and through
// the candidate, in a sandbox, and reports the difference per campaign —
// reach, exclusions by rule, channel mix, sends by hour, caps hit, and the
// members who gain or lose a message with the rule that made the
// difference.
//
// The sandbox is the stages' own decision code run in memory, not a
// model of it: campaign.Decide and campaign.Fire, audience.Target and
// audience.Match over an in-memory copy of the member table indexed by the
// member table's own indexers, filter.Decide, channel.Route and
// timing.Schedule with a ledger per member and rule set. Inputs are read
// with a client that assigns partitions directly (no consumer group, so no
// offsets are committed anywhere) and produces nothing: the events of the
// window up to the end offsets at the start (new records are not
// followed), the member table and timing's ledgers as they are now (their
// compacted changelogs), and the rules in force (rules.List). Each event
// is decided at its own time (Event.At), so a run is deterministic.
//
// What the sandbox cannot know, it takes from now: profiles are today's
// (a member who joined a segment this morning is in it for last night's
// events too), and a ledger's sends before the window are those today's
// ledger still lists; sends the window made are decided again.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// DefaultSamples is how many members who gain or lose a message are
// listed per campaign unless Options says otherwise.
const DefaultSamples = 10

// Options tune Run.
type Options struct {
	// From is the start of the window of events to replay (required).
	From time.Time
	// Prune simulates `rtm rules publish --prune`: live tables missing
	// from the candidate are removed, not kept.
	Prune bool
	// Samples is how many members who gain, and who lose, a message are
	// listed per campaign: 0 means DefaultSamples, a negative number all.
	Samples int
	// Workers decide offers in parallel, each for its own partitions of
	// the member-keyed topics (0: GOMAXPROCS).
	Workers int
}

// Run simulates publishing candidate (tables as rules.LoadWorkbook returns
// them) over the rules in force, on the events since opts.From. partitions
// is the co-partitioned topics' partition count; 0 takes the member
// table's. cl is used for its connection settings only: reads go through
// clients of their own, so cl may be a transactional producer (as `rtm
// rules publish` has) and is left as it was.
func Run(ctx context.Context, cl *kgo.Client, partitions int32, candidate []rules.TableSpec, opts Options) (*Report, error) {
	start := time.Now()
	if opts.From.IsZero() {
		return nil, errors.New("simulate: no start of the window (Options.From)")
	}
	if err := rules.Validate(candidate); err != nil {
		return nil, err
	}
	live, err := kafka.Retry(ctx, func() (map[string]rules.TableSpec, error) { return rules.List(ctx, cl) })
	if err != nil {
		return nil, err
	}
	before, after, err := Sets(live, candidate, opts.Prune)
	if err != nil {
		return nil, err
	}
	rep := &Report{Changes: changes(live, candidate, opts.Prune), Samples: opts.Samples}
	if rep.Samples == 0 {
		rep.Samples = DefaultSamples
	}
	adm := kadm.NewClient(cl)
	memberTable := string(member.Table)
	n, err := partitionsOf(ctx, adm, memberTable)
	if err != nil {
		return nil, err
	}
	if partitions > 0 && n != partitions {
		return nil, fmt.Errorf("simulate: %s has %d partitions, not %d: is --partitions the cluster's?", memberTable, n, partitions)
	}
	st := NewState(n)
	if err := readTable(ctx, cl, adm, memberTable, st.Put); err != nil {
		return nil, err
	}
	ledgers := topics.TableOf(timing.Group)
	switch err := readTable(ctx, cl, adm, ledgers, st.PutLedger); {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		// The timing stage has never run: every ledger is empty.
	case err != nil:
		return nil, err
	}
	if err := st.Index(); err != nil {
		return nil, err
	}
	rep.Members, rep.Ledgers = st.Members(), st.Ledgers()

	eng := newEngine(before, after, st, opts.From, opts.Workers, rep.Samples, true)
	to, err := readEvents(ctx, cl, adm, opts.From, eng.Event)
	agg := eng.close()
	if err != nil {
		return nil, err
	}
	rep.From, rep.To = opts.From.UTC(), to.UTC()
	rep.Events, rep.Skipped = eng.events, eng.skipped
	rep.Failed = Count{Before: eng.deadLtrs[Before], After: eng.deadLtrs[After]}
	rep.Campaigns = agg.report()
	rep.Elapsed = time.Since(start)
	if s := rep.Elapsed.Seconds(); s > 0 {
		rep.EventsPerSecond = float64(rep.Events) / s
	}
	return rep, nil
}

// Sets compiles the rule sets to compare: the rules in force (live tables
// compiled as a rules.Watcher compiles them: one that does not compile is
// not in force) and the same with the candidate's tables replacing or
// adding to them by name, as publishing would (with prune, live tables the
// candidate lacks are removed too).
func Sets(live map[string]rules.TableSpec, candidate []rules.TableSpec, prune bool) (before, after *rules.Set, err error) {
	for _, name := range slices.Sorted(maps.Keys(live)) {
		t, err := rules.Compile(live[name])
		if err != nil {
			continue
		}
		before = before.With(t)
	}
	if before == nil {
		before, _ = rules.NewSet()
	}
	after = before
	if prune {
		names := map[string]bool{}
		for _, s := range candidate {
			names[s.Name] = true
		}
		for _, t := range before.Tables() {
			if !names[t.Name()] {
				after = after.Without(t.Name())
			}
		}
	}
	for _, s := range candidate {
		t, err := rules.Compile(s)
		if err != nil {
			return nil, nil, err
		}
		after = after.With(t)
	}
	return before, after, nil
}

// changes are the tables publishing the candidate would change.
func changes(live map[string]rules.TableSpec, candidate []rules.TableSpec, prune bool) []rules.Change {
	return slices.DeleteFunc(rules.Diff(live, candidate), func(c rules.Change) bool {
		return c.Op == rules.OpUnchanged || (c.Op == rules.OpRemoved && !prune)
	})
}

package simulate

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Count is a number under the rules in force and under the candidate.
type Count struct {
	Before int `json:"before"`
	After  int `json:"after"`
}

func (c *Count) add(i, n int) {
	if i == Before {
		c.Before += n
	} else {
		c.After += n
	}
}

func (c Count) String() string {
	if c.Before == c.After {
		return fmt.Sprint(c.Before)
	}
	return fmt.Sprintf("%d → %d (%+d)", c.Before, c.After, c.After-c.Before)
}

// Exclusion is a rule (or a stage's own reason) that kept offers from
// going out, with how many under each rule set. A rule is known by its
// table's name (without the version) and its name, so a rule that moved
// to another row of a changed table lines up with itself; Row is its row
// in the candidate (in force, if the candidate has no such rule).
type Exclusion struct {
	Stage  string `json:"stage"`
	Table  string `json:"table,omitempty"`
	Row    int    `json:"row,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason,omitempty"`
	Count  Count  `json:"count"`
}

type exclusionKey struct{ stage, table, rule, reason string }

func keyOf(d *topics.Decision) exclusionKey {
	table, _, _ := strings.Cut(d.Table, "@")
	return exclusionKey{d.Stage, table, d.Rule, d.Reason}
}

// exclusionCount is an Exclusion being counted.
type exclusionCount struct {
	Count
	row [2]int
}

// Hour is how many messages go out within an hour (UTC) under each set.
type Hour struct {
	At    time.Time `json:"at"`
	Count Count     `json:"count"`
}

// Sample is one member who gains or loses a message.
type Sample struct {
	MemberID string    `json:"member_id"`
	OfferID  string    `json:"offer_id"`
	EventID  string    `json:"event_id"`
	EventAt  time.Time `json:"event_at"`
	// Before and After are the offer's outcomes; nil when no campaign
	// row fired it under that set.
	Before *Outcome `json:"before,omitempty"`
	After  *Outcome `json:"after,omitempty"`
	// Why is the decision that made the difference: the exclusion under
	// the set that does not send it, or the campaign row that fires it
	// under one set only (outcome "fire").
	Why topics.Decision `json:"why"`
}

// Campaign is the difference for one campaign.
type Campaign struct {
	ID string `json:"campaign"`
	// Offers are offer candidates (campaign and audience); Messages those
	// that would go out (now or held for later); Reach the distinct
	// members messaged.
	Offers   Count `json:"offers"`
	Messages Count `json:"messages"`
	Reach    Count `json:"reach"`
	// Duplicates are offers timing had decided already (an event twice in
	// the window): neither sent again nor excluded.
	Duplicates Count `json:"duplicates,omitzero"`
	// Gained and Lost count offers sent under one set only; Rerouted
	// those sent under both on different channels; Rescheduled on the same
	// channel at another time.
	Gained      int              `json:"gained"`
	Lost        int              `json:"lost"`
	Rerouted    int              `json:"rerouted"`
	Rescheduled int              `json:"rescheduled"`
	Exclusions  []Exclusion      `json:"exclusions,omitempty"`
	Channels    map[string]Count `json:"channels,omitempty"`
	Hours       []Hour           `json:"hours,omitempty"`
	Caps        map[string]Count `json:"caps,omitempty"`
	GainedBy    []Sample         `json:"gained_samples,omitempty"`
	LostBy      []Sample         `json:"lost_samples,omitempty"`
	exclusions  map[exclusionKey]*exclusionCount
	hours       map[int64]*Count
	members     [2]map[string]struct{}
	reached     Count
	gainedAll   []Sample
	lostAll     []Sample
	sampleLimit int
}

// Report is what simulate found.
type Report struct {
	// From is the window's start; To is when its end offsets were read.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Events is the number of events simulated; Skipped the records of
	// the window the campaign stage would dead-letter (undecodable,
	// mis-keyed); Failed the events a campaign table could not be
	// evaluated for, or whose campaign could not be fired (dead-lettered
	// by the stage), under each set.
	Events  int   `json:"events"`
	Skipped int   `json:"skipped"`
	Failed  Count `json:"failed"`
	// Members and Ledgers are the rows of the member table and of
	// timing's ledger table that were read.
	Members int `json:"members"`
	Ledgers int `json:"ledgers"`
	// Changes are the tables the candidate changes, as `rtm rules diff`
	// prints them.
	Changes   []rules.Change `json:"changes"`
	Campaigns []*Campaign    `json:"campaigns"`
	// Samples is the most members listed per campaign and direction.
	Samples int `json:"samples"`
	// Elapsed is the simulation's wall time (reading included).
	Elapsed         time.Duration `json:"elapsed_ns"`
	EventsPerSecond float64       `json:"events_per_second"`
}

// aggregate collects a shard's outcomes per campaign.
type aggregate struct {
	samples   int
	campaigns map[string]*Campaign
	// byID indexes the offers of the event being added, per set; kept
	// from one event to the next (add clears it).
	byID [2]map[string]*offerOutcome
}

func newAggregate(samples int) *aggregate {
	return &aggregate{samples: samples, campaigns: map[string]*Campaign{}, byID: [2]map[string]*offerOutcome{{}, {}}}
}

func (a *aggregate) campaign(id string) *Campaign {
	c := a.campaigns[id]
	if c == nil {
		c = &Campaign{ID: id, Channels: map[string]Count{}, Caps: map[string]Count{}, exclusions: map[exclusionKey]*exclusionCount{},
			hours: map[int64]*Count{}, members: [2]map[string]struct{}{{}, {}}, sampleLimit: a.samples}
		a.campaigns[id] = c
	}
	return c
}

var caps = []string{timing.ReasonCapDay, timing.ReasonCapWeek, timing.ReasonCapCampaignDay}

// add records one event's offers on a shard under both sets and compares
// them offer by offer (offer IDs are derived from campaign, event and
// member, so the same offer has the same ID under both).
func (a *aggregate) add(j *job, results [2][]offerOutcome) {
	byID := a.byID
	clear(byID[Before])
	clear(byID[After])
	for i := range 2 {
		for k := range results[i] {
			r := &results[i][k]
			byID[i][r.offer.OfferID] = r
			c := a.campaign(r.offer.CampaignID)
			c.Offers.add(i, 1)
			o := &r.outcome
			switch {
			case o.Duplicate:
				c.Duplicates.add(i, 1)
			case o.Sent:
				c.Messages.add(i, 1)
				c.members[i][r.offer.MemberID] = struct{}{}
				ch := c.Channels[o.Channel]
				ch.add(i, 1)
				c.Channels[o.Channel] = ch
				h := o.SendAt.Truncate(time.Hour).Unix()
				if c.hours[h] == nil {
					c.hours[h] = &Count{}
				}
				c.hours[h].add(i, 1)
			default:
				k := keyOf(o.Stopped)
				if c.exclusions[k] == nil {
					c.exclusions[k] = &exclusionCount{}
				}
				c.exclusions[k].add(i, 1)
				c.exclusions[k].row[i] = o.Stopped.Row
				if o.Stopped.Stage == timing.Group && slices.Contains(caps, o.Stopped.Reason) {
					cp := c.Caps[o.Stopped.Reason]
					cp.add(i, 1)
					c.Caps[o.Stopped.Reason] = cp
				}
			}
		}
	}
	for i := range 2 {
		for k := range results[i] {
			r := &results[i][k]
			other := byID[1-i][r.offer.OfferID]
			if i == After && other != nil {
				continue // compared from the before side
			}
			var b, af *offerOutcome
			if i == Before {
				b, af = r, other
			} else {
				af = r
			}
			a.compare(j, b, af)
		}
	}
}

// compare classifies one offer present under either set (nil: absent).
func (a *aggregate) compare(j *job, b, af *offerOutcome) {
	sent := func(r *offerOutcome) bool { return r != nil && r.outcome.Sent }
	ref := cmp.Or(b, af)
	c := a.campaign(ref.offer.CampaignID)
	// A sample outlives the event: it has copies of the outcomes, which
	// are the shard's to reuse.
	sample := func() Sample {
		s := Sample{MemberID: ref.offer.MemberID, OfferID: ref.offer.OfferID, EventID: j.event.EventID, EventAt: j.event.At}
		if b != nil {
			s.Before = new(b.outcome)
		}
		if af != nil {
			s.After = new(af.outcome)
		}
		return s
	}
	switch {
	case sent(b) && sent(af):
		switch {
		case b.outcome.Channel != af.outcome.Channel:
			c.Rerouted++
		case !b.outcome.SendAt.Equal(af.outcome.SendAt):
			c.Rescheduled++
		}
	case sent(b):
		c.Lost++
		s := sample()
		s.Why = why(af, b)
		c.lostAll = keepSmallest(append(c.lostAll, s), c.sampleLimit)
	case sent(af):
		c.Gained++
		s := sample()
		s.Why = why(b, af)
		c.gainedAll = keepSmallest(append(c.gainedAll, s), c.sampleLimit)
	}
}

// why is the decision that keeps `not` from sending what `sends` sends:
// its exclusion, or, when it has no such offer at all, the campaign row
// that fired the offer under the other set.
func why(not, sends *offerOutcome) topics.Decision {
	switch {
	case not == nil:
		return sends.offer.Decisions[0]
	case not.outcome.Stopped != nil:
		return *not.outcome.Stopped
	default:
		return topics.Decision{Stage: timing.Group, Outcome: "duplicate", Reason: "already decided in the window"}
	}
}

// keepSmallest keeps at most n samples (n < 0: all), the first in
// member and offer order, so which members are listed does not depend on
// how the work was split.
func keepSmallest(s []Sample, n int) []Sample {
	if n < 0 || len(s) <= 4*max(n, 16) {
		return s
	}
	sortSamples(s)
	return slices.Clip(s[:n])
}

func sortSamples(s []Sample) {
	slices.SortFunc(s, func(a, b Sample) int {
		return cmp.Or(strings.Compare(a.MemberID, b.MemberID), strings.Compare(a.OfferID, b.OfferID))
	})
}

// merge folds another shard's aggregate into a. Shards own disjoint
// partitions, so their members are disjoint and reach adds up.
func (a *aggregate) merge(o *aggregate) {
	for id, src := range o.campaigns {
		c := a.campaign(id)
		for _, p := range []struct{ dst, src *Count }{{&c.Offers, &src.Offers}, {&c.Messages, &src.Messages}, {&c.Duplicates, &src.Duplicates}} {
			p.dst.Before += p.src.Before
			p.dst.After += p.src.After
		}
		c.reached.Before += len(src.members[Before]) + src.reached.Before
		c.reached.After += len(src.members[After]) + src.reached.After
		c.Gained += src.Gained
		c.Lost += src.Lost
		c.Rerouted += src.Rerouted
		c.Rescheduled += src.Rescheduled
		for k, v := range src.exclusions {
			d := c.exclusions[k]
			if d == nil {
				d = &exclusionCount{}
				c.exclusions[k] = d
			}
			d.Before += v.Before
			d.After += v.After
			for i, r := range v.row {
				d.row[i] = cmp.Or(d.row[i], r)
			}
		}
		for k, v := range src.hours {
			if c.hours[k] == nil {
				c.hours[k] = &Count{}
			}
			c.hours[k].Before += v.Before
			c.hours[k].After += v.After
		}
		for _, m := range []struct{ dst, src map[string]Count }{{c.Channels, src.Channels}, {c.Caps, src.Caps}} {
			for k, v := range m.src {
				d := m.dst[k]
				d.Before += v.Before
				d.After += v.After
				m.dst[k] = d
			}
		}
		c.gainedAll = keepSmallest(append(c.gainedAll, src.gainedAll...), a.samples)
		c.lostAll = keepSmallest(append(c.lostAll, src.lostAll...), a.samples)
	}
}

// campaignsOf finishes the merged aggregate: campaigns in ID order, each
// with its lists sorted and its samples cut to the limit.
func (a *aggregate) report() []*Campaign {
	out := make([]*Campaign, 0, len(a.campaigns))
	for _, id := range slices.Sorted(maps.Keys(a.campaigns)) {
		c := a.campaigns[id]
		c.Reach = Count{Before: c.reached.Before + len(c.members[Before]), After: c.reached.After + len(c.members[After])}
		for k, v := range c.exclusions {
			c.Exclusions = append(c.Exclusions, Exclusion{Stage: k.stage, Table: k.table, Row: cmp.Or(v.row[After], v.row[Before]),
				Rule: k.rule, Reason: k.reason, Count: v.Count})
		}
		slices.SortFunc(c.Exclusions, func(x, y Exclusion) int {
			return cmp.Or(stageRank(x.Stage)-stageRank(y.Stage), strings.Compare(x.Table, y.Table), x.Row-y.Row,
				strings.Compare(x.Reason, y.Reason), strings.Compare(x.Rule, y.Rule))
		})
		for _, h := range slices.Sorted(maps.Keys(c.hours)) {
			c.Hours = append(c.Hours, Hour{At: time.Unix(h, 0).UTC(), Count: *c.hours[h]})
		}
		for _, s := range []*[]Sample{&c.gainedAll, &c.lostAll} {
			sortSamples(*s)
			if a.samples >= 0 && len(*s) > a.samples {
				*s = (*s)[:a.samples]
			}
		}
		c.GainedBy, c.LostBy = c.gainedAll, c.lostAll
		if len(c.Caps) == 0 {
			c.Caps = nil
		}
		out = append(out, c)
	}
	return out
}

func stageRank(s string) int {
	return slices.Index([]string{"campaign", "audience", "filter", "channel", "timing"}, s)
}

// Changed reports whether the candidate changes anything the window
// shows: a message gained, lost, rerouted or rescheduled.
func (c *Campaign) Changed() bool {
	return c.Gained+c.Lost+c.Rerouted+c.Rescheduled > 0 || c.Offers.Before != c.Offers.After
}

// WriteText prints the report for a person: the tables the candidate
// changes, then per campaign the numbers that differ and the members who
// gain or lose a message, with the rule that made the difference.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "simulated %d events from %s to %s (%d skipped as the campaign stage would dead-letter them) against %d members and %d timing ledgers in %s (%.0f events/s)\n",
		r.Events, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.Skipped, r.Members, r.Ledgers,
		r.Elapsed.Round(time.Millisecond), r.EventsPerSecond)
	if r.Failed.Before+r.Failed.After > 0 {
		fmt.Fprintf(&b, "events the campaign stage would dead-letter (a rule error or an unfit audience): %s\n", r.Failed)
	}
	if len(r.Changes) == 0 {
		b.WriteString("the candidate changes no table\n")
	} else {
		b.WriteString("the candidate changes:\n")
	}
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "  %s\n", strings.ReplaceAll(c.String(), "\n", "\n  "))
	}
	if len(r.Campaigns) == 0 {
		b.WriteString("\nno campaign fired for any event of the window, under either rule set\n")
	}
	for _, c := range r.Campaigns {
		fmt.Fprintf(&b, "\ncampaign %s", c.ID)
		if !c.Changed() {
			b.WriteString(" (unchanged)")
		}
		fmt.Fprintf(&b, "\n  reach      %s members; messages %s; offers %s\n", c.Reach, c.Messages, c.Offers)
		fmt.Fprintf(&b, "  change     %d lost, %d gained, %d on another channel, %d at another time\n", c.Lost, c.Gained, c.Rerouted, c.Rescheduled)
		if c.Duplicates.Before+c.Duplicates.After > 0 {
			fmt.Fprintf(&b, "  duplicates %s (offers decided twice in the window)\n", c.Duplicates)
		}
		if len(c.Channels) > 0 {
			b.WriteString("  channels  ")
			for _, ch := range slices.SortedFunc(maps.Keys(c.Channels), func(x, y string) int {
				return cmp.Compare(slices.Index(rules.Channels, x), slices.Index(rules.Channels, y))
			}) {
				fmt.Fprintf(&b, " %s %s;", ch, c.Channels[ch])
			}
			b.WriteString("\n")
		}
		if len(c.Caps) > 0 {
			b.WriteString("  caps hit  ")
			for _, k := range slices.Sorted(maps.Keys(c.Caps)) {
				fmt.Fprintf(&b, " %s %s;", k, c.Caps[k])
			}
			b.WriteString("\n")
		}
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		if len(c.Exclusions) > 0 {
			fmt.Fprintln(tw, "  exclusions\tbefore\tafter\t")
			for _, e := range c.Exclusions {
				fmt.Fprintf(tw, "    %s\t%d\t%d\t\n", describe(topics.Decision{Stage: e.Stage, Table: e.Table, Row: e.Row, Rule: e.Rule, Reason: e.Reason}), e.Count.Before, e.Count.After)
			}
		}
		if len(c.Hours) > 0 {
			fmt.Fprintln(tw, "  sends by hour (UTC)\tbefore\tafter\t")
			for _, h := range c.Hours {
				fmt.Fprintf(tw, "    %s\t%d\t%d\t\n", h.At.Format("2006-01-02 15:00"), h.Count.Before, h.Count.After)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, l := range []struct {
			what    string
			n       int
			samples []Sample
		}{{"lose", c.Lost, c.LostBy}, {"gain", c.Gained, c.GainedBy}} {
			if l.n == 0 {
				continue
			}
			fmt.Fprintf(&b, "  members who %s the message (%d", l.what, l.n)
			if len(l.samples) < l.n {
				fmt.Fprintf(&b, ", first %d", len(l.samples))
			}
			b.WriteString("):\n")
			for _, s := range l.samples {
				fmt.Fprintf(&b, "    %s  %s  %s\n", s.MemberID, s.EventID, because(l.what, s.Why))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// describe names a decision: stage, table, row, rule and reason.
func describe(d topics.Decision) string {
	var b strings.Builder
	b.WriteString(d.Stage)
	if d.Table != "" {
		table, _, _ := strings.Cut(d.Table, "@")
		fmt.Fprintf(&b, " %s", table)
	}
	if d.Row > 0 {
		fmt.Fprintf(&b, " row %d", d.Row)
	}
	if d.Rule != "" {
		fmt.Fprintf(&b, " %q", d.Rule)
	}
	if d.Reason != "" {
		fmt.Fprintf(&b, ": %s", d.Reason)
	}
	return b.String()
}

func because(what string, d topics.Decision) string {
	switch {
	case d.Outcome == "fire" && what == "lose":
		return "no longer fired: " + describe(d) + " fires it only under the rules in force"
	case d.Outcome == "fire":
		return "newly fired by " + describe(d)
	case what == "lose":
		return "excluded by " + describe(d)
	default:
		return "no longer excluded by " + describe(d)
	}
}

// Package explain answers a marketer's first question about a member —
// "why did M get nothing?" — from the topics themselves: every offer for
// M since a time, and how far it got through the stages, with the rule,
// table version, row and reason of the decision that stopped it.
//
// Every topic after the campaign stage is keyed by member, so all of M's
// records are on one partition of each (topics.Partition): explain reads
// that partition only, from the first offset at or after since. It reads
// what the stages wrote and changes nothing.
package explain

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/topics"
)

// Topics are the member-keyed topics an offer crosses, in pipeline order.
var Topics = []string{topics.OffersCandidates, topics.OffersFiltered, topics.OffersRouted, topics.OffersReady,
	topics.OffersExcluded, topics.Deliveries, topics.DeliveryResults}

// Outcomes of an offer, as far as the topics show.
const (
	OutcomeExcluded   = "excluded"   // a stage excluded it (Stopped says which and why)
	OutcomeSent       = "sent"       // its delivery was sent
	OutcomeSuppressed = "suppressed" // the member withdrew consent after filtering
	OutcomeFailed     = "failed"     // the channel refused it for good, or it expired
	OutcomeInFlight   = "in flight"  // on its way, or held by timing (quiet hours, best hour)
	// OutcomeHeldOut: the member is in the campaign's hold-out (control)
	// group; the offer went through every stage and was not sent.
	OutcomeHeldOut = "held out"
)

// Offer is the path of one offer through the stages.
type Offer struct {
	OfferID    string              `json:"offer_id"`
	CampaignID string              `json:"campaign_id"`
	Event      topics.EventSummary `json:"event"`
	// First is when the campaign stage emitted it (the candidate's
	// record time), or the earliest record of it that was read.
	First time.Time `json:"first"`
	// Reached lists the topics the offer was seen on, in pipeline order.
	Reached []string `json:"reached"`
	// Decisions are the stages' decisions, from the furthest record.
	Decisions []topics.Decision `json:"decisions"`
	Outcome   string            `json:"outcome"`
	// Stopped is the decision that excluded it, if one did.
	Stopped    *topics.Decision       `json:"stopped,omitempty"`
	Channel    string                 `json:"channel,omitempty"`
	SendAt     time.Time              `json:"send_at,omitzero"`
	DeliveryID string                 `json:"delivery_id,omitempty"`
	Result     *topics.DeliveryResult `json:"result,omitempty"`
	// Last is the furthest offer record read (its event, template and
	// timing), for a test render of the same offer.
	Last *topics.Offer `json:"-"`
}

// Report is what explain found for one member.
type Report struct {
	MemberID  string    `json:"member_id"`
	Partition int32     `json:"partition"`
	Since     time.Time `json:"since"`
	Offers    []Offer   `json:"offers"`
	// Unmatched are the events since then that concerned the member (its
	// own, or of an item it favourites now) and fired no campaign.
	Unmatched []Unmatched `json:"unmatched,omitempty"`
	// Records is how many records were read.
	Records int `json:"records"`
}

// Unmatched is an event that concerned the member and matched no
// campaign, with the campaign tables (name@version) that were evaluated.
type Unmatched struct {
	Event     topics.EventSummary `json:"event"`
	Tables    []string            `json:"tables"`
	Concerned string              `json:"concerned"` // how the event concerned the member
	At        time.Time           `json:"at"`
}

// Member reads member's partition of every topic in Topics from since to
// the end offsets as of the call, and returns its offers, oldest first,
// and the events since then that concerned it and matched no campaign.
// partitions is the co-partitioned topics' partition count.
func Member(ctx context.Context, cl *kgo.Client, partitions int32, member string, since time.Time) (*Report, error) {
	if member == "" {
		return nil, fmt.Errorf("no member ID")
	}
	p := topics.Partition([]byte(member), partitions)
	rep := &Report{MemberID: member, Partition: p, Since: since}
	parts := map[string][]int32{}
	for _, t := range Topics {
		parts[t] = []int32{p}
	}
	offers := map[string]*Offer{}
	n, err := kafka.Scan(ctx, cl, parts, since, func(r *kgo.Record) {
		if string(r.Key) == member {
			add(offers, r)
		}
	})
	if err != nil {
		return nil, err
	}
	rep.Records += n
	for _, o := range offers {
		finish(o)
		rep.Offers = append(rep.Offers, *o)
	}
	slices.SortFunc(rep.Offers, func(a, b Offer) int {
		return cmp.Or(a.First.Compare(b.First), strings.Compare(a.OfferID, b.OfferID))
	})
	if rep.Unmatched, n, err = unmatched(ctx, cl, partitions, member, since); err != nil {
		return nil, err
	}
	rep.Records += n
	return rep, nil
}

// unmatched returns the events since since that concerned member and
// fired no campaign: the member's own events (on its partition of
// events.unmatched) and those of the items it favourites now (each on its
// item's partition). The campaign stage writes one record per event, not
// per member, so this is where the two meet.
func unmatched(ctx context.Context, cl *kgo.Client, partitions int32, member string, since time.Time) ([]Unmatched, int, error) {
	prof, err := Profile(ctx, cl, partitions, member)
	if err != nil {
		return nil, 0, err
	}
	why := map[string]string{member: "the member's own event"}
	parts := []int32{topics.Partition([]byte(member), partitions)}
	if prof != nil {
		for item := range prof.Favorites {
			why[item] = "favourited " + item
			parts = append(parts, topics.Partition([]byte(item), partitions))
		}
	}
	slices.Sort(parts)
	var out []Unmatched
	n, err := kafka.Scan(ctx, cl, map[string][]int32{topics.EventsUnmatched: slices.Compact(parts)}, since, func(r *kgo.Record) {
		w, ok := why[string(r.Key)]
		if !ok {
			return
		}
		var u topics.UnmatchedEvent
		if json.Unmarshal(r.Value, &u) != nil || u.Event.EventID == "" {
			return
		}
		out = append(out, Unmatched{Event: u.Event, Tables: u.Tables, Concerned: w, At: r.Timestamp})
	})
	// A replayed event is recorded again under the same ID: say it once,
	// at its first record.
	seen := map[string]bool{}
	out = slices.DeleteFunc(out, func(u Unmatched) bool {
		dup := seen[u.Event.EventID]
		seen[u.Event.EventID] = true
		return dup
	})
	slices.SortFunc(out, func(a, b Unmatched) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Event.EventID, b.Event.EventID))
	})
	return out, n, err
}

// stageOrder ranks the topics: a later topic's record of an offer carries
// every decision an earlier one did.
func stageOrder(topic string) int { return slices.Index(Topics, topic) }

// add folds one record into the offer it is about. A record that does not
// decode is skipped: the stage that wrote it dead-lettered nothing, so it
// is not an offer explain can speak for.
func add(offers map[string]*Offer, r *kgo.Record) {
	get := func(id string) *Offer {
		o := offers[id]
		if o == nil {
			o = &Offer{OfferID: id, First: r.Timestamp}
			offers[id] = o
		}
		if r.Timestamp.Before(o.First) {
			o.First = r.Timestamp
		}
		if !slices.Contains(o.Reached, r.Topic) {
			o.Reached = append(o.Reached, r.Topic)
			slices.SortFunc(o.Reached, func(a, b string) int { return stageOrder(a) - stageOrder(b) })
		}
		return o
	}
	switch r.Topic {
	case topics.Deliveries:
		var d topics.Delivery
		if json.Unmarshal(r.Value, &d) != nil || d.OfferID == "" {
			return
		}
		o := get(d.OfferID)
		o.DeliveryID, o.Channel = d.DeliveryID, d.Channel
		if o.CampaignID == "" {
			o.CampaignID = d.CampaignID
		}
	case topics.DeliveryResults:
		var res topics.DeliveryResult
		if json.Unmarshal(r.Value, &res) != nil || res.OfferID == "" {
			return
		}
		o := get(res.OfferID)
		// The last result counts: a retried delivery's result follows
		// its earlier ones.
		o.Result = &res
		o.DeliveryID, o.Channel = res.DeliveryID, res.Channel
	default:
		var of topics.Offer
		if json.Unmarshal(r.Value, &of) != nil || of.OfferID == "" {
			return
		}
		o := get(of.OfferID)
		o.CampaignID, o.Event = of.CampaignID, of.Event
		if len(of.Decisions) >= len(o.Decisions) {
			o.Decisions, o.Last = of.Decisions, &of
			if of.Channel != "" {
				o.Channel = of.Channel
			}
			o.SendAt = of.SendAt
		}
	}
}

// finish decides an offer's outcome from what was read.
func finish(o *Offer) {
	for i := range o.Decisions {
		if o.Decisions[i].Outcome == "exclude" {
			o.Stopped = &o.Decisions[i]
		}
	}
	switch {
	case o.Result != nil && o.Result.Status == topics.StatusSent:
		o.Outcome = OutcomeSent
	case o.Result != nil && o.Result.Status == topics.StatusSuppressed:
		o.Outcome = OutcomeSuppressed
	case o.Result != nil && o.Result.Status == topics.StatusHeldOut:
		o.Outcome = OutcomeHeldOut
	case o.Result != nil:
		o.Outcome = OutcomeFailed
	case o.Stopped != nil:
		o.Outcome = OutcomeExcluded
	default:
		o.Outcome = OutcomeInFlight
	}
}

// WriteText prints the report for a person: one paragraph per offer.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "member %s (partition %d), offers since %s: %d (%d records read)\n",
		r.MemberID, r.Partition, r.Since.UTC().Format(time.RFC3339), len(r.Offers), r.Records)
	if len(r.Offers) == 0 {
		b.WriteString("no offer for this member since then: no campaign chose the member, or the events were before --since\n")
	}
	for _, o := range r.Offers {
		fmt.Fprintf(&b, "\n%s  campaign %s, offer %s\n", o.First.UTC().Format(time.RFC3339), o.CampaignID, o.OfferID)
		if o.Event.Type != "" {
			fmt.Fprintf(&b, "  event     %s %s", o.Event.Type, o.Event.EventID)
			if o.Event.ItemID != "" {
				fmt.Fprintf(&b, " (item %s)", o.Event.ItemID)
			}
			b.WriteString("\n")
		}
		for _, d := range o.Decisions {
			fmt.Fprintf(&b, "  %-9s %s", d.Stage, d.Outcome)
			if d.Table != "" {
				fmt.Fprintf(&b, "  table %s", d.Table)
			}
			if d.Row > 0 {
				fmt.Fprintf(&b, " row %d", d.Row)
			}
			if d.Rule != "" {
				fmt.Fprintf(&b, " rule %q", d.Rule)
			}
			if d.Reason != "" {
				fmt.Fprintf(&b, "  reason: %s", d.Reason)
			}
			b.WriteString("\n")
		}
		switch o.Outcome {
		case OutcomeExcluded:
			fmt.Fprintf(&b, "  outcome   excluded by %s: %s\n", o.Stopped.Stage, cmp.Or(o.Stopped.Reason, o.Stopped.Rule))
		case OutcomeInFlight:
			fmt.Fprintf(&b, "  outcome   in flight: last seen on %s (timing may be holding it", o.Reached[len(o.Reached)-1])
			if !o.SendAt.IsZero() {
				fmt.Fprintf(&b, "; send at %s", o.SendAt.UTC().Format(time.RFC3339))
			}
			b.WriteString(")\n")
		case OutcomeHeldOut:
			fmt.Fprintf(&b, "  outcome   held out (control group): not sent on %s, delivery %s at %s\n", o.Channel, o.DeliveryID, o.Result.At.UTC().Format(time.RFC3339))
		default:
			fmt.Fprintf(&b, "  outcome   %s on %s, delivery %s at %s", o.Outcome, o.Channel, o.DeliveryID, o.Result.At.UTC().Format(time.RFC3339))
			if o.Result.Error != "" {
				fmt.Fprintf(&b, ": %s", o.Result.Error)
			}
			b.WriteString("\n")
		}
	}
	for _, u := range r.Unmatched {
		fmt.Fprintf(&b, "\n%s  no campaign matched\n", u.At.UTC().Format(time.RFC3339))
		fmt.Fprintf(&b, "  event     %s %s (%s)\n", u.Event.Type, u.Event.EventID, u.Concerned)
		tables := "none published"
		if len(u.Tables) > 0 {
			tables = strings.Join(u.Tables, ", ")
		}
		fmt.Fprintf(&b, "  campaign  no row matched in %s\n", tables)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Profile returns member's current profile: the last value under its key
// in its partition of the member table's changelog (compacted, so the
// read is about the partition's members, not its history), or nil when
// member-state has none.
func Profile(ctx context.Context, cl *kgo.Client, partitions int32, id string) (*member.Profile, error) {
	t := string(member.Table)
	p := topics.Partition([]byte(id), partitions)
	adm := kadm.NewClient(cl)
	starts, err := kafka.ListOffsets(ctx, func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, t) })
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", t, err)
	}
	ends, err := kafka.ListOffsets(ctx, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, t) })
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", t, err)
	}
	s, ok := starts.Lookup(t, p)
	e, ok2 := ends.Lookup(t, p)
	if !ok || !ok2 {
		return nil, fmt.Errorf("topic %s has no partition %d: is --partitions the cluster's?", t, p)
	}
	if s.Offset >= e.Offset {
		return nil, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{t: {p: kgo.NewOffset().At(s.Offset)}})
	defer cl.RemoveConsumePartitions(map[string][]int32{t: {p}})
	var last []byte
	for done := false; !done; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s/%d: %w", t, p, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("reading %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == id {
				last = r.Value // nil: deleted
			}
			done = done || r.Offset+1 >= e.Offset
		})
	}
	if last == nil {
		return nil, nil
	}
	v, err := member.Codec{}.Decode(last)
	if err != nil {
		return nil, fmt.Errorf("decoding %s's profile: %w", id, err)
	}
	return v.(*member.Profile), nil
}

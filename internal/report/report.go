// Package report answers "did campaign C work?": per group — the members
// who were sent C's messages (treatment) and the members held out of them
// (holdout, topics.HeldOut) — the members, sends, opens, clicks and
// conversions, and the uplift of the conversion rate with a 95%
// confidence interval.
//
// It reads what the stages wrote and changes nothing: delivery.results
// (sent and held_out results of C make the groups), behavior.events (the
// collector's open and click hits name the delivery) and
// campaign.conversions (orders member-state attributed to the deliveries).
// The console and `rtm report` share Campaign and WriteText.
package report

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/topics"
)

// Interval names the confidence interval of Uplift.
const Interval = "Newcombe hybrid score interval (method 10), 95%"

// z is the standard normal quantile of a two-sided 95% interval.
const z = 1.959963984540054

// Group is what one group of a campaign's audience did.
type Group struct {
	// Members are the distinct members with a result of the campaign in
	// the group: a sent one (treatment) or a held_out one (holdout).
	Members int `json:"members"`
	// Sends counts those results: messages sent, or (holdout) messages
	// that would have been sent.
	Sends int `json:"sends"`
	// Opens and Clicks count the group's deliveries opened or clicked at
	// least once (tracking hits; a held-out member has none to open).
	Opens  int `json:"opens"`
	Clicks int `json:"clicks"`
	// Conversions counts distinct (offer, order) pairs: orders within the
	// conversion window after a delivery of the campaign. Converted counts
	// the members with at least one, and Rate is Converted/Members.
	Conversions int     `json:"conversions"`
	Converted   int     `json:"converted_members"`
	Rate        float64 `json:"conversion_rate"`
}

// Uplift compares the groups' conversion rates.
type Uplift struct {
	// Absolute is the treatment's rate minus the hold-out's.
	Absolute float64 `json:"absolute"`
	// Relative is Absolute over the hold-out's rate; absent when the
	// hold-out converted nobody.
	Relative *float64 `json:"relative,omitempty"`
	// Low and High bound Absolute (Interval).
	Low      float64 `json:"ci_low"`
	High     float64 `json:"ci_high"`
	Interval string  `json:"interval"`
}

// Report is a campaign's groups since a time.
type Report struct {
	Campaign  string    `json:"campaign"`
	Since     time.Time `json:"since"`
	Treatment Group     `json:"treatment"`
	Holdout   Group     `json:"holdout"`
	// Mixed members had both a sent and a held_out result (the
	// campaign's hold-out percentage changed during the period); they
	// are left out of both groups, which would otherwise not be disjoint.
	Mixed int `json:"mixed_members,omitempty"`
	// Uplift is absent while either group has no member.
	Uplift *Uplift `json:"uplift,omitempty"`
	// Records is how many records were read.
	Records int `json:"records"`
}

// Topics are the topics a report reads.
var Topics = []string{topics.DeliveryResults, topics.BehaviorEvents, topics.Conversions}

// Campaign reads every partition of Topics from the first offsets at or
// after since to their ends as of the call and reports campaign's groups.
// cl must not consume anything else meanwhile (partitions are added and
// removed here).
func Campaign(ctx context.Context, cl *kgo.Client, campaign string, since time.Time) (*Report, error) {
	if campaign == "" {
		return nil, fmt.Errorf("no campaign ID")
	}
	var in Input
	n, err := read(ctx, cl, since, func(r *kgo.Record) {
		// A record that does not decode was dead-lettered by the stage
		// that read it (or is not RTM's): it is no result, hit or
		// conversion this report can speak for.
		switch r.Topic {
		case topics.DeliveryResults:
			if v, err := (topics.DeliveryResultCodec{}).DecodeValue(r.Value); err == nil && v.CampaignID == campaign {
				in.Results = append(in.Results, *v)
			}
		case topics.Conversions:
			if v, err := (topics.ConversionCodec{}).DecodeValue(r.Value); err == nil && v.CampaignID == campaign {
				in.Conversions = append(in.Conversions, *v)
			}
		case topics.BehaviorEvents:
			if v, err := (topics.BehaviorEventCodec{}).DecodeValue(r.Value); err == nil && v.DeliveryID != "" &&
				(v.Type == "open" || v.Type == "click") {
				in.Events = append(in.Events, *v)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	rep := Compute(campaign, in)
	rep.Since, rep.Records = since, n
	return rep, nil
}

// Input is what a report is computed from: one campaign's delivery
// results and conversions, and open and click events.
type Input struct {
	Results     []topics.DeliveryResult
	Events      []topics.BehaviorEvent
	Conversions []topics.Conversion
}

// Compute builds the report of campaign from its records. Records of other
// campaigns, results that reached nobody (failed, suppressed), hits and
// conversions of deliveries that are not the campaign's sent or held_out
// ones are ignored, and repeated records (a redelivery, a replay) count
// once: results by delivery ID, hits by delivery, conversions by ID.
func Compute(campaign string, in Input) *Report {
	rep := &Report{Campaign: campaign}
	groupOf := map[string]string{}  // member → group
	delivery := map[string]string{} // delivery ID → member, for sent and held_out results
	offers := map[string]string{}   // offer ID → member
	mixed := map[string]bool{}
	for _, r := range in.Results {
		g := topics.ResultGroup(r.Status)
		if r.CampaignID != campaign || g == "" {
			continue
		}
		if _, dup := delivery[r.DeliveryID]; dup {
			continue
		}
		delivery[r.DeliveryID], offers[r.OfferID] = r.MemberID, r.MemberID
		if was, ok := groupOf[r.MemberID]; ok && was != g {
			mixed[r.MemberID] = true
		}
		groupOf[r.MemberID] = g
	}
	group := func(member string) *Group {
		if mixed[member] {
			return nil
		}
		switch groupOf[member] {
		case topics.GroupTreatment:
			return &rep.Treatment
		case topics.GroupHoldout:
			return &rep.Holdout
		}
		return nil
	}
	for m := range groupOf {
		if g := group(m); g != nil {
			g.Members++
		}
	}
	for _, m := range delivery {
		if g := group(m); g != nil {
			g.Sends++
		}
	}
	opened, clicked := map[string]bool{}, map[string]bool{}
	for _, e := range in.Events {
		m, ok := delivery[e.DeliveryID]
		g := group(m)
		if !ok || g == nil {
			continue
		}
		switch {
		case e.Type == "open" && !opened[e.DeliveryID]:
			opened[e.DeliveryID] = true
			g.Opens++
		case e.Type == "click" && !clicked[e.DeliveryID]:
			clicked[e.DeliveryID] = true
			g.Clicks++
		}
	}
	counted, converted := map[string]bool{}, map[string]bool{}
	for _, c := range in.Conversions {
		m, ok := offers[c.OfferID]
		g := group(m)
		if !ok || g == nil || c.CampaignID != campaign || counted[c.ConversionID] {
			continue
		}
		counted[c.ConversionID] = true
		g.Conversions++
		if !converted[m] {
			converted[m] = true
			g.Converted++
		}
	}
	rep.Mixed = len(mixed)
	for _, g := range []*Group{&rep.Treatment, &rep.Holdout} {
		if g.Members > 0 {
			g.Rate = float64(g.Converted) / float64(g.Members)
		}
	}
	if rep.Treatment.Members > 0 && rep.Holdout.Members > 0 {
		u := Diff(rep.Treatment.Converted, rep.Treatment.Members, rep.Holdout.Converted, rep.Holdout.Members)
		rep.Uplift = &u
	}
	return rep
}

// Diff compares two proportions x1/n1 (treatment) and x2/n2 (hold-out):
// their difference, the difference relative to x2/n2, and Newcombe's
// hybrid score interval for the difference (Newcombe 1998, method 10),
// built from each proportion's Wilson score interval. It is chosen over
// the textbook Wald interval because conversion rates are small and
// hold-outs are small: there Wald's interval is too narrow and can leave
// [-1, 1], while Newcombe's keeps close to its nominal 95% coverage.
// n1 and n2 must be positive.
func Diff(x1, n1, x2, n2 int) Uplift {
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	l1, u1 := wilson(x1, n1)
	l2, u2 := wilson(x2, n2)
	d := p1 - p2
	u := Uplift{Absolute: d, Interval: Interval,
		Low:  d - math.Sqrt((p1-l1)*(p1-l1)+(u2-p2)*(u2-p2)),
		High: d + math.Sqrt((u1-p1)*(u1-p1)+(p2-l2)*(p2-l2))}
	if x2 > 0 {
		r := d / p2
		u.Relative = &r
	}
	return u
}

// wilson is the Wilson score interval of x/n at z.
func wilson(x, n int) (lo, hi float64) {
	fx, fn := float64(x), float64(n)
	den := fn + z*z
	center := (fx + z*z/2) / den
	half := z / den * math.Sqrt(fx*(fn-fx)/fn+z*z/4)
	return max(center-half, 0), min(center+half, 1)
}

// WriteText prints the report for a person.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "campaign %s, results since %s (%d records read)\n\n", r.Campaign, r.Since.UTC().Format(time.RFC3339), r.Records)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Right-aligned numbers; the group names are padded so they read
	// left-aligned.
	fmt.Fprintf(tw, "%-9s\tmembers\tsends\topens\tclicks\tconversions\tconverted\tconversion rate\t\n", "group")
	for _, g := range []struct {
		name string
		g    Group
	}{{topics.GroupTreatment, r.Treatment}, {topics.GroupHoldout, r.Holdout}} {
		fmt.Fprintf(tw, "%-9s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", g.name, g.g.Members, g.g.Sends, g.g.Opens, g.g.Clicks,
			g.g.Conversions, g.g.Converted, pct(g.g.Rate))
	}
	tw.Flush()
	b.WriteString("(holdout sends: messages recorded held_out, not sent)\n")
	if r.Mixed > 0 {
		fmt.Fprintf(&b, "%d members had both sent and held_out results (the hold-out changed) and are in neither group\n", r.Mixed)
	}
	if u := r.Uplift; u == nil {
		b.WriteString("\nuplift: needs members in both groups (does the campaign have a holdout?)\n")
	} else {
		fmt.Fprintf(&b, "\nuplift      %s points", points(u.Absolute))
		if u.Relative != nil {
			fmt.Fprintf(&b, " (%+.1f%% relative to the holdout's rate)", *u.Relative*100)
		} else {
			b.WriteString(" (no relative uplift: the holdout converted nobody)")
		}
		fmt.Fprintf(&b, "\n95%% CI      %s to %s points (%s)\n", points(u.Low), points(u.High), u.Interval)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pct(f float64) string    { return fmt.Sprintf("%.2f%%", f*100) }
func points(f float64) string { return fmt.Sprintf("%+.2f", f*100) }

// read reads every partition of Topics from the first offset at or after
// since to the end offsets as of the call (kafka.Scan), calling fn for
// each record, and returns how many it read.
func read(ctx context.Context, cl *kgo.Client, since time.Time, fn func(*kgo.Record)) (int, error) {
	adm := kadm.NewClient(cl)
	ends, err := kafka.ListOffsets(ctx, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, Topics...) })
	if err != nil {
		return 0, fmt.Errorf("listing the partitions of %s: %w", strings.Join(Topics, ", "), err)
	}
	parts := map[string][]int32{}
	ends.Each(func(o kadm.ListedOffset) { parts[o.Topic] = append(parts[o.Topic], o.Partition) })
	return kafka.Scan(ctx, cl, parts, since, fn)
}

package explain

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

func record(t *testing.T, topic string, at time.Time, v any) *kgo.Record {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Key: []byte("M1"), Value: b, Timestamp: at}
}

// TestOutcomes: the outcome and the deciding step come from the furthest
// record of each offer, whatever order the topics were read in.
func TestOutcomes(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	pass := topics.Decision{Stage: "filter", Outcome: "pass"}
	offer := func(ds ...topics.Decision) topics.Offer {
		return topics.Offer{OfferID: "of-1", CampaignID: "c", MemberID: "M1", Channel: "LINE", Decisions: ds}
	}
	result := func(status string) topics.DeliveryResult {
		return topics.DeliveryResult{DeliveryID: "dl-1", OfferID: "of-1", MemberID: "M1", Channel: "LINE", Status: status, At: t0}
	}
	tests := []struct {
		name    string
		records func() []*kgo.Record
		outcome string
		stopped string // the stage that excluded it
		reached int
	}{
		{"excluded by channel", func() []*kgo.Record {
			return []*kgo.Record{
				record(t, topics.OffersExcluded, t0.Add(2*time.Second), offer(pass, topics.Decision{Stage: "channel", Outcome: "exclude", Reason: "no_channel"})),
				record(t, topics.OffersCandidates, t0, offer()),
				record(t, topics.OffersFiltered, t0.Add(time.Second), offer(pass)),
			}
		}, OutcomeExcluded, "channel", 3},
		{"held by timing", func() []*kgo.Record {
			return []*kgo.Record{record(t, topics.OffersRouted, t0, offer(pass, topics.Decision{Stage: "channel", Outcome: "route:LINE"}))}
		}, OutcomeInFlight, "", 1},
		{"suppressed at send", func() []*kgo.Record {
			return []*kgo.Record{record(t, topics.DeliveryResults, t0, result(topics.StatusSuppressed))}
		}, OutcomeSuppressed, "", 1},
		{"held out at send (control group)", func() []*kgo.Record {
			return []*kgo.Record{
				record(t, topics.OffersReady, t0, offer(pass)),
				record(t, topics.DeliveryResults, t0.Add(time.Second), result(topics.StatusHeldOut)),
			}
		}, OutcomeHeldOut, "", 2},
		{"failed, then sent on a retry", func() []*kgo.Record {
			return []*kgo.Record{
				record(t, topics.DeliveryResults, t0, result(topics.StatusFailed)),
				record(t, topics.DeliveryResults, t0.Add(time.Minute), result(topics.StatusSent)),
			}
		}, OutcomeSent, "", 1},
		{"a record that is not an offer is skipped", func() []*kgo.Record {
			return []*kgo.Record{{Topic: topics.OffersReady, Key: []byte("M1"), Value: []byte("{not json"), Timestamp: t0},
				record(t, topics.OffersReady, t0, offer(pass))}
		}, OutcomeInFlight, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offers := map[string]*Offer{}
			for _, r := range tt.records() {
				add(offers, r)
			}
			o := offers["of-1"]
			if len(offers) != 1 || o == nil {
				t.Fatalf("offers %v, want of-1 only", offers)
			}
			finish(o)
			if o.Outcome != tt.outcome || len(o.Reached) != tt.reached || !o.First.Equal(t0) {
				t.Errorf("outcome %q, reached %v, first %v; want %q, %d topics, %v", o.Outcome, o.Reached, o.First, tt.outcome, tt.reached, t0)
			}
			stopped := ""
			if o.Stopped != nil {
				stopped = o.Stopped.Stage
			}
			if stopped != tt.stopped {
				t.Errorf("stopped by %q, want %q", stopped, tt.stopped)
			}
			rep := &Report{MemberID: "M1", Offers: []Offer{*o}}
			var b bytes.Buffer
			if err := rep.WriteText(&b); err != nil || !strings.Contains(b.String(), "outcome   "+strings.Split(tt.outcome, " ")[0]) {
				t.Errorf("text (%v):\n%s", err, b.String())
			}
		})
	}
}

// TestNoOffersSaysSo: a member with no offer gets a sentence, not an
// empty page.
func TestNoOffersSaysSo(t *testing.T) {
	var b bytes.Buffer
	if err := (&Report{MemberID: "M9"}).WriteText(&b); err != nil || !strings.Contains(b.String(), "no offer for this member") {
		t.Errorf("%v:\n%s", err, b.String())
	}
}

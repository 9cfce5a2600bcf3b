// Package timing is the timing and frequency stage. Per member it keeps a
// frequency ledger (its own table, timing-table): the offers it let through
// and when they go out. Caps from the timing rule tables (per day, per week,
// per campaign per day) are enforced at decision time against that ledger;
// a member's offers are processed one at a time on their partition, so ten
// campaigns arriving at once cannot all pass a cap of 3, and an offer ID is
// counted once, so a replayed offer does not take a second slot.
//
// When: `now`, or `best_hour` (the member's most active local hour, next
// occurrence), moved out of quiet hours. Offers due later are held in the
// ledger under a due-time index and released by ticks (package timer).
package timing

import (
	"slices"
	"time"

	"github.com/bytedance/sonic"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/timer"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// keep is how long ledger entries are kept: the longest cap window plus a
// day of slack.
const keep = 8 * 24 * time.Hour

// Ledger is a member's value in timing-table.
type Ledger struct {
	// Slots are the offers let through, with the time they go out.
	Slots []Slot `json:"slots,omitempty"`
	// Held are offers waiting for their send time, in due order.
	Held []Held `json:"held,omitempty"`
	// Done remembers offers already decided (sent, held or dropped), so a
	// replay decides nothing twice.
	Done []string `json:"done,omitempty"`
}

// Slot is one offer counted against the caps.
type Slot struct {
	OfferID    string    `json:"offer_id"`
	CampaignID string    `json:"campaign_id"`
	At         time.Time `json:"at"`
}

// Held is an offer waiting to be released at Due.
type Held struct {
	Due   time.Time    `json:"due"`
	Offer topics.Offer `json:"offer"`
}

const maxDone = 1024

func (l *Ledger) decided(id string) bool { return slices.Contains(l.Done, id) }

func (l *Ledger) remember(id string) {
	l.Done = append(l.Done, id)
	if len(l.Done) > maxDone {
		l.Done = slices.Delete(l.Done, 0, len(l.Done)-maxDone)
	}
}

// prune forgets slots that no cap window reaches any more.
func (l *Ledger) prune(now time.Time) {
	l.Slots = slices.DeleteFunc(l.Slots, func(s Slot) bool { return now.Sub(s.At) > keep })
}

// Cap names, as reasons.
const (
	ReasonCapDay         = "cap_day"
	ReasonCapWeek        = "cap_week"
	ReasonCapCampaignDay = "cap_campaign_day"
	ReasonExpired        = "expired"
)

// overCap returns the cap a slot at `at` for campaign would exceed, or "".
// A slot counts when it is within 24 hours (7 days) of `at` either way:
// held offers going out later count as much as those already sent.
func (l *Ledger) overCap(t rules.TimingOutput, campaign string, at time.Time) string {
	var day, week, campDay int
	for _, s := range l.Slots {
		d := at.Sub(s.At)
		if d < 0 {
			d = -d // held offers going out later count too
		}
		if d < 24*time.Hour {
			day++
			if s.CampaignID == campaign {
				campDay++
			}
		}
		if d < 7*24*time.Hour {
			week++
		}
	}
	switch {
	case t.CapDay > 0 && day >= t.CapDay:
		return ReasonCapDay
	case t.CapWeek > 0 && week >= t.CapWeek:
		return ReasonCapWeek
	case t.CapCampaignDay > 0 && campDay >= t.CapCampaignDay:
		return ReasonCapCampaignDay
	}
	return ""
}

// hold adds an offer to release at due, keeping Held in due order.
func (l *Ledger) hold(o topics.Offer, due time.Time) {
	i, _ := slices.BinarySearchFunc(l.Held, due, func(h Held, t time.Time) int { return h.Due.Compare(t) })
	l.Held = slices.Insert(l.Held, i, Held{Due: due, Offer: o})
}

// free gives back the cap slot of an offer that will not go out after all
// (expired while held, or its delivery failed for good), and reports
// whether it had one. The offer stays decided: a replay does not send it.
func (l *Ledger) free(offerID string) bool {
	n := len(l.Slots)
	l.Slots = slices.DeleteFunc(l.Slots, func(s Slot) bool { return s.OfferID == offerID })
	return len(l.Slots) != n
}

// due removes and returns the held offers due by now.
func (l *Ledger) due(now time.Time) []Held {
	n := 0
	for n < len(l.Held) && !l.Held[n].Due.After(now) {
		n++
	}
	out := slices.Clone(l.Held[:n])
	l.Held = slices.Delete(l.Held, 0, n)
	return out
}

// Codec is the timing-table codec.
type Codec = stage.TableCodec[Ledger]

// DueIndex indexes a ledger by its earliest held offer.
const DueIndex = "due"

// IndexDue is the Indexer of DueIndex.
func IndexDue(_ string, value []byte) ([]string, error) {
	var l struct {
		Held []struct {
			Due time.Time `json:"due"`
		} `json:"held"`
	}
	if err := sonic.Unmarshal(value, &l); err != nil || len(l.Held) == 0 {
		return nil, nil
	}
	return []string{timer.DueKey(l.Held[0].Due)}, nil
}

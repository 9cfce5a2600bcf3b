package rules

import (
	"time"

	"github.com/rtm-project/rtm/topics"
)

// The fact structs below are the marketer-facing contract: rule templates
// read them as event.drop_pct, member.prefecture, campaign.id. Stages map
// their own state into these structs before evaluating; adding a field is
// backwards compatible, renaming one breaks published workbooks.
//
// Field names in rules are the expr (and json) tags. Keep both tags equal.

// Event is a business event produced by the detect stage.
type Event struct {
	// Type is the event type, e.g. price_drop, back_in_stock, cart_abandoned.
	Type     string `json:"type" expr:"type"`
	ItemID   string `json:"item_id" expr:"item_id"`
	MemberID string `json:"member_id" expr:"member_id"`
	Brand    string `json:"brand" expr:"brand"`
	Category string `json:"category" expr:"category"`
	// OldPrice and NewPrice are in yen.
	OldPrice float64 `json:"old_price" expr:"old_price"`
	NewPrice float64 `json:"new_price" expr:"new_price"`
	// DropPct is the price drop in percent (20 means 20 %).
	DropPct float64           `json:"drop_pct" expr:"drop_pct"`
	Stock   int               `json:"stock" expr:"stock"`
	At      time.Time         `json:"at" expr:"at"`
	Attrs   map[string]string `json:"attrs" expr:"attrs"`
}

// Member is the member profile and engagement summary kept by
// member-state. It is declared in package topics (topics.MemberFacts)
// because offers carry it in their member snapshot; this is the same type.
type Member = topics.MemberFacts

// Campaign is the campaign an offer belongs to, as decided by a campaign
// table.
type Campaign struct {
	ID       string `json:"id" expr:"id"`
	Priority int    `json:"priority" expr:"priority"`
	Audience string `json:"audience" expr:"audience"`
	Template string `json:"template" expr:"template"`
	Timing   string `json:"timing" expr:"timing"`
}

// Facts is what a table is evaluated against. Which facts a table may read
// depends on its Kind (campaign tables see only event; filter tables see
// member, campaign and event; channel and timing tables see member and
// campaign).
//
// The sub-structs are values, not pointers, so that a caller can keep one
// Facts per goroutine and overwrite it per message (whole, or field by
// field: replacing a map or a slice is fine); every evaluation reads the
// Facts' content as it is when the evaluation starts, without allocating
// (see env.go). Do not modify a Facts while an evaluation against it is
// running.
type Facts struct {
	Event    Event    `json:"event" expr:"event"`
	Member   Member   `json:"member" expr:"member"`
	Campaign Campaign `json:"campaign" expr:"campaign"`
}

package rules

import "time"

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

// Member is the member profile and engagement summary kept by member-state.
type Member struct {
	MemberID string `json:"member_id" expr:"member_id"`
	Email    string `json:"email" expr:"email"`
	// Status is active, suspended or withdrawn.
	Status  string `json:"status" expr:"status"`
	IsDebug bool   `json:"is_debug" expr:"is_debug"`
	// Gender is female, male, other or unknown.
	Gender string `json:"gender" expr:"gender"`
	// Birthday is YYYY-MM-DD, or empty when unknown.
	Birthday   string `json:"birthday" expr:"birthday"`
	Age        int    `json:"age" expr:"age"`
	Prefecture string `json:"prefecture" expr:"prefecture"`
	// Timezone is an IANA name such as Asia/Tokyo.
	Timezone  string `json:"timezone" expr:"timezone"`
	MailOptIn bool   `json:"mail_opt_in" expr:"mail_opt_in"`
	LineOptIn bool   `json:"line_opt_in" expr:"line_opt_in"`
	PushOptIn bool   `json:"push_opt_in" expr:"push_opt_in"`
	// Reachable lists the channels the member can be reached on right now
	// (MAIL, LINE, PUSH, INAPP): opted in and with a valid address/token.
	Reachable      []string `json:"reachable" expr:"reachable"`
	Segments       []string `json:"segments" expr:"segments"`
	FavoritesCount int      `json:"favorites_count" expr:"favorites_count"`
	OrdersCount    int      `json:"orders_count" expr:"orders_count"`
	// SentToday and SentThisWeek count notifications already sent.
	SentToday    int `json:"sent_today" expr:"sent_today"`
	SentThisWeek int `json:"sent_this_week" expr:"sent_this_week"`
	// DaysSinceLastOrder is -1 when the member never ordered.
	DaysSinceLastOrder int `json:"days_since_last_order" expr:"days_since_last_order"`
}

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

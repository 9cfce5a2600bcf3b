package topics

import (
	"slices"
	"time"
)

// MemberFacts is the member as rules read it (member.prefecture,
// member.sent_today, ...): the marketer-facing contract, aliased as
// rules.Member. Field names in rules are the expr (and json) tags; keep
// both equal. Adding a field is backwards compatible, renaming one breaks
// published workbooks.
type MemberFacts struct {
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

// MemberSnapshot is what the stages after member filtering read of the
// member, taken by the filter stage from the profile it has just read and
// carried on the offer. Filter is the only stage after audience that must
// read the whole profile; channel, timing and render read this instead of
// joining a full copy of the member table each (they kept three of the
// six copies, and each applied every profile update).
//
// The snapshot is as of AsOf: facts that move with the clock (age,
// sent_today, days_since_last_order, decayed engagement) are not
// recomputed later. Consent is the exception and is not trusted from the
// snapshot alone: the send stage checks the member-consent table, so an
// opt-out or unsubscribe that arrives after filtering still stops the
// delivery.
type MemberSnapshot struct {
	// Facts are the rule facts as of AsOf.
	Facts MemberFacts `json:"facts"`
	// LineUserID and PushToken are the addresses render needs besides
	// Facts.Email.
	LineUserID string `json:"line_user_id,omitempty"`
	PushToken  string `json:"push_token,omitempty"`
	// Engagement is the decayed engagement per channel as of AsOf, for
	// the channel stage's `best` strategy.
	Engagement map[string]EngagementSummary `json:"engagement,omitempty"`
	// BestHour is the member's most active local hour, -1 when there is
	// no activity yet.
	BestHour int       `json:"best_hour"`
	AsOf     time.Time `json:"as_of"`
}

// EngagementSummary is a channel's decayed send, open and click counts.
type EngagementSummary struct {
	Sent    float64 `json:"sent"`
	Opened  float64 `json:"opened"`
	Clicked float64 `json:"clicked"`
}

// Reachable reports whether the snapshot lists channel as reachable.
func (s *MemberSnapshot) Reachable(channel string) bool {
	return s != nil && slices.Contains(s.Facts.Reachable, channel)
}

// Consent is a member's value in the member-consent table, written by
// member-state whenever what the member may be sent changes: Channels are
// the channels the member can be reached on now (opted in, with an
// address; INAPP for every targetable member), empty once the member is
// withdrawn or deleted. The send stage joins this small table, not the
// member table, and sends nothing on a channel it does not list.
type Consent struct {
	Envelope
	MemberID string    `json:"member_id"`
	Channels []string  `json:"channels"`
	At       time.Time `json:"at,omitzero"`
}

// Allows reports whether the member may be sent a message on channel.
func (c *Consent) Allows(channel string) bool { return slices.Contains(c.Channels, channel) }

func (m *Consent) Validate() error { return required("member_id", m.MemberID) }

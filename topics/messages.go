package topics

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"
)

// SchemaVersion is the version of every message type in this file. A record
// whose schema_version differs is rejected by the codec (and so goes to the
// dead-letter topic) rather than half-understood. Adding an optional field
// does not change the version; removing or re-typing one does.
const SchemaVersion = 1

// Message is implemented by every value type carried on a catalogue topic.
// Validate reports what a stage cannot do without; the codec calls it after
// decoding, so a stage never sees a record missing its key fields.
type Message interface {
	Schema() int
	Validate() error
	stamp()
}

// Envelope is embedded first in every message type. Its field is flattened
// into the JSON object, so every record carries a top-level schema_version.
type Envelope struct {
	SchemaVersion int `json:"schema_version"`
}

// Schema returns the record's schema_version.
func (e *Envelope) Schema() int { return e.SchemaVersion }

// stamp fills in the current version; encoders call it so producers need not.
func (e *Envelope) stamp() {
	if e.SchemaVersion == 0 {
		e.SchemaVersion = SchemaVersion
	}
}

// CDC operations, as SQL Server's SYS_CHANGE_OPERATION reports them.
const (
	OpInsert = "i"
	OpUpdate = "u"
	OpDelete = "d"
)

// CDCRecord is one Change Tracking row on cdc.<table>. The record key is the
// table's partition column as text (member_id, or item_id for items). Row
// holds every tracked column and is null for deletes; stages decode it into
// the table's row type (see the connectors package) only when they need it.
type CDCRecord struct {
	Envelope
	Table   string          `json:"table"`
	Op      string          `json:"op"`
	Version int64           `json:"version"`
	Key     map[string]any  `json:"key"`
	Row     json.RawMessage `json:"row"`
	TS      time.Time       `json:"ts"`
}

// BehaviorEvent is a shopper action from the apps or the web on
// behavior.events, keyed by member_id.
type BehaviorEvent struct {
	Envelope
	EventID    string            `json:"event_id"`
	MemberID   string            `json:"member_id"`
	Type       string            `json:"type"`
	ItemID     string            `json:"item_id,omitempty"`
	DeliveryID string            `json:"delivery_id,omitempty"`
	At         time.Time         `json:"at"`
	Attrs      map[string]string `json:"attrs,omitempty"`
}

// Event is a business event on `events` (price_drop, back_in_stock,
// cart_abandoned, ...). EventID is derived from the source (table, key,
// change version, or the behaviour event's ID), so a replay yields the same
// ID. Keyed by member_id for member events and item_id for item events.
type Event struct {
	Envelope
	EventID  string            `json:"event_id"`
	Type     string            `json:"type"`
	Source   string            `json:"source"`
	ItemID   string            `json:"item_id,omitempty"`
	MemberID string            `json:"member_id,omitempty"`
	Brand    string            `json:"brand,omitempty"`
	Category string            `json:"category,omitempty"`
	OldPrice float64           `json:"old_price,omitempty"`
	NewPrice float64           `json:"new_price,omitempty"`
	DropPct  float64           `json:"drop_pct,omitempty"`
	Stock    int               `json:"stock,omitempty"`
	Items    []string          `json:"items,omitempty"`
	At       time.Time         `json:"at"`
	Attrs    map[string]string `json:"attrs,omitempty"`
}

// Audience kinds a campaign can target.
const (
	AudienceFavoritesOfItem = "favorites_of_item"
	AudienceMember          = "member"
	AudienceSegment         = "segment"
)

// AudienceRequest asks every partition to answer an item-wide audience from
// its own partition-local index. The campaign stage emits one copy per
// partition, keyed with PartitionKeys, so no partition reads another's data
// and no list of all members is ever built.
type AudienceRequest struct {
	Envelope
	RequestID string    `json:"request_id"`
	Audience  string    `json:"audience"`
	ItemID    string    `json:"item_id,omitempty"`
	Segment   string    `json:"segment,omitempty"`
	Partition int32     `json:"partition"`
	Offer     Offer     `json:"offer"` // template: member_id and offer_id are filled per member
	At        time.Time `json:"at"`
}

// Decision records one stage's verdict on an offer: which rule table and row
// decided, and why. The list travels with the offer so that "why did (or
// didn't) this member get this message" has an answer.
type Decision struct {
	Stage string `json:"stage"`
	Table string `json:"table,omitempty"`
	Rule  string `json:"rule,omitempty"`
	// Row is the rule's 1-based worksheet row in its table: with the
	// table's name, what metrics label a rule with (Rule and Reason are
	// the marketers' free text).
	Row     int    `json:"row,omitempty"`
	Outcome string `json:"outcome"` // e.g. "pass", "exclude", "route:LINE", "hold"
	Reason  string `json:"reason,omitempty"`
}

// StageTime is when a stage handled an offer, for end-to-end latency metrics.
type StageTime struct {
	Stage string    `json:"stage"`
	At    time.Time `json:"at"`
}

// EventSummary is the triggering event as an offer carries it along: every
// event field that rules can read (rules.Event: conditions and templates
// name them as event.<json name>) and the event ID, so that filter,
// channel, timing and render see exactly what the campaign table saw. Build
// it with Event.Summary; stage.EventFacts maps it to rule facts.
type EventSummary struct {
	EventID  string            `json:"event_id"`
	Type     string            `json:"type"`
	ItemID   string            `json:"item_id,omitempty"`
	MemberID string            `json:"member_id,omitempty"`
	Brand    string            `json:"brand,omitempty"`
	Category string            `json:"category,omitempty"`
	OldPrice float64           `json:"old_price,omitempty"`
	NewPrice float64           `json:"new_price,omitempty"`
	DropPct  float64           `json:"drop_pct,omitempty"`
	Stock    int               `json:"stock,omitempty"`
	At       time.Time         `json:"at"`
	Attrs    map[string]string `json:"attrs,omitempty"`
}

// Summary is the event as offers carry it. Attrs is copied, so the offers
// of one event share nothing mutable with it.
func (e *Event) Summary() EventSummary {
	return EventSummary{EventID: e.EventID, Type: e.Type, ItemID: e.ItemID, MemberID: e.MemberID,
		Brand: e.Brand, Category: e.Category, OldPrice: e.OldPrice, NewPrice: e.NewPrice, DropPct: e.DropPct,
		Stock: e.Stock, At: e.At, Attrs: maps.Clone(e.Attrs)}
}

// Offer is one campaign's message for one member, carried through
// offers.candidates → filtered → routed → ready, keyed by member_id. OfferID
// is a hash of (campaign, event, member): retries and replays produce the
// same ID, and the frequency ledger and the send stage deduplicate on it.
type Offer struct {
	Envelope
	OfferID      string       `json:"offer_id"`
	CampaignID   string       `json:"campaign_id"`
	RulesVersion string       `json:"rules_version"`
	MemberID     string       `json:"member_id"`
	Event        EventSummary `json:"event"`
	Audience     string       `json:"audience,omitempty"`
	Priority     int          `json:"priority,omitempty"`
	Template     string       `json:"template,omitempty"`
	Timing       string       `json:"timing,omitempty"`
	ExpiresAt    time.Time    `json:"expires_at,omitzero"`
	Channel      string       `json:"channel,omitempty"`
	SendAt       time.Time    `json:"send_at,omitzero"`
	// Member is the member snapshot the filter stage attaches to every
	// offer that passes it; channel, timing and render read it instead of
	// the member table. Nil before filtering.
	Member    *MemberSnapshot `json:"member,omitempty"`
	Decisions []Decision      `json:"decisions,omitempty"`
	Stamps    []StageTime     `json:"stamps,omitempty"`

	// Holdout is the campaign's hold-out percentage (0–100), copied from
	// its row by the campaign stage. HeldOut says whether this member is
	// in the hold-out (control) group: set where the member is first
	// known (campaign for member audiences, audience for item-wide ones)
	// by AssignHoldout. A held-out offer goes through every stage like
	// any other, and the send stage records it held_out instead of
	// sending it.
	Holdout float64 `json:"holdout,omitempty"`
	HeldOut bool    `json:"held_out,omitempty"`
}

// Delivery is a rendered message for one channel on `deliveries`, keyed by
// member_id. DeliveryID is derived from the offer ID and channel, and is the
// idempotency key channel adapters pass on (LINE's X-Line-Retry-Key).
type Delivery struct {
	Envelope
	DeliveryID string          `json:"delivery_id"`
	OfferID    string          `json:"offer_id"`
	MemberID   string          `json:"member_id"`
	CampaignID string          `json:"campaign_id"`
	Channel    string          `json:"channel"`
	Payload    json.RawMessage `json:"payload"`
	// ExpiresAt is the offer's expiry: the send stage retries a delivery
	// that fails on a channel outage until then.
	ExpiresAt time.Time   `json:"expires_at,omitzero"`
	Stamps    []StageTime `json:"stamps,omitempty"`
	// EventType and EventAt are the triggering event's type and time,
	// and HeldUntil the time the timing stage held the offer until (zero:
	// not held): the send stage's end-to-end latency runs from the later
	// of EventAt and HeldUntil to the delivery's result, so quiet hours
	// are not counted as latency.
	EventType string    `json:"event_type,omitempty"`
	EventAt   time.Time `json:"event_at,omitzero"`
	HeldUntil time.Time `json:"held_until,omitzero"`
	// HeldOut is the offer's HeldOut: the send stage records the delivery
	// held_out and does not hand it to the channel.
	HeldOut bool `json:"held_out,omitempty"`
}

// Channels a delivery can go out on.
const (
	ChannelMail  = "MAIL"
	ChannelLine  = "LINE"
	ChannelPush  = "PUSH"
	ChannelInApp = "INAPP"
)

// Delivery statuses.
const (
	StatusSent       = "sent"
	StatusFailed     = "failed"
	StatusSuppressed = "suppressed"
	// StatusHeldOut: the member is in the campaign's hold-out group; the
	// delivery went through every stage (and took its cap slot) but was
	// not sent, so conversions of sent and held-out members compare.
	StatusHeldOut = "held_out"
)

// DeliveryResult is the outcome of one delivery on delivery.results, keyed by
// member_id; member-state learns engagement from it. The field set is a
// published contract: keep it exactly.
type DeliveryResult struct {
	Envelope
	DeliveryID string    `json:"delivery_id"`
	OfferID    string    `json:"offer_id"`
	MemberID   string    `json:"member_id"`
	CampaignID string    `json:"campaign_id"`
	Channel    string    `json:"channel"`
	Status     string    `json:"status"`
	Attempts   int       `json:"attempts"`
	Error      string    `json:"error"`
	At         time.Time `json:"at"`
}

// DeadLetter is a record a stage could not process, on `dlq`, keyed by the
// original key. The original value is kept verbatim (as text when it is valid
// UTF-8, otherwise base64 in ValueBase64) so it can be replayed once fixed.
type DeadLetter struct {
	Envelope
	Stage       string    `json:"stage"`
	Topic       string    `json:"topic"`
	Partition   int32     `json:"partition"`
	Offset      int64     `json:"offset"`
	Key         string    `json:"key"`
	Value       string    `json:"value,omitempty"`
	ValueBase64 []byte    `json:"value_base64,omitempty"`
	Reason      string    `json:"reason"`
	At          time.Time `json:"at"`
}

// Validate implementations: required fields only. Semantics (is this a known
// event type?) belong to the stage that interprets the message.

func (m *CDCRecord) Validate() error {
	var errs []error
	if m.Table == "" {
		errs = append(errs, missing("table"))
	}
	switch m.Op {
	case OpInsert, OpUpdate:
		if len(m.Row) == 0 || string(m.Row) == "null" {
			errs = append(errs, fmt.Errorf("op %q needs a row", m.Op))
		}
	case OpDelete:
	default:
		errs = append(errs, fmt.Errorf("op %q is not one of i, u, d", m.Op))
	}
	if m.Version < 0 {
		errs = append(errs, fmt.Errorf("version %d is negative", m.Version))
	}
	if len(m.Key) == 0 {
		errs = append(errs, missing("key"))
	}
	return errors.Join(errs...)
}

func (m *BehaviorEvent) Validate() error {
	return required("event_id", m.EventID, "member_id", m.MemberID, "type", m.Type)
}

func (m *Event) Validate() error {
	return required("event_id", m.EventID, "type", m.Type)
}

func (m *AudienceRequest) Validate() error {
	return required("request_id", m.RequestID, "audience", m.Audience, "offer.campaign_id", m.Offer.CampaignID)
}

func (m *Offer) Validate() error {
	return required("offer_id", m.OfferID, "campaign_id", m.CampaignID, "member_id", m.MemberID)
}

func (m *Delivery) Validate() error {
	return errors.Join(
		required("delivery_id", m.DeliveryID, "offer_id", m.OfferID, "member_id", m.MemberID),
		oneOf("channel", m.Channel, ChannelMail, ChannelLine, ChannelPush, ChannelInApp))
}

func (m *DeliveryResult) Validate() error {
	return errors.Join(
		required("delivery_id", m.DeliveryID, "member_id", m.MemberID),
		oneOf("channel", m.Channel, ChannelMail, ChannelLine, ChannelPush, ChannelInApp),
		oneOf("status", m.Status, StatusSent, StatusFailed, StatusSuppressed, StatusHeldOut))
}

func (m *DeadLetter) Validate() error {
	return required("topic", m.Topic, "reason", m.Reason)
}

func missing(field string) error { return fmt.Errorf("missing %s", field) }

// required takes name, value pairs and reports every empty one.
func required(pairs ...string) error {
	var errs []error
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			errs = append(errs, missing(pairs[i]))
		}
	}
	return errors.Join(errs...)
}

func oneOf(field, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s %q is not one of %v", field, v, allowed)
}

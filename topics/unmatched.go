package topics

import (
	"errors"
	"time"
)

// UnmatchedEvent says that the campaign stage evaluated an event and no
// campaign fired. It is written once per event, not once per member the
// event concerned: an item event is keyed by its item, and explain finds
// the ones that concerned a member through the member's favourites. Tables
// are the campaign tables in force, as name@version, so that "why did
// nothing fire" names the rules that said no.
type UnmatchedEvent struct {
	Envelope
	Event  EventSummary `json:"event"`
	Tables []string     `json:"tables"`
	At     time.Time    `json:"at"`
}

func (m *UnmatchedEvent) Validate() error {
	err := required("event.event_id", m.Event.EventID, "event.type", m.Event.Type)
	if m.Event.MemberID == "" && m.Event.ItemID == "" {
		err = errors.Join(err, errors.New("event names neither member_id nor item_id"))
	}
	return err
}

// Key is the key the record is written under: the event's member, or its
// item when it concerns no one member (the events topic's key).
func (m *UnmatchedEvent) Key() string {
	if m.Event.MemberID != "" {
		return m.Event.MemberID
	}
	return m.Event.ItemID
}

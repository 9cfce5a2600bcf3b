package member

import (
	"slices"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// Snapshot is what the stages after filtering read of the member, as of
// now (see topics.MemberSnapshot): the rule facts, the addresses render
// needs, decayed engagement per channel and the most active hour.
func (p *Profile) Snapshot(now time.Time) *topics.MemberSnapshot {
	s := &topics.MemberSnapshot{Facts: p.Facts(now), LineUserID: p.LineUserID, PushToken: p.PushToken,
		BestHour: -1, AsOf: now.UTC()}
	if h, ok := p.BestHour(); ok {
		s.BestHour = h
	}
	for c := range p.Engagement {
		if s.Engagement == nil {
			s.Engagement = make(map[string]topics.EngagementSummary, len(p.Engagement))
		}
		g := p.EngagementAt(c, now)
		s.Engagement[c] = topics.EngagementSummary{Sent: g.Sent, Opened: g.Opened, Clicked: g.Clicked}
	}
	return s
}

// Consent is the member's row of the member-consent table: the channels
// it may be sent on now (none when withdrawn or deleted).
func (p *Profile) Consent(at time.Time) *topics.Consent {
	return &topics.Consent{MemberID: p.MemberID, Channels: p.Reachable(), At: at.UTC()}
}

// SameConsent reports whether two consent rows allow the same channels:
// member-state writes the table only when this changes.
func SameConsent(a, b *topics.Consent) bool {
	return a != nil && b != nil && slices.Equal(a.Channels, b.Channels)
}

// Location returns the time zone of a snapshot's member, UTC when unknown.
func Location(s *topics.MemberSnapshot) *time.Location {
	if s == nil {
		return time.UTC
	}
	return location(s.Facts.Timezone)
}

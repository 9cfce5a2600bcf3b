package member

import (
	"slices"
	"testing"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// TestConsentFollowsWhatTheMemberAllows: the consent row lists exactly the
// channels the profile may be sent on, and changes (so member-state writes
// it) only when they do.
func TestConsentFollowsWhatTheMemberAllows(t *testing.T) {
	at := time.Unix(100, 0)
	unsubscribe := &topics.BehaviorEvent{EventID: "u1", MemberID: "M1", Type: "unsubscribe", At: at, Attrs: map[string]string{"channel": "MAIL"}}
	tests := []struct {
		name    string
		apply   func(p *Profile)
		want    []string
		changed bool
	}{
		{"no members row yet", func(*Profile) {}, nil, false},
		{"inserted, mail opt-in", func(p *Profile) { p.ApplyCDC(memberRec("i", 1, "active")) }, []string{"MAIL", "INAPP"}, true},
		{"one-click unsubscribe", func(p *Profile) {
			p.ApplyCDC(memberRec("i", 1, "active"))
			p.ApplyBehavior(unsubscribe)
		}, []string{"INAPP"}, true},
		{"withdrawn", func(p *Profile) { p.ApplyCDC(memberRec("i", 1, "withdrawn")) }, nil, false},
		{"deleted", func(p *Profile) {
			p.ApplyCDC(memberRec("i", 1, "active"))
			p.ApplyCDC(memberRec(topics.OpDelete, 2, ""))
		}, nil, false},
		{"a favourite after the insert leaves it as inserted", func(p *Profile) {
			p.ApplyCDC(memberRec("i", 1, "active"))
			p.ApplyCDC(favRec("i", 2, "I1"))
		}, []string{"MAIL", "INAPP"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Profile{MemberID: "M1"}
			before := p.Consent(at)
			tt.apply(p)
			c := p.Consent(at)
			if !slices.Equal(c.Channels, tt.want) {
				t.Errorf("consent %v, want %v", c.Channels, tt.want)
			}
			if got := !SameConsent(before, c); got != tt.changed {
				t.Errorf("changed = %v, want %v", got, tt.changed)
			}
			for _, ch := range []string{"MAIL", "LINE", "PUSH", "INAPP"} {
				if c.Allows(ch) != slices.Contains(tt.want, ch) {
					t.Errorf("Allows(%s) = %v with channels %v", ch, c.Allows(ch), c.Channels)
				}
			}
		})
	}
}

// TestSnapshotCarriesWhatLaterStagesRead: the snapshot has the facts,
// the addresses, the decayed engagement and the best hour (-1 before any
// activity) of the profile as of its time.
func TestSnapshotCarriesWhatLaterStagesRead(t *testing.T) {
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	p := &Profile{MemberID: "M1"}
	p.ApplyCDC(memberRec("i", 1, "active"))
	p.LineUserID, p.LineOptIn, p.PushToken = "U1", true, "tok"
	s := p.Snapshot(now)
	if s.Facts.MemberID != "M1" || s.Facts.Timezone != "Asia/Tokyo" || s.LineUserID != "U1" || s.PushToken != "tok" ||
		s.BestHour != -1 || !s.AsOf.Equal(now) || s.Engagement != nil {
		t.Fatalf("snapshot of a new member: %+v", s)
	}
	if !s.Reachable("LINE") || s.Reachable("PUSH") {
		t.Errorf("reachable %v, want LINE and not PUSH (not opted in)", s.Facts.Reachable)
	}
	p.Engagement = map[string]Engagement{"LINE": {Sent: 4, Clicked: 2, At: now}}
	p.ApplyBehavior(&topics.BehaviorEvent{EventID: "v1", MemberID: "M1", Type: "page_view", At: now})
	s = p.Snapshot(now)
	if g := s.Engagement["LINE"]; g.Sent != 4 || g.Clicked != 2 {
		t.Errorf("engagement %+v, want the profile's as of now", g)
	}
	if want := now.In(p.Location()).Hour(); s.BestHour != want {
		t.Errorf("best hour %d, want %d (the one active local hour)", s.BestHour, want)
	}
	if Location(s).String() != "Asia/Tokyo" || Location(nil) != time.UTC {
		t.Errorf("Location(snapshot) = %v, Location(nil) = %v", Location(s), Location(nil))
	}
}

package channel

import (
	"fmt"
	"testing"
	"time"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/topics"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// snapshot is what the filter stage would attach for p, nil for no
// profile.
func snapshot(p *member.Profile) *topics.MemberSnapshot {
	if p == nil {
		return nil
	}
	return p.Snapshot(now)
}

func profile(mail, line, push bool) *member.Profile {
	p := &member.Profile{MemberID: "M1", Exists: true, Status: "active",
		Email: "a@example.jp", LineUserID: "U1", PushToken: "tok", MailOptIn: mail, LineOptIn: line, PushOptIn: push}
	return p
}

func engaged(p *member.Profile, ch string, sends, clicks int) {
	for i := range sends {
		p.ApplyResult(&topics.DeliveryResult{DeliveryID: fmt.Sprintf("%s-%d", ch, i), MemberID: "M1", Channel: ch, Status: "sent", At: now.Add(-time.Hour)})
	}
	for i := range clicks {
		p.ApplyBehavior(&topics.BehaviorEvent{EventID: fmt.Sprintf("c-%s-%d", ch, i), MemberID: "M1", Type: "click", At: now.Add(-time.Hour), Attrs: map[string]string{"channel": ch}})
	}
}

func TestChooseFixed(t *testing.T) {
	all := []string{"LINE", "PUSH", "MAIL", "INAPP"}
	cases := []struct {
		name   string
		p      *member.Profile
		listed []string
		want   string
	}{
		{"first reachable", profile(true, false, true), all, "PUSH"},
		{"order matters", profile(true, true, true), []string{"MAIL", "LINE"}, "MAIL"},
		{"in-app reaches everyone", profile(false, false, false), all, "INAPP"},
		{"none reachable", profile(false, false, false), []string{"MAIL", "LINE"}, ""},
		{"withdrawn reaches nothing", &member.Profile{Exists: true, Status: "withdrawn", Email: "a", MailOptIn: true}, all, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Choose(tc.p.Snapshot(now), tc.listed, StrategyFixed, "of-1", DefaultPriors); got != tc.want {
				t.Fatalf("Choose = %q, want %q", got, tc.want)
			}
		})
	}
}

// A member who only ever clicks LINE gets LINE under `best`, whatever the
// listed order, nearly always (Thompson sampling still explores a little).
func TestChooseBestFollowsEngagement(t *testing.T) {
	p := profile(true, true, true)
	engaged(p, "MAIL", 20, 0)
	engaged(p, "PUSH", 20, 0)
	engaged(p, "LINE", 20, 12)
	counts := map[string]int{}
	for i := range 1000 {
		counts[Choose(p.Snapshot(now), []string{"MAIL", "PUSH", "LINE"}, StrategyBest, fmt.Sprintf("of-%d", i), DefaultPriors)]++
	}
	if counts["LINE"] < 950 {
		t.Fatalf("LINE chosen %d of 1000 times (%v), want at least 950", counts["LINE"], counts)
	}
}

func TestChooseBestIsDeterministicPerOffer(t *testing.T) {
	p := profile(true, true, true)
	for i := range 50 {
		id := fmt.Sprintf("of-%d", i)
		a := Choose(p.Snapshot(now), []string{"MAIL", "LINE", "PUSH"}, StrategyBest, id, DefaultPriors)
		if b := Choose(p.Snapshot(now), []string{"MAIL", "LINE", "PUSH"}, StrategyBest, id, DefaultPriors); a != b {
			t.Fatalf("offer %s routed %s then %s", id, a, b)
		}
	}
}

// A new member follows the population prior: LINE most, in-app least.
func TestChooseBestNewMemberFollowsPrior(t *testing.T) {
	p := profile(true, true, true)
	counts := map[string]int{}
	for i := range 2000 {
		counts[Choose(p.Snapshot(now), []string{"MAIL", "LINE", "PUSH", "INAPP"}, StrategyBest, fmt.Sprintf("of-%d", i), DefaultPriors)]++
	}
	if !(counts["LINE"] > counts["PUSH"] && counts["PUSH"] > counts["MAIL"] && counts["MAIL"] > counts["INAPP"]) {
		t.Fatalf("new-member routing %v does not follow the priors", counts)
	}
}

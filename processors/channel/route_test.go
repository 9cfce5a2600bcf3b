package channel

import (
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// routeSet is a channel table listing channels with a strategy, and a
// template table with the given (id, channel) variants.
func routeSet(t *testing.T, channels, strategy string, variants ...[2]string) *rules.Set {
	t.Helper()
	ch, err := rules.Compile(rules.TableSpec{Name: "channels", Kind: rules.KindChannel, Sheet: "Channels",
		Columns: []rules.Column{{Type: rules.ColAction, Template: "channels", Ref: "B5"}, {Type: rules.ColAction, Template: "strategy", Ref: "C5"}},
		Rows:    []rules.Row{{Row: 7, Cells: []rules.Value{{V: channels}, {V: strategy}}}}})
	if err != nil {
		t.Fatal(err)
	}
	spec := rules.TableSpec{Name: "templates", Kind: rules.KindTemplate, Sheet: "Templates",
		Columns: []rules.Column{{Type: rules.ColField, Template: "id", Ref: "B4"}, {Type: rules.ColField, Template: "channel", Ref: "C4"},
			{Type: rules.ColField, Template: "body", Ref: "D4"}}}
	for i, v := range variants {
		spec.Rows = append(spec.Rows, rules.Row{Row: 5 + i, Cells: []rules.Value{{V: v[0]}, {V: v[1]}, {V: "body"}}})
	}
	tables := []*rules.Table{ch}
	if len(variants) > 0 {
		tp, err := rules.Compile(spec)
		if err != nil {
			t.Fatal(err)
		}
		tables = append(tables, tp)
	}
	set, err := rules.NewSet(tables...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestRouteOnlyToChannelsWithContent: the stage chooses among the listed
// channels the offer's template has a variant for, and excludes with
// no_template when the member could be reached but not with this content.
func TestRouteOnlyToChannelsWithContent(t *testing.T) {
	cases := []struct {
		name               string
		channels, strategy string
		variants           [][2]string
		profile            *member.Profile
		template           string
		want, reason       string
	}{
		{"first listed with a variant", "MAIL,LINE", "fixed", [][2]string{{"t", "LINE"}}, profile(true, true, false), "t", "LINE", "fixed"},
		{"every listed has one", "MAIL,LINE", "fixed", [][2]string{{"t", "LINE"}, {"t", "MAIL"}}, profile(true, true, false), "t", "MAIL", "fixed"},
		{"reachable only without content", "LINE,MAIL", "fixed", [][2]string{{"t", "MAIL"}}, profile(false, true, false), "t", "", ReasonNoTemplate},
		{"unknown template", "MAIL,LINE", "fixed", [][2]string{{"other", "MAIL"}}, profile(true, true, false), "t", "", ReasonNoTemplate},
		{"no template tables at all", "MAIL,LINE", "fixed", nil, profile(true, true, false), "t", "", ReasonNoTemplate},
		{"similar ids do not count", "MAIL,LINE", "fixed", [][2]string{{"t-mail", "MAIL"}, {"t-line", "LINE"}}, profile(true, true, false), "t", "", ReasonNoTemplate},
		{"not reachable at all", "LINE,MAIL", "fixed", [][2]string{{"t", "MAIL"}, {"t", "LINE"}}, profile(false, false, true), "t", "", ReasonNoChannel},
		{"no snapshot", "LINE,MAIL", "fixed", [][2]string{{"t", "MAIL"}}, nil, "t", "", ReasonNoSnapshot},
		{"best among those with content", "MAIL,PUSH,LINE", "best", [][2]string{{"t", "PUSH"}}, profile(true, true, true), "t", "PUSH", "best"},
		{"an offer naming no template is not restricted", "MAIL,LINE", "fixed", [][2]string{{"t", "LINE"}}, profile(true, true, false), "", "MAIL", "fixed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			set := routeSet(t, tc.channels, tc.strategy, tc.variants...)
			o := &topics.Offer{OfferID: "of-1", CampaignID: "c", MemberID: "M1", Template: tc.template, Member: snapshot(tc.profile)}
			d, ch := Route(set, o, DefaultPriors)
			if ch != tc.want || d.Reason != tc.reason {
				t.Fatalf("Route = %q (%+v), want %q reason %s", ch, d, tc.want, tc.reason)
			}
			if ch == "" && d.Outcome != "exclude" {
				t.Errorf("outcome %s, want exclude", d.Outcome)
			}
		})
	}
}

// TestBestNeverPicksAChannelWithoutContent: however engaged the member is
// on MAIL, `best` does not pick it for a template without a MAIL variant.
func TestBestNeverPicksAChannelWithoutContent(t *testing.T) {
	p := profile(true, true, true)
	engaged(p, "MAIL", 20, 15)
	engaged(p, "LINE", 20, 0)
	set := routeSet(t, "MAIL,LINE,PUSH", "best", [2]string{"t", "LINE"}, [2]string{"t", "PUSH"})
	for i := range 200 {
		o := &topics.Offer{OfferID: fmt.Sprintf("of-%d", i), CampaignID: "c", MemberID: "M1", Template: "t", Member: p.Snapshot(now)}
		if _, ch := Route(set, o, DefaultPriors); ch != "LINE" && ch != "PUSH" {
			t.Fatalf("offer %d routed to %q", i, ch)
		}
	}
}

// TestExclusionsAreCountedByReason: the routed metric counts exclusions
// under their reason.
func TestExclusionsAreCountedByReason(t *testing.T) {
	before := routedCount(t, ReasonNoTemplate)
	set := routeSet(t, "MAIL", "fixed")
	d, ch := Route(set, &topics.Offer{OfferID: "of-1", CampaignID: "c", MemberID: "M1", Template: "t", Member: snapshot(profile(true, false, false))}, DefaultPriors)
	count(d, ch)
	if got := routedCount(t, ReasonNoTemplate); got != before+1 {
		t.Errorf("no_template count %v, want %v", got, before+1)
	}
	before = routedCount(t, ReasonRuleError)
	count(topics.Decision{Reason: ReasonRuleError + ": boom"}, "")
	if got := routedCount(t, ReasonRuleError); got != before+1 {
		t.Errorf("rule_error count %v, want %v", got, before+1)
	}
}

func routedCount(t *testing.T, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := routed.WithLabelValues(reason, "").Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

package rules

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Channel names, as written in channel tables and template tables.
const (
	ChannelMail  = "MAIL"
	ChannelLine  = "LINE"
	ChannelPush  = "PUSH"
	ChannelInApp = "INAPP"
)

// Channels lists every channel.
var Channels = []string{ChannelMail, ChannelLine, ChannelPush, ChannelInApp}

// Audience values of campaign tables.
const (
	AudienceFavoritesOfItem = "favorites_of_item"
	AudienceMember          = "member"
	AudienceSegment         = "segment"
)

// Timing values of campaign tables.
const (
	TimingNow      = "now"
	TimingBestHour = "best_hour"
)

// Strategy values of channel tables.
const (
	StrategyFixed = "fixed"
	StrategyBest  = "best"
)

// CampaignOutput is what a campaign row decides. Outputs whose cell is
// empty keep the defaults noted below.
type CampaignOutput struct {
	Campaign string `json:"campaign"`
	// Audience defaults to "member" (the event's member).
	Audience string `json:"audience"`
	Priority int    `json:"priority"`
	Template string `json:"template,omitempty"`
	// Timing defaults to "now".
	Timing string `json:"timing"`
	// ExpiresAfter is zero when the offer does not expire.
	ExpiresAfter time.Duration `json:"expires_after,omitempty"`
	// Segment is the members' segment an audience=segment campaign
	// reaches.
	Segment string `json:"segment,omitempty"`
	// Holdout is the percentage (0–100) of the campaign's audience held
	// out as a control group (topics.HeldOut); 0, the default, holds out
	// nobody.
	Holdout float64 `json:"holdout,omitempty"`
}

// FilterOutput is what a filter row decides.
type FilterOutput struct {
	Exclude bool   `json:"exclude"`
	Reason  string `json:"reason,omitempty"`
}

// ChannelOutput is what a channel row decides.
type ChannelOutput struct {
	// Channels in preference order.
	Channels []string `json:"channels"`
	// Strategy defaults to "fixed": the first reachable channel in order.
	Strategy string `json:"strategy"`
}

// TimingOutput is what a timing row decides. A zero cap means no cap.
type TimingOutput struct {
	QuietHours     QuietHours `json:"quiet_hours,omitzero"`
	CapDay         int        `json:"cap_day,omitempty"`
	CapWeek        int        `json:"cap_week,omitempty"`
	CapCampaignDay int        `json:"cap_campaign_day,omitempty"`
}

// QuietHours is a daily window in the member's local time during which
// nothing is sent, such as 22:00-08:00 (it may wrap past midnight).
type QuietHours struct {
	// From and To are minutes since local midnight; the window is
	// [From, To). Set is false when no quiet hours apply.
	From, To int
	Set      bool
}

// ParseQuietHours parses "HH:MM-HH:MM".
func ParseQuietHours(s string) (QuietHours, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return QuietHours{}, fmt.Errorf("quiet_hours %q: want HH:MM-HH:MM such as 22:00-08:00", s)
	}
	from, err1 := parseClock(a)
	to, err2 := parseClock(b)
	if err1 != nil || err2 != nil || from == to {
		return QuietHours{}, fmt.Errorf("quiet_hours %q: want HH:MM-HH:MM such as 22:00-08:00", s)
	}
	return QuietHours{From: from, To: to, Set: true}, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(m) != 2 {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	hh, err := strconv.Atoi(h)
	if err != nil || hh < 0 || hh > 23 {
		return 0, fmt.Errorf("bad hour %q", s)
	}
	mm, err := strconv.Atoi(m)
	if err != nil || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("bad minute %q", s)
	}
	return hh*60 + mm, nil
}

// Contains reports whether local time t falls in the quiet window.
func (q QuietHours) Contains(t time.Time) bool {
	if !q.Set {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	if q.From < q.To {
		return m >= q.From && m < q.To
	}
	return m >= q.From || m < q.To
}

func (q QuietHours) String() string {
	if !q.Set {
		return ""
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", q.From/60, q.From%60, q.To/60, q.To%60)
}

func (q QuietHours) MarshalText() ([]byte, error) { return []byte(q.String()), nil }

func (q *QuietHours) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*q = QuietHours{}
		return nil
	}
	v, err := ParseQuietHours(string(b))
	*q = v
	return err
}

// outputs holds the precomputed, immutable outputs of one row; exactly one
// pointer is set, according to the table's kind.
type outputs struct {
	campaign *CampaignOutput
	filter   *FilterOutput
	channel  *ChannelOutput
	timing   *TimingOutput
}

func newOutputs(k Kind) outputs {
	switch k {
	case KindCampaign:
		return outputs{campaign: &CampaignOutput{Audience: AudienceMember, Timing: TimingNow}}
	case KindFilter:
		return outputs{filter: &FilterOutput{}}
	case KindChannel:
		return outputs{channel: &ChannelOutput{Strategy: StrategyFixed}}
	case KindTiming:
		return outputs{timing: &TimingOutput{}}
	}
	return outputs{}
}

// outputDef describes one output an ACTION column may set.
type outputDef struct {
	required bool
	// set stores v; its error message is shown after the cell reference.
	set func(o outputs, v Value) error
}

// outputDefs lists the outputs per kind.
var outputDefs = map[Kind]map[string]outputDef{
	KindCampaign: {
		"campaign": {required: true, set: func(o outputs, v Value) (err error) {
			o.campaign.Campaign, err = textOf(v)
			return err
		}},
		"audience": {set: func(o outputs, v Value) (err error) {
			o.campaign.Audience, err = enumOf(v, AudienceFavoritesOfItem, AudienceMember, AudienceSegment)
			return err
		}},
		"priority": {set: func(o outputs, v Value) (err error) {
			o.campaign.Priority, err = intOf(v)
			return err
		}},
		"template": {set: func(o outputs, v Value) (err error) {
			o.campaign.Template, err = textOf(v)
			return err
		}},
		"timing": {set: func(o outputs, v Value) (err error) {
			o.campaign.Timing, err = enumOf(v, TimingNow, TimingBestHour)
			return err
		}},
		"expires_after": {set: func(o outputs, v Value) (err error) {
			o.campaign.ExpiresAfter, err = durationOf(v)
			return err
		}},
		"segment": {set: func(o outputs, v Value) (err error) {
			o.campaign.Segment, err = textOf(v)
			return err
		}},
		"holdout": {set: func(o outputs, v Value) (err error) {
			o.campaign.Holdout, err = percentOf(v)
			return err
		}},
	},
	KindFilter: {
		"exclude": {set: func(o outputs, v Value) (err error) {
			o.filter.Exclude, err = boolOf(v)
			return err
		}},
		"reason": {set: func(o outputs, v Value) (err error) {
			o.filter.Reason, err = textOf(v)
			return err
		}},
	},
	KindChannel: {
		"channels": {set: func(o outputs, v Value) (err error) {
			o.channel.Channels, err = channelsOf(v)
			return err
		}},
		"strategy": {set: func(o outputs, v Value) (err error) {
			o.channel.Strategy, err = enumOf(v, StrategyFixed, StrategyBest)
			return err
		}},
	},
	KindTiming: {
		"quiet_hours": {set: func(o outputs, v Value) error {
			s, err := textOf(v)
			if err != nil {
				return err
			}
			o.timing.QuietHours, err = ParseQuietHours(s)
			return err
		}},
		"cap_day": {set: func(o outputs, v Value) (err error) {
			o.timing.CapDay, err = capOf(v)
			return err
		}},
		"cap_week": {set: func(o outputs, v Value) (err error) {
			o.timing.CapWeek, err = capOf(v)
			return err
		}},
		"cap_campaign_day": {set: func(o outputs, v Value) (err error) {
			o.timing.CapCampaignDay, err = capOf(v)
			return err
		}},
	},
}

// outputNames lists a kind's output names, sorted, for messages.
func outputNames(k Kind) string {
	var names []string
	for n := range outputDefs[k] {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func textOf(v Value) (string, error) {
	switch x := v.V.(type) {
	case string:
		return strings.TrimSpace(x), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), nil
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("want text, cell holds %s", v)
}

func intOf(v Value) (int, error) {
	switch x := v.V.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<31 {
			return int(x), nil
		}
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(x)); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("want a whole number, cell holds %s", v)
}

func capOf(v Value) (int, error) {
	n, err := intOf(v)
	if err == nil && n < 0 {
		err = fmt.Errorf("want a cap of 0 or more, cell holds %s", v)
	}
	return n, err
}

// percentOf reads a percentage from 0 to 100: a number (10, 2.5), or text
// holding one, with or without a % sign ("10%"). Excel stores a cell
// formatted as a percentage as its fraction (10% is 0.1), which cannot be
// told from a deliberate 0.1 percent, so such cells are written as plain
// numbers.
func percentOf(v Value) (float64, error) {
	var f float64
	ok := false
	switch x := v.V.(type) {
	case float64:
		f, ok = x, true
	case string:
		n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(x), "%")), 64)
		f, ok = n, err == nil
	}
	if !ok || math.IsNaN(f) || f < 0 || f > 100 {
		return 0, fmt.Errorf("want a percentage from 0 to 100, cell holds %s", v)
	}
	return f, nil
}

func boolOf(v Value) (bool, error) {
	if b, ok := v.V.(bool); ok {
		return b, nil
	}
	return false, fmt.Errorf("want TRUE or FALSE, cell holds %s", v)
}

func enumOf(v Value, allowed ...string) (string, error) {
	s, ok := v.V.(string)
	s = strings.TrimSpace(s)
	if ok {
		for _, a := range allowed {
			if s == a {
				return s, nil
			}
		}
	}
	return "", fmt.Errorf("want one of %s, cell holds %s", strings.Join(allowed, ", "), v)
}

// durationOf parses Go durations (90m, 6h) and whole days (2d).
func durationOf(v Value) (time.Duration, error) {
	s, ok := v.V.(string)
	s = strings.TrimSpace(s)
	if ok && s != "" {
		if d, found := strings.CutSuffix(s, "d"); found {
			if n, err := strconv.Atoi(d); err == nil && n > 0 {
				return time.Duration(n) * 24 * time.Hour, nil
			}
		} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d, nil
		}
	}
	return 0, fmt.Errorf("want a duration such as 6h, 90m or 2d, cell holds %s", v)
}

func channelsOf(v Value) ([]string, error) {
	s, ok := v.V.(string)
	if !ok {
		return nil, fmt.Errorf("want channels such as LINE,MAIL, cell holds %s", v)
	}
	var out []string
	for _, c := range splitList(s) {
		c = strings.ToUpper(c)
		valid := false
		for _, x := range Channels {
			if c == x {
				valid = true
			}
		}
		if !valid {
			return nil, fmt.Errorf("unknown channel %q (want %s)", c, strings.Join(Channels, ", "))
		}
		for _, x := range out {
			if x == c {
				return nil, fmt.Errorf("channel %s listed twice", c)
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("want channels such as LINE,MAIL, cell holds %s", v)
	}
	return out, nil
}

// splitList splits a cell list on ASCII and Japanese commas, trimming
// spaces (including ideographic spaces) and dropping empty items.
func splitList(s string) []string {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '、' || r == '，' })
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

var keys = func() *tracking.Keyring {
	kr, err := tracking.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		panic(err)
	}
	return kr
}()

func exampleSet(t *testing.T) *rules.Set {
	t.Helper()
	set, err := rules.LoadSet("../../rules/examples/rtm-rules.xlsx")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func renderer(t *testing.T) *Renderer {
	r, err := NewRenderer(Config{TrackingBase: "https://t.example.jp", Keys: keys, MailFrom: "shop@example.jp",
		UnsubscribeMailto: "unsubscribe@example.jp", TrackingTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// withMember attaches p's snapshot to o, as the filter stage does.
func withMember(o *topics.Offer, p *member.Profile, now time.Time) *topics.Offer {
	o.Member = p.Snapshot(now)
	return o
}

func profile() *member.Profile {
	return &member.Profile{MemberID: "M1", Exists: true, Status: "active", Email: "m1@example.jp", MailOptIn: true,
		LineUserID: "U0123456789abcdef0123456789abcdef", LineOptIn: true, PushToken: "tok", PushOptIn: true}
}

func priceDrop(channel string) *topics.Offer {
	return &topics.Offer{OfferID: "of-1", CampaignID: "price-drop-big", MemberID: "M1", Template: "price-drop", Channel: channel,
		Event: topics.EventSummary{EventID: "e1", Type: "price_drop", ItemID: "I1", Brand: "ナチュラルライフ", OldPrice: 5000, NewPrice: 3000, DropPct: 40}}
}

func TestRenderEveryChannel(t *testing.T) {
	set := exampleSet(t)
	r := renderer(t)
	for _, ch := range []string{topics.ChannelMail, topics.ChannelLine, topics.ChannelPush, topics.ChannelInApp} {
		t.Run(ch, func(t *testing.T) {
			o := priceDrop(ch)
			if ch == topics.ChannelPush || ch == topics.ChannelInApp {
				o.Template = "back-in-stock"
				o.Event.Type = "back_in_stock"
			}
			now := time.Now()
			d, err := r.Render(set, withMember(o, profile(), now), now)
			if err != nil {
				t.Fatal(err)
			}
			if d.DeliveryID != topics.DeliveryID("of-1", ch) || d.Channel != ch || d.MemberID != "M1" {
				t.Fatalf("delivery %+v", d)
			}
			payload := string(d.Payload)
			switch ch {
			case topics.ChannelMail:
				var m channels.MailPayload
				json.Unmarshal(d.Payload, &m)
				// RFC 8058: the shop's mailto and the member's own one-click link.
				lu := m.Headers["List-Unsubscribe"]
				if m.To != "m1@example.jp" || m.Headers["List-Unsubscribe-Post"] != "List-Unsubscribe=One-Click" ||
					!strings.HasPrefix(lu, "<mailto:unsubscribe@example.jp>, <https://t.example.jp/t/u/") || !strings.HasSuffix(lu, ">") {
					t.Fatalf("mail %+v", m)
				}
				u, err := keys.Open(strings.TrimSuffix(lu[strings.Index(lu, "/t/u/")+5:], ">"), tracking.KindUnsubscribe, now)
				if err != nil || u.MemberID != "M1" || u.Channel != topics.ChannelMail || u.DeliveryID != d.DeliveryID {
					t.Fatalf("unsubscribe token %+v, %v", u, err)
				}
				if !strings.Contains(m.HTML, "https://t.example.jp/t/o/") || !strings.Contains(m.Text, "https://t.example.jp/t/c/") {
					t.Fatalf("mail lacks open pixel or tracked link:\n%s\n%s", m.HTML, m.Text)
				}
				if !strings.Contains(m.Subject, "ナチュラルライフ") {
					t.Fatalf("subject %q", m.Subject)
				}
				tok := m.Text[strings.Index(m.Text, "/t/c/")+5:]
				tr, err := keys.Open(strings.TrimSpace(tok), tracking.KindClick, now)
				if err != nil || !strings.HasPrefix(tr.URL, "https://shop.example.jp/items/I1") || tr.Channel != topics.ChannelMail {
					t.Fatalf("click token %+v, %v", tr, err)
				}
				// The link stops working after the TTL.
				if _, err := keys.Open(strings.TrimSpace(tok), tracking.KindClick, now.Add(time.Hour)); err == nil {
					t.Error("a click token opened after its TTL")
				}
			case topics.ChannelLine:
				if !strings.Contains(payload, `"to":"U0123456789abcdef0123456789abcdef"`) || !strings.Contains(payload, "/t/c/") {
					t.Fatalf("line payload %s", payload)
				}
			case topics.ChannelPush:
				if !strings.Contains(payload, `"token":"tok"`) {
					t.Fatalf("push payload %s", payload)
				}
			case topics.ChannelInApp:
				if !strings.Contains(payload, `"title":"再入荷しました"`) || !strings.Contains(payload, "/t/c/") {
					t.Fatalf("in-app payload %s", payload)
				}
			}
		})
	}
}

// TestNoSnapshotIsAnError: an offer filtered before filter attached
// snapshots has no address to render for; it is an error (the stage
// dead-letters it), not an empty message.
func TestNoSnapshotIsAnError(t *testing.T) {
	if _, err := renderer(t).Render(exampleSet(t), priceDrop(topics.ChannelMail), time.Now()); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Render without a snapshot: %v, want ErrNoSnapshot", err)
	}
}

func TestTemplateErrors(t *testing.T) {
	set := exampleSet(t)
	o := priceDrop(topics.ChannelMail)
	o.Template = "no-such-template"
	_, err := renderer(t).Render(set, withMember(o, profile(), time.Now()), time.Now())
	var te *TemplateError
	if !errors.As(err, &te) || te.TemplateID != "no-such-template" || te.Channel != "MAIL" {
		t.Fatalf("want a TemplateError naming the template, got %v", err)
	}
	p := profile()
	p.Email = "not an address"
	_, err = renderer(t).Render(set, withMember(priceDrop(topics.ChannelMail), p, time.Now()), time.Now())
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "to") {
		t.Fatalf("want an invalid-payload TemplateError, got %v", err)
	}

	// A template within budget for the sample facts, over it for a member
	// with 200 segments (40,200 iterations): a TemplateError (to dlq)
	// wrapping rules.ErrOverBudget, not a runaway render.
	spec := rules.TableSpec{Name: "t", Kind: rules.KindTemplate, Sheet: "T",
		Columns: []rules.Column{{Type: rules.ColField, Template: "id", Ref: "B4"}, {Type: rules.ColField, Template: "channel", Ref: "C4"},
			{Type: rules.ColField, Template: "subject", Ref: "D4"}, {Type: rules.ColField, Template: "body", Ref: "E4"}},
		Rows: []rules.Row{{Row: 5, Cells: []rules.Value{{V: o.Template}, {V: "MAIL"}, {V: "件名"},
			{V: "{{range .member.segments}}{{range $.member.segments}}.{{end}}{{end}}"}}}}}
	loops, err := rules.CompileSet([]rules.TableSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	p = profile()
	for i := range 200 {
		p.Segments = append(p.Segments, fmt.Sprintf("s%d", i))
	}
	_, err = renderer(t).Render(loops, withMember(o, p, time.Now()), time.Now())
	if !errors.As(err, &te) || !errors.Is(err, rules.ErrOverBudget) {
		t.Fatalf("want a TemplateError with ErrOverBudget, got %v", err)
	}
}

// TestFindTemplateIsExact: the offer's template id and channel select one
// row; no sibling, prefix or other channel stands in for a missing one.
func TestFindTemplateIsExact(t *testing.T) {
	set := exampleSet(t)
	for _, ch := range []string{topics.ChannelMail, topics.ChannelLine, topics.ChannelPush, topics.ChannelInApp} {
		tp, err := FindTemplate(set, "price-drop", ch)
		if err != nil || tp.ID != "price-drop" || tp.Channel != ch {
			t.Fatalf("price-drop for %s: %+v, %v", ch, tp, err)
		}
	}
	tpl, err := rules.Compile(rules.TableSpec{Name: "templates", Kind: rules.KindTemplate, Sheet: "T",
		Columns: []rules.Column{{Type: rules.ColField, Template: "id", Ref: "B4"}, {Type: rules.ColField, Template: "channel", Ref: "C4"},
			{Type: rules.ColField, Template: "body", Ref: "D4"}},
		Rows: []rules.Row{
			{Row: 5, Cells: []rules.Value{{V: "price-drop"}, {V: "LINE"}, {V: "line"}}},
			{Row: 6, Cells: []rules.Value{{V: "price-drop-home-mail"}, {V: "MAIL"}, {V: "another campaign's mail"}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	small, err := rules.NewSet(tpl)
	if err != nil {
		t.Fatal(err)
	}
	if tp, err := FindTemplate(small, "price-drop", topics.ChannelMail); err == nil || !strings.Contains(err.Error(), "has no MAIL variant (it has LINE)") {
		t.Fatalf("price-drop for MAIL found %+v, %v; want no variant", tp, err)
	}
	if _, err := FindTemplate(small, "nope", topics.ChannelMail); err == nil || !strings.Contains(err.Error(), `no template "nope" for any channel`) {
		t.Fatalf("unknown id: %v", err)
	}
	o := priceDrop(topics.ChannelMail)
	_, err = renderer(t).Render(small, withMember(o, profile(), time.Now()), time.Now())
	var te *TemplateError
	if !errors.As(err, &te) || te.TemplateID != "price-drop" || te.Channel != topics.ChannelMail {
		t.Fatalf("rendering a missing variant: %v, want a TemplateError", err)
	}
}

// TestRenderBackInStockWithRealStock: the event's stock reaches the
// template through the offer (it used to be dropped on the way, rendering
// "在庫わずか（0点）").
func TestRenderBackInStockWithRealStock(t *testing.T) {
	e := topics.Event{EventID: "e-bis", Type: "back_in_stock", Source: "cdc.items", ItemID: "I9", Brand: "ナチュラルライフ", Stock: 7, At: time.Now()}
	for ch, want := range map[string]string{topics.ChannelPush: "在庫わずか（7点）", topics.ChannelMail: "在庫わずか（7点）です"} {
		o := &topics.Offer{OfferID: "of-bis", CampaignID: "back-in-stock", MemberID: "M1", Template: "back-in-stock", Channel: ch, Event: e.Summary()}
		d, err := renderer(t).Render(exampleSet(t), withMember(o, profile(), time.Now()), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var body string
		switch ch {
		case topics.ChannelPush:
			var p map[string]any
			json.Unmarshal(d.Payload, &p)
			body = fmt.Sprint(p)
		case topics.ChannelMail:
			var m channels.MailPayload
			json.Unmarshal(d.Payload, &m)
			body = m.Text
		}
		if !strings.Contains(body, want) {
			t.Errorf("%s: rendered %s, want it to contain %q", ch, body, want)
		}
	}
}

// TestRenderRetryingOverTime: a render over the time budget alone is
// tried again, up to overTimeAttempts; any other error, the iteration and
// output budgets included, is final at once.
func TestRenderRetryingOverTime(t *testing.T) {
	overTime := fmt.Errorf("render: %w", &timeErr{})
	overIterations := fmt.Errorf("render: %w", rules.ErrOverBudget)
	for _, tc := range []struct {
		name      string
		errs      []error // one per call; nil succeeds
		wantCalls int
		wantErr   bool
	}{
		{"first try", []error{nil}, 1, false},
		{"over time, then in time", []error{overTime, overTime, nil}, 3, false},
		{"over time every time", []error{overTime, overTime, overTime, nil}, overTimeAttempts, true},
		{"over the iteration budget", []error{overIterations, nil}, 1, true},
		{"another error", []error{errors.New("no template"), nil}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			d, err := renderRetrying(func() (*topics.Delivery, error) {
				err := tc.errs[calls]
				calls++
				if err != nil {
					return nil, err
				}
				return &topics.Delivery{DeliveryID: "d"}, nil
			})
			if calls != tc.wantCalls || (err != nil) != tc.wantErr || (err == nil && d == nil) {
				t.Errorf("%d calls, err %v; want %d calls, error %v", calls, err, tc.wantCalls, tc.wantErr)
			}
		})
	}
}

// timeErr stands for the rules package's over-time error, which only a
// render past rules.TemplateTimeout makes.
type timeErr struct{}

func (*timeErr) Error() string { return "ran longer than the budget" }
func (*timeErr) Is(target error) bool {
	return target == rules.ErrOverTime || target == rules.ErrOverBudget
}

// TestLineBubbleIsEncodingJSONsBytes: the flex bubble is encoded with
// sonic in encoding/json's configuration, which must give encoding/json's
// bytes (sorted keys, HTML escaped), whatever the text and link hold.
func TestLineBubbleIsEncodingJSONsBytes(t *testing.T) {
	snap := &topics.MemberSnapshot{LineUserID: "U1"}
	for _, tc := range []struct{ text, link string }{
		{"値下げしました", "https://shop.example/i/1?a=1&b=<2>"},
		{"quote \" and \\ and \u2028", "https://shop.example/c?x=\"y\""},
	} {
		p := line(snap, rules.Rendered{Body: tc.text, AltText: "alt"}, tc.link).(channels.LinePayload)
		var bubble map[string]any
		if err := json.Unmarshal(p.Messages[0].Contents, &bubble); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(bubble)
		if got := string(p.Messages[0].Contents); got != string(want) {
			t.Errorf("bubble\n got %s\nwant %s", got, want)
		}
	}
}

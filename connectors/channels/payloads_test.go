package channels_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/topics"
)

// The payloads are contracts with LINE, FCM and the render stage: their
// JSON is pinned byte for byte.
func TestEncodeGolden(t *testing.T) {
	tests := []struct {
		name string
		p    channels.Payload
		want string
	}{
		{"line text", channels.NewLineText("U1", "hi"), `{"to":"U1","messages":[{"type":"text","text":"hi"}]}`},
		{"line flex", channels.NewLineFlex("U1", "alt", json.RawMessage(`{"type":"bubble"}`)),
			`{"to":"U1","messages":[{"type":"flex","altText":"alt","contents":{"type":"bubble"}}]}`},
		{"push", channels.NewPush("tok", "T", "B", map[string]string{"k": "v"}),
			`{"message":{"token":"tok","notification":{"title":"T","body":"B"},"data":{"k":"v"}}}`},
		{"mail", channels.NewMail("a@x.example", "b@x.example", "S", "t", "").WithUnsubscribe("u@x.example", "https://x.example/u"),
			`{"to":"a@x.example","from":"b@x.example","subject":"S","text":"t","headers":{"List-Unsubscribe":"\u003cmailto:u@x.example\u003e, \u003chttps://x.example/u\u003e","List-Unsubscribe-Post":"List-Unsubscribe=One-Click"}}`},
		{"inapp", channels.NewInApp("M1", "T", "B", ""), `{"member_id":"M1","title":"T","body":"B"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := channels.Encode(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// Validate reports every problem at once, in words the render stage's
// author can act on.
func TestValidate(t *testing.T) {
	long := strings.Repeat("あ", 5001)
	tests := []struct {
		name string
		p    channels.Payload
		want []string // substrings, each must appear
	}{
		{"mail ok", channels.NewMail("a@x.example", "b@x.example", "S", "t", "<p>t</p>"), nil},
		{"mail everything wrong", channels.MailPayload{To: "nope", Subject: "a\nb", Headers: map[string]string{
			"From": "x", "X-Evil": "a\r\nBcc: victim@x.example", "Bad Name": "v", "List-Unsubscribe-Post": "yes"}},
			[]string{`to "nope"`, `from ""`, "subject contains a line break", "missing body", "header From is set by the adapter",
				"header X-Evil contains a line break", `header name "Bad Name"`, "List-Unsubscribe-Post must be"}},
		{"line ok", channels.NewLineText("U1", "a", "b"), nil},
		{"line wrong", channels.LinePayload{Messages: []channels.LineMessage{{Type: "text", Text: long}, {Type: "flex"}, {Type: "sticker"}}},
			[]string{"missing to", "messages[0]: text has 5001 characters", "messages[1]: missing altText",
				"messages[1]: contents must be a bubble", `messages[2]: type "sticker"`}},
		{"line too many", channels.NewLineText("U1", "1", "2", "3", "4", "5", "6"), []string{"6 given, LINE takes 1 to 5"}},
		{"push ok, data only", channels.PushPayload{Message: channels.FCMMessage{Token: "t", Data: map[string]string{"a": "b"}}}, nil},
		{"push wrong", channels.PushPayload{Message: channels.FCMMessage{Android: &channels.FCMAndroid{Priority: "urgent", TTL: "1h"}}},
			[]string{"missing message.token", "needs a notification", `priority "urgent"`, `ttl "1h"`}},
		{"inapp wrong", channels.InAppPayload{}, []string{"missing member_id", "missing title and body"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestNewDelivery(t *testing.T) {
	offer := &topics.Offer{OfferID: "of-1", CampaignID: "C1", MemberID: "M1"}
	d, err := channels.NewDelivery(offer, channels.NewInApp("M1", "T", "B", ""))
	if err != nil {
		t.Fatal(err)
	}
	if d.DeliveryID != topics.DeliveryID("of-1", topics.ChannelInApp) || d.Channel != topics.ChannelInApp || d.MemberID != "M1" {
		t.Errorf("delivery = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("delivery does not validate: %v", err)
	}
	if _, err := channels.NewDelivery(offer, channels.InAppPayload{}); err == nil {
		t.Error("an invalid payload made a delivery")
	}
}

// The key is pinned (checked against Python's hashlib): changing it would make LINE re-send every message
// retried across a deploy.
func TestLineRetryKey(t *testing.T) {
	got := channels.LineRetryKey("dl-0123456789abcdef01234567")
	if got != channels.LineRetryKey("dl-0123456789abcdef01234567") {
		t.Fatal("not deterministic")
	}
	if len(got) != 36 || got[14] != '4' || !strings.ContainsRune("89ab", rune(got[19])) {
		t.Errorf("%s is not a version 4, RFC 9562 variant UUID", got)
	}
	if got != "9d9924f7-09c0-463e-a025-8dc1ac20982b" {
		t.Errorf("key changed: %s", got)
	}
	if channels.LineRetryKey("dl-other") == got {
		t.Error("two deliveries share a key")
	}
}

func TestConfigValidateReportsEverything(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"line", channels.LineConfig{BaseURL: "api.line.me/", Timeout: -1}.Validate(),
			[]string{"line.base_url", "line.channel_access_token is required", "line.timeout"}},
		{"fcm", channels.FCMConfig{BaseURL: "https://fcm.example/"}.Validate(),
			[]string{"must not end with a slash", "fcm.project_id", "fcm.access_token"}},
		{"smtp", channels.SMTPConfig{Port: 70000, TLS: "maybe", AuthMechanism: "cram", Password: "p"}.Validate(),
			[]string{"smtp.port 70000", `smtp.tls "maybe"`, `smtp.auth_mechanism "cram"`, "smtp.password is set"}},
		{"smtp clear-text credentials", channels.SMTPConfig{TLS: channels.TLSNone, Username: "u"}.Validate(),
			[]string{"credentials are never sent in clear text"}},
		{"deliverer", channels.DelivererConfig{MaxAttempts: -1, BaseDelay: 2, MaxDelay: 1, Burst: -1}.Validate(),
			[]string{"max_attempts", "base_delay 2ns is longer", "burst -1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(tc.err.Error(), w) {
					t.Errorf("error %q\nlacks %q", tc.err, w)
				}
			}
		})
	}
	if err := (channels.SMTPConfig{}).Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestErrorsUnwrap(t *testing.T) {
	base := errors.New("boom")
	var err error = &channels.RetryableError{Code: http.StatusTooManyRequests, Err: base}
	var re *channels.RetryableError
	if !errors.As(err, &re) || !errors.Is(err, base) || channels.IsPermanent(err) {
		t.Errorf("retryable error does not unwrap: %v", err)
	}
	err = &channels.PermanentError{Code: 400, Err: base}
	if !channels.IsPermanent(err) || !errors.Is(err, base) {
		t.Errorf("permanent error does not unwrap: %v", err)
	}
}

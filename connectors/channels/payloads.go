package channels

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bytedance/sonic"
	"github.com/rtm-project/rtm/topics"
)

// Payload is implemented by every channel's payload type. The render stage
// builds one with the constructors below and puts Encode's bytes in
// topics.Delivery.Payload (or uses NewDelivery).
type Payload interface {
	// Channel is the topics.Channel* constant the payload is for.
	Channel() string
	// Validate reports every problem that would make the channel reject
	// the payload, so render can catch it before send retries it.
	Validate() error
}

// Encode validates p and returns its JSON for topics.Delivery.Payload.
func Encode(p Payload) (json.RawMessage, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("invalid %s payload: %w", p.Channel(), err)
	}
	// sonic in encoding/json's configuration: byte for byte its output.
	b, err := sonic.ConfigStd.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding %s payload: %w", p.Channel(), err)
	}
	return b, nil
}

// NewDelivery returns the delivery of offer on p's channel, with the
// deterministic delivery ID topics.DeliveryID(offer, channel): a replayed
// offer renders to the same ID, which the adapters pass on as the
// channel's idempotency key.
func NewDelivery(offer *topics.Offer, p Payload) (*topics.Delivery, error) {
	raw, err := Encode(p)
	if err != nil {
		return nil, err
	}
	return &topics.Delivery{
		DeliveryID: topics.DeliveryID(offer.OfferID, p.Channel()),
		OfferID:    offer.OfferID,
		MemberID:   offer.MemberID,
		CampaignID: offer.CampaignID,
		Channel:    p.Channel(),
		Payload:    raw,
		ExpiresAt:  offer.ExpiresAt,
		EventType:  offer.Event.Type,
		EventAt:    offer.Event.At,
		HeldUntil:  heldUntil(offer),
		HeldOut:    offer.HeldOut,
	}, nil
}

// heldUntil is the offer's send time if the timing stage held it (its
// send time is after the timing stage first handled it), else zero.
func heldUntil(o *topics.Offer) time.Time {
	for _, st := range o.Stamps {
		if st.Stage == topics.GroupTiming {
			if o.SendAt.After(st.At) {
				return o.SendAt
			}
			break
		}
	}
	return time.Time{}
}

// decodePayload decodes d's payload into p and validates it. Either
// failure is permanent: the same bytes will never decode differently.
func decodePayload(d *topics.Delivery, p Payload) error {
	if d.Channel != p.Channel() {
		return permanent(0, "delivery %s is for channel %q, not %q", d.DeliveryID, d.Channel, p.Channel())
	}
	if d.DeliveryID == "" {
		return permanent(0, "delivery has no delivery_id")
	}
	if err := sonic.ConfigStd.Unmarshal(d.Payload, p); err != nil {
		return permanent(0, "decoding %s payload of delivery %s: %w", p.Channel(), d.DeliveryID, err)
	}
	if err := p.Validate(); err != nil {
		return permanent(0, "invalid %s payload of delivery %s: %w", p.Channel(), d.DeliveryID, err)
	}
	return nil
}

// ---- MAIL ----

// Mail headers the render stage sets for one-click unsubscribe (RFC 8058).
const (
	HeaderListUnsubscribe     = "List-Unsubscribe"
	HeaderListUnsubscribePost = "List-Unsubscribe-Post"
	// ListUnsubscribeOneClick is the only value RFC 8058 allows for
	// List-Unsubscribe-Post.
	ListUnsubscribeOneClick = "List-Unsubscribe=One-Click"
)

// MailPayload is an e-mail. Text and HTML become a multipart/alternative
// body (either may be empty, not both). Headers are extra header fields
// sent verbatim; the SMTP adapter sets From, To, Subject, Date,
// Message-ID and the MIME headers itself, so Headers must not.
type MailPayload struct {
	To      string            `json:"to"`
	From    string            `json:"from"`
	Subject string            `json:"subject"`
	Text    string            `json:"text,omitempty"`
	HTML    string            `json:"html,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// NewMail returns a mail payload; add unsubscribe headers with
// WithUnsubscribe.
func NewMail(to, from, subject, text, html string) MailPayload {
	return MailPayload{To: to, From: from, Subject: subject, Text: text, HTML: html}
}

// WithUnsubscribe returns p with List-Unsubscribe (`<mailto:...>,
// <https://...>`) and List-Unsubscribe-Post (one-click, RFC 8058), which
// Gmail and Yahoo require of bulk senders. Either address may be empty,
// and the one-click header is set only with an https URL.
func (p MailPayload) WithUnsubscribe(mailto, oneClickURL string) MailPayload {
	h := make(map[string]string, len(p.Headers)+2)
	for k, v := range p.Headers {
		h[k] = v
	}
	var parts []string
	if mailto != "" {
		if !strings.HasPrefix(mailto, "mailto:") {
			mailto = "mailto:" + mailto
		}
		parts = append(parts, "<"+mailto+">")
	}
	if oneClickURL != "" {
		parts = append(parts, "<"+oneClickURL+">")
		h[HeaderListUnsubscribePost] = ListUnsubscribeOneClick
	}
	if len(parts) > 0 {
		h[HeaderListUnsubscribe] = strings.Join(parts, ", ")
	}
	p.Headers = h
	return p
}

// Channel implements Payload.
func (MailPayload) Channel() string { return topics.ChannelMail }

// reservedMailHeaders are set by the adapter; a payload may not override
// them (a second From or Content-Type would make a broken message).
var reservedMailHeaders = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "subject": true, "date": true,
	"message-id": true, "mime-version": true, "content-type": true, "content-transfer-encoding": true,
	"sender": true,
}

// Validate implements Payload.
func (p MailPayload) Validate() error {
	var errs []error
	if _, err := mail.ParseAddress(p.To); err != nil {
		errs = append(errs, fmt.Errorf("to %q: %w", p.To, err))
	}
	if _, err := mail.ParseAddress(p.From); err != nil {
		errs = append(errs, fmt.Errorf("from %q: %w", p.From, err))
	}
	if strings.TrimSpace(p.Subject) == "" {
		errs = append(errs, errors.New("missing subject"))
	}
	if hasNewline(p.Subject) {
		errs = append(errs, errors.New("subject contains a line break"))
	}
	if p.Text == "" && p.HTML == "" {
		errs = append(errs, errors.New("missing body: set text, html or both"))
	}
	for k, v := range p.Headers {
		switch {
		case !validHeaderName(k):
			errs = append(errs, fmt.Errorf("header name %q is not a valid field name", k))
		case reservedMailHeaders[strings.ToLower(k)]:
			errs = append(errs, fmt.Errorf("header %s is set by the adapter and cannot be overridden", k))
		case hasNewline(v):
			// a line break would let a value inject further headers
			errs = append(errs, fmt.Errorf("header %s contains a line break", k))
		}
	}
	if v, ok := p.Headers[HeaderListUnsubscribePost]; ok && v != ListUnsubscribeOneClick {
		errs = append(errs, fmt.Errorf("header %s must be %q", HeaderListUnsubscribePost, ListUnsubscribeOneClick))
	}
	return errors.Join(errs...)
}

func hasNewline(s string) bool { return strings.ContainsAny(s, "\r\n") }

// validHeaderName reports whether s is an RFC 5322 field name: printable
// US-ASCII except colon.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// ---- LINE ----

// LinePayload is exactly the body of the LINE Messaging API push request
// (POST /v2/bot/message/push): the user ID and up to five messages.
type LinePayload struct {
	To       string        `json:"to"`
	Messages []LineMessage `json:"messages"`
}

// LineMessage is a text message (Type "text", Text) or a Flex Message
// (Type "flex", AltText, Contents: a bubble or carousel container).
type LineMessage struct {
	Type     string          `json:"type"`
	Text     string          `json:"text,omitempty"`
	AltText  string          `json:"altText,omitempty"`
	Contents json.RawMessage `json:"contents,omitempty"`
}

// LINE message limits, from the Messaging API reference.
const (
	lineMaxMessages = 5
	lineMaxText     = 5000
	lineMaxAltText  = 1500
)

// NewLineText returns a push of one text message per text.
func NewLineText(to string, texts ...string) LinePayload {
	p := LinePayload{To: to}
	for _, t := range texts {
		p.Messages = append(p.Messages, LineMessage{Type: "text", Text: t})
	}
	return p
}

// NewLineFlex returns a push of one Flex Message; contents is the bubble
// or carousel JSON, altText what notifications and old clients show.
func NewLineFlex(to, altText string, contents json.RawMessage) LinePayload {
	return LinePayload{To: to, Messages: []LineMessage{{Type: "flex", AltText: altText, Contents: contents}}}
}

// Channel implements Payload.
func (LinePayload) Channel() string { return topics.ChannelLine }

// Validate implements Payload.
func (p LinePayload) Validate() error {
	var errs []error
	if p.To == "" {
		errs = append(errs, errors.New("missing to"))
	}
	if n := len(p.Messages); n == 0 || n > lineMaxMessages {
		errs = append(errs, fmt.Errorf("messages: %d given, LINE takes 1 to %d", n, lineMaxMessages))
	}
	for i, m := range p.Messages {
		switch m.Type {
		case "text":
			if m.Text == "" {
				errs = append(errs, fmt.Errorf("messages[%d]: missing text", i))
			} else if n := utf8.RuneCountInString(m.Text); n > lineMaxText {
				errs = append(errs, fmt.Errorf("messages[%d]: text has %d characters, LINE takes %d", i, n, lineMaxText))
			}
		case "flex":
			if m.AltText == "" {
				errs = append(errs, fmt.Errorf("messages[%d]: missing altText", i))
			} else if n := utf8.RuneCountInString(m.AltText); n > lineMaxAltText {
				errs = append(errs, fmt.Errorf("messages[%d]: altText has %d characters, LINE takes %d", i, n, lineMaxAltText))
			}
			var c struct {
				Type string `json:"type"`
			}
			if err := sonic.ConfigStd.Unmarshal(m.Contents, &c); err != nil || (c.Type != "bubble" && c.Type != "carousel") {
				errs = append(errs, fmt.Errorf("messages[%d]: contents must be a bubble or carousel object", i))
			}
		default:
			errs = append(errs, fmt.Errorf("messages[%d]: type %q is not text or flex", i, m.Type))
		}
	}
	return errors.Join(errs...)
}

// ---- PUSH ----

// PushPayload is exactly the body of the FCM HTTP v1 send request
// (POST /v1/projects/{project}/messages:send).
type PushPayload struct {
	Message FCMMessage `json:"message"`
}

// FCMMessage is the part of FCM's Message resource RTM uses: a device
// registration token, the visible notification and string data for the
// app. Android is optional.
type FCMMessage struct {
	Token        string            `json:"token"`
	Notification *FCMNotification  `json:"notification,omitempty"`
	Data         map[string]string `json:"data,omitempty"`
	Android      *FCMAndroid       `json:"android,omitempty"`
}

// FCMNotification is the notification shown by the device.
type FCMNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
	Image string `json:"image,omitempty"`
}

// FCMAndroid is FCM's AndroidConfig: Priority "normal" or "high", TTL as
// a duration string ("3600s"), CollapseKey to replace an unread message.
type FCMAndroid struct {
	Priority    string `json:"priority,omitempty"`
	TTL         string `json:"ttl,omitempty"`
	CollapseKey string `json:"collapse_key,omitempty"`
}

// NewPush returns a push notification to a device token; data may be nil.
func NewPush(token, title, body string, data map[string]string) PushPayload {
	return PushPayload{Message: FCMMessage{Token: token, Notification: &FCMNotification{Title: title, Body: body}, Data: data}}
}

// Channel implements Payload.
func (PushPayload) Channel() string { return topics.ChannelPush }

// Validate implements Payload.
func (p PushPayload) Validate() error {
	var errs []error
	m := p.Message
	if m.Token == "" {
		errs = append(errs, errors.New("missing message.token"))
	}
	if (m.Notification == nil || (m.Notification.Title == "" && m.Notification.Body == "")) && len(m.Data) == 0 {
		errs = append(errs, errors.New("message needs a notification title or body, or data"))
	}
	if a := m.Android; a != nil {
		if a.Priority != "" && a.Priority != "normal" && a.Priority != "high" {
			errs = append(errs, fmt.Errorf("message.android.priority %q is not normal or high", a.Priority))
		}
		if a.TTL != "" && !strings.HasSuffix(a.TTL, "s") {
			errs = append(errs, fmt.Errorf("message.android.ttl %q must be seconds with an s suffix, like \"3600s\"", a.TTL))
		}
	}
	return errors.Join(errs...)
}

// ---- INAPP ----

// InAppPayload is a message for the member's in-app inbox.
type InAppPayload struct {
	MemberID string `json:"member_id"`
	Title    string `json:"title"`
	Body     string `json:"body"`
	URL      string `json:"url,omitempty"`
}

// NewInApp returns an in-app inbox message; url may be empty.
func NewInApp(memberID, title, body, url string) InAppPayload {
	return InAppPayload{MemberID: memberID, Title: title, Body: body, URL: url}
}

// Channel implements Payload.
func (InAppPayload) Channel() string { return topics.ChannelInApp }

// Validate implements Payload.
func (p InAppPayload) Validate() error {
	var errs []error
	if p.MemberID == "" {
		errs = append(errs, errors.New("missing member_id"))
	}
	if p.Title == "" && p.Body == "" {
		errs = append(errs, errors.New("missing title and body: set at least one"))
	}
	return errors.Join(errs...)
}

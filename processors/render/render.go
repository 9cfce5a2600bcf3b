// Package render is the content-generation stage: it renders the template
// table's content for the offer's channel (Go text/template over member,
// event and campaign) into the channel's payload — LINE Messaging API push
// JSON, an e-mail with text and HTML bodies and one-click unsubscribe
// headers, an FCM HTTP v1 message, an in-app message — rewrites the link to
// the collector's signed click-tracking URL, adds the open pixel to mail,
// and emits the delivery on `deliveries`. A template that fails renders
// nothing and goes to the dead-letter topic with the template ID and error.
package render

import (
	"errors"
	"fmt"
	"html"
	"strings"
	"time"

	"github.com/bytedance/sonic"
	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

// Group is the consumer group.
const Group = topics.GroupRender

// Config is how rendered messages point back at the shop.
type Config struct {
	// TrackingBase is the collector's public base URL, e.g.
	// https://t.shop.example.jp; links become TrackingBase/t/c/<token> and
	// mail gets TrackingBase/t/o/<token> as its open pixel.
	TrackingBase string
	// Keys seal tracking tokens; the collector opens them.
	Keys *tracking.Keyring
	// TrackingTTL is how long tracked links, pixels and unsubscribe links
	// work after rendering. Default DefaultTrackingTTL.
	TrackingTTL time.Duration
	// MailFrom is the sender of every mail.
	MailFrom string
	// UnsubscribeMailto goes into List-Unsubscribe next to the member's
	// one-click unsubscribe link (TrackingBase/t/u/<token>, RFC 8058).
	UnsubscribeMailto string
}

// DefaultTrackingTTL is how long links work by default: 90 days, well
// beyond the 30 days an unsubscribe link must keep working (CAN-SPAM).
const DefaultTrackingTTL = 90 * 24 * time.Hour

// Validate reports every missing setting.
func (c Config) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.TrackingBase, "http://") && !strings.HasPrefix(c.TrackingBase, "https://") {
		errs = append(errs, fmt.Errorf("render: tracking base %q must be an http(s) URL", c.TrackingBase))
	}
	if c.Keys == nil {
		errs = append(errs, fmt.Errorf("render: tracking keys are required (a tracking secret of at least %d bytes)", tracking.MinSecretBytes))
	}
	if c.TrackingTTL < 0 {
		errs = append(errs, fmt.Errorf("render: tracking TTL %v is negative", c.TrackingTTL))
	}
	if c.MailFrom == "" {
		errs = append(errs, errors.New("render: mail sender is required"))
	}
	return errors.Join(errs...)
}

// routes are the collector's paths of each token kind.
var routes = map[string]string{tracking.KindOpen: "/t/o/", tracking.KindClick: "/t/c/", tracking.KindUnsubscribe: "/t/u/"}

// Renderer turns offers into deliveries.
type Renderer struct {
	cfg Config
}

// NewRenderer validates cfg.
func NewRenderer(cfg Config) (*Renderer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TrackingTTL == 0 {
		cfg.TrackingTTL = DefaultTrackingTTL
	}
	return &Renderer{cfg: cfg}, nil
}

// TemplateError is a template that cannot be found or executed; the offer
// goes to the dead-letter topic with it.
type TemplateError struct {
	TemplateID string
	Channel    string
	Err        error
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("template %q for %s: %v", e.TemplateID, e.Channel, e.Err)
}
func (e *TemplateError) Unwrap() error { return e.Err }

// FindTemplate returns the variant of the offer's template id for the
// channel the channel stage chose — exactly that (id, channel) row of the
// template tables, as `rtm rules test` uses it. There is no fallback to
// another id: the channel stage only chooses channels the id has a
// variant for, so a miss means the rules changed in between, and the
// offer goes to the dead-letter topic rather than out with other content.
func FindTemplate(set *rules.Set, id, channel string) (*rules.Template, error) {
	if t, ok := set.Template(id, channel); ok {
		return t, nil
	}
	if cs := set.TemplateChannels(id); len(cs) > 0 {
		return nil, fmt.Errorf("template %q has no %s variant (it has %s)", id, channel, strings.Join(cs, ", "))
	}
	return nil, fmt.Errorf("no template %q for any channel", id)
}

// ErrNoSnapshot: the offer carries no member snapshot, so there is no
// address to render for (the channel stage excludes such offers).
var ErrNoSnapshot = errors.New("offer carries no member snapshot")

// Render renders an offer for its channel to a delivery.
//
// It reads the member from the snapshot the filter stage attached to the
// offer (facts and addresses as of filtering); whether the member may
// still be sent anything is the send stage's check (member-consent).
func (r *Renderer) Render(set *rules.Set, o *topics.Offer, now time.Time) (*topics.Delivery, error) {
	p := o.Member
	if p == nil {
		return nil, ErrNoSnapshot
	}
	tp, err := FindTemplate(set, o.Template, o.Channel)
	if err != nil {
		return nil, &TemplateError{TemplateID: o.Template, Channel: o.Channel, Err: err}
	}
	facts := stage.OfferFacts(o, p.Facts)
	out, err := tp.Render(facts)
	if err != nil {
		return nil, &TemplateError{TemplateID: tp.ID, Channel: o.Channel, Err: err}
	}
	deliveryID := topics.DeliveryID(o.OfferID, o.Channel)
	// track returns the collector's URL of a sealed token of kind.
	track := func(kind, target string) (string, error) {
		tok, err := r.cfg.Keys.Seal(tracking.Tracking{DeliveryID: deliveryID, MemberID: o.MemberID, CampaignID: o.CampaignID,
			Channel: o.Channel, URL: target, Kind: kind, Expires: now.Add(r.cfg.TrackingTTL)})
		if err != nil {
			return "", fmt.Errorf("tracking %s link: %w", kind, err)
		}
		return strings.TrimRight(r.cfg.TrackingBase, "/") + routes[kind] + tok, nil
	}
	link := out.URL
	if link != "" {
		if link, err = track(tracking.KindClick, out.URL); err != nil {
			return nil, &TemplateError{TemplateID: tp.ID, Channel: o.Channel, Err: err}
		}
	}
	var payload channels.Payload
	switch o.Channel {
	case topics.ChannelMail:
		payload, err = r.mail(p, out, track, link)
	case topics.ChannelLine:
		payload = line(p, out, link)
	case topics.ChannelPush:
		payload = channels.NewPush(p.PushToken, out.Subject, out.Body, map[string]string{"url": link, "delivery_id": deliveryID})
	case topics.ChannelInApp:
		payload = channels.NewInApp(o.MemberID, out.Subject, out.Body, link)
	default:
		err = fmt.Errorf("unknown channel %q", o.Channel)
	}
	if err != nil {
		return nil, &TemplateError{TemplateID: tp.ID, Channel: o.Channel, Err: err}
	}
	d, err := channels.NewDelivery(o, payload)
	if err != nil {
		return nil, &TemplateError{TemplateID: tp.ID, Channel: o.Channel, Err: err}
	}
	return d, nil
}

// mail renders a mail with its open pixel and, next to the shop's mailto,
// the member's own one-click unsubscribe link, which the List-Unsubscribe
// and List-Unsubscribe-Post headers (RFC 8058) point at.
func (r *Renderer) mail(p *topics.MemberSnapshot, out rules.Rendered, track func(kind, target string) (string, error), link string) (channels.Payload, error) {
	pixel, err := track(tracking.KindOpen, "")
	if err != nil {
		return nil, err
	}
	unsubscribe, err := track(tracking.KindUnsubscribe, "")
	if err != nil {
		return nil, err
	}
	text := out.Body
	var b strings.Builder
	b.WriteString(`<!doctype html><html><body><p>`)
	b.WriteString(strings.ReplaceAll(html.EscapeString(out.Body), "\n", "<br>"))
	b.WriteString(`</p>`)
	if link != "" {
		text += "\n\n" + link
		fmt.Fprintf(&b, `<p><a href="%s">%s</a></p>`, html.EscapeString(link), html.EscapeString(orDefault(out.AltText, "詳しく見る")))
	}
	fmt.Fprintf(&b, `<img src="%s" width="1" height="1" alt=""></body></html>`, html.EscapeString(pixel))
	return channels.NewMail(p.Facts.Email, r.cfg.MailFrom, out.Subject, text, b.String()).
		WithUnsubscribe(r.cfg.UnsubscribeMailto, unsubscribe), nil
}

// line renders a flex bubble with a button when the template has alt text
// (LINE requires altText for flex messages), otherwise a text message.
func line(p *topics.MemberSnapshot, out rules.Rendered, link string) channels.Payload {
	text := out.Body
	if out.AltText == "" || link == "" {
		if link != "" {
			text += "\n" + link
		}
		return channels.NewLineText(p.LineUserID, text)
	}
	bubble := map[string]any{
		"type": "bubble",
		"body": map[string]any{"type": "box", "layout": "vertical", "contents": []any{
			map[string]any{"type": "text", "text": text, "wrap": true},
		}},
		"footer": map[string]any{"type": "box", "layout": "vertical", "contents": []any{
			map[string]any{"type": "button", "style": "primary", "action": map[string]any{"type": "uri", "label": "詳しく見る", "uri": link}},
		}},
	}
	contents, _ := sonic.ConfigStd.Marshal(bubble) // encoding/json's bytes, a third of the cost
	return channels.NewLineFlex(p.LineUserID, out.AltText, contents)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

type processor struct {
	r     *Renderer
	rules stage.Rules
	now   func() time.Time
	keys  stage.Keys
}

// Graph is the stage's topology.
func (pr *processor) Graph() *goka.GroupGraph {
	return goka.DefineGroup(goka.Group(Group),
		goka.Input(goka.Stream(topics.OffersReady), stage.Raw, pr.offer),
		goka.Output(goka.Stream(topics.Deliveries), topics.DeliveryCodec{}),
		goka.Output(goka.Stream(topics.OffersExcluded), topics.OfferCodec{}),
		stage.DLQOutput(),
	)
}

// New returns the render processor.
func New(env stage.Env, rs stage.Rules, cfg Config) (*goka.Processor, error) {
	r, err := NewRenderer(cfg)
	if err != nil {
		return nil, err
	}
	pr := &processor{r: r, rules: rs, now: time.Now, keys: stage.KeysOf(Group, env)}
	return goka.NewProcessor(env.Brokers, pr.Graph(), env.ProcessorOptions()...)
}

func (pr *processor) offer(ctx goka.Context, msg any) {
	o, ok := stage.DecodeKeyed(ctx, pr.keys, topics.OfferCodec{}, msg, stage.OfferIdentity)
	if !ok {
		return
	}
	d, err := renderRetrying(func() (*topics.Delivery, error) { return pr.r.Render(pr.rules.Current(), o, pr.now()) })
	if err != nil {
		stage.DeadLetter(ctx, Group, msg, err)
		return
	}
	d.Stamps = append(o.Stamps, topics.StageTime{Stage: Group, At: time.Now().UTC()})
	ctx.Emit(goka.Stream(topics.Deliveries), ctx.Key(), d)
	stage.CountEmit(ctx, Group, topics.Deliveries, 1)
}

// overTimeAttempts is how many times a render that ran over
// rules.TemplateTimeout, and over no other budget, is tried before its
// offer is dead-lettered. The iteration and output budgets bound what a
// template does; the time backstop behind them also trips on a starved
// machine (a test at load average 11 lost 2 of 10,000 good offers to it
// with a single try).
const overTimeAttempts = 3

var renderRetries = stage.Metrics.NewCounter(prometheus.CounterOpts{
	Name: "rtm_render_overtime_retries_total",
	Help: "Renders tried again after running over the template time budget (and no other budget).",
})

// renderRetrying calls render until it succeeds, fails for any reason but
// time, or has run over time overTimeAttempts times.
func renderRetrying(render func() (*topics.Delivery, error)) (*topics.Delivery, error) {
	for attempt := 1; ; attempt++ {
		d, err := render()
		if err == nil || !errors.Is(err, rules.ErrOverTime) || attempt == overTimeAttempts {
			return d, err
		}
		renderRetries.Inc()
	}
}

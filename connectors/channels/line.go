package channels

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// LINE Messaging API header names.
const (
	HeaderLineRetryKey          = "X-Line-Retry-Key"
	HeaderLineAcceptedRequestID = "X-Line-Accepted-Request-Id"
	HeaderLineRequestID         = "X-Line-Request-Id"
)

// LinePushPath is the push endpoint, relative to LineConfig.BaseURL.
const LinePushPath = "/v2/bot/message/push"

// LineConfig configures the LINE push adapter.
type LineConfig struct {
	// BaseURL of the Messaging API. Default "https://api.line.me";
	// `rtm dev` points it at the local sink.
	BaseURL string `yaml:"base_url"`
	// ChannelAccessToken is the channel's long-lived access token, sent
	// as "Authorization: Bearer ...". Required.
	ChannelAccessToken string `yaml:"channel_access_token"`
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConnections is how many idle connections to the API are kept
	// for reuse: the send stage's concurrency (the partitions it owns).
	// Default DefaultMaxConnections.
	MaxConnections int `yaml:"max_connections"`
}

// LineDefaults returns the documented defaults.
func LineDefaults() LineConfig {
	return LineConfig{BaseURL: "https://api.line.me", Timeout: 10 * time.Second}
}

func (c LineConfig) withDefaults() LineConfig {
	d := LineDefaults()
	if c.BaseURL == "" {
		c.BaseURL = d.BaseURL
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	return c
}

// Validate reports every problem of c (after defaults).
func (c LineConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := checkBaseURL("line.base_url", c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	if c.ChannelAccessToken == "" {
		errs = append(errs, errors.New("line.channel_access_token is required"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("line.timeout must not be negative"))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, errors.New("line.max_connections must not be negative"))
	}
	return errors.Join(errs...)
}

// LineAdapter sends LINE push messages.
type LineAdapter struct {
	cfg    LineConfig
	client *http.Client
	log    *slog.Logger
}

// NewLineAdapter returns the LINE push adapter; log may be nil.
func NewLineAdapter(cfg LineConfig, log *slog.Logger) (*LineAdapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &LineAdapter{cfg: cfg, client: httpClient(cfg.Timeout, cfg.MaxConnections), log: orDiscard(log)}, nil
}

// Channel implements Adapter.
func (*LineAdapter) Channel() string { return topics.ChannelLine }

// Send implements Adapter. The request carries X-Line-Retry-Key =
// LineRetryKey(d.DeliveryID), so LINE itself drops a retry of a push it
// accepted: it answers 409 with X-Line-Accepted-Request-Id, which Send
// reports as success.
func (l *LineAdapter) Send(ctx context.Context, d *topics.Delivery) error {
	var p LinePayload
	if err := decodePayload(d, &p); err != nil {
		return err
	}
	key := LineRetryKey(d.DeliveryID)
	resp, err := postJSON(ctx, l.client, l.cfg.BaseURL+LinePushPath, map[string]string{
		"Authorization":    "Bearer " + l.cfg.ChannelAccessToken,
		HeaderLineRetryKey: key,
	}, d.Payload)
	if err != nil {
		return err
	}
	switch {
	case resp.status/100 == 2:
		l.log.DebugContext(ctx, "line push accepted", "delivery_id", d.DeliveryID, "request_id", resp.header.Get(HeaderLineRequestID))
		return nil
	case resp.status == http.StatusConflict && resp.header.Get(HeaderLineAcceptedRequestID) != "":
		l.log.InfoContext(ctx, "line push was already accepted", "delivery_id", d.DeliveryID,
			"accepted_request_id", resp.header.Get(HeaderLineAcceptedRequestID))
		return nil
	}
	return httpError(resp.status, resp.header, resp.body, time.Now())
}

// LineRetryKey is the X-Line-Retry-Key of a delivery: LINE requires a
// UUID, so it is the first 16 bytes of sha256(deliveryID) shaped as a
// version 4 UUID (RFC 9562 version and variant bits). The same delivery
// always gets the same key, across retries, restarts and replays.
func LineRetryKey(deliveryID string) string {
	sum := sha256.Sum256([]byte(deliveryID))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func checkBaseURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New(field + " must be an absolute http(s) URL, got " + "\"" + s + "\"")
	}
	if strings.HasSuffix(s, "/") {
		return errors.New(field + " must not end with a slash, got \"" + s + "\"")
	}
	return nil
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

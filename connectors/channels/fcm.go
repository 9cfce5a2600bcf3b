package channels

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/rtm-project/rtm/topics"
)

// FCMConfig configures the FCM HTTP v1 adapter.
type FCMConfig struct {
	// BaseURL of the FCM API. Default "https://fcm.googleapis.com".
	BaseURL string `yaml:"base_url"`
	// ProjectID is the Firebase project. Required.
	ProjectID string `yaml:"project_id"`
	// AccessToken is sent as "Authorization: Bearer ...". Required. It is
	// static: minting OAuth 2 tokens from a service account is not
	// implemented (see README).
	AccessToken string `yaml:"access_token"`
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// FCMDefaults returns the documented defaults.
func FCMDefaults() FCMConfig {
	return FCMConfig{BaseURL: "https://fcm.googleapis.com", Timeout: 10 * time.Second}
}

func (c FCMConfig) withDefaults() FCMConfig {
	d := FCMDefaults()
	if c.BaseURL == "" {
		c.BaseURL = d.BaseURL
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	return c
}

// Validate reports every problem of c (after defaults).
func (c FCMConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if err := checkBaseURL("fcm.base_url", c.BaseURL); err != nil {
		errs = append(errs, err)
	}
	if c.ProjectID == "" {
		errs = append(errs, errors.New("fcm.project_id is required"))
	}
	if c.AccessToken == "" {
		errs = append(errs, errors.New("fcm.access_token is required"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("fcm.timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// FCMAdapter sends push notifications through FCM HTTP v1.
type FCMAdapter struct {
	cfg    FCMConfig
	url    string
	client *http.Client
	log    *slog.Logger
}

// NewFCMAdapter returns the FCM adapter; log may be nil.
func NewFCMAdapter(cfg FCMConfig, log *slog.Logger) (*FCMAdapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &FCMAdapter{cfg: cfg, url: cfg.BaseURL + FCMSendPath(cfg.ProjectID), client: httpClient(cfg.Timeout), log: orDiscard(log)}, nil
}

// FCMSendPath is the send endpoint of project, relative to the base URL.
func FCMSendPath(project string) string {
	return "/v1/projects/" + url.PathEscape(project) + "/messages:send"
}

// Channel implements Adapter.
func (*FCMAdapter) Channel() string { return topics.ChannelPush }

// Send implements Adapter. FCM has no idempotency key: a retry after a
// lost response can show the notification twice (Android's collapse_key
// limits that on the device).
func (f *FCMAdapter) Send(ctx context.Context, d *topics.Delivery) error {
	var p PushPayload
	if err := decodePayload(d, &p); err != nil {
		return err
	}
	resp, err := postJSON(ctx, f.client, f.url, map[string]string{"Authorization": "Bearer " + f.cfg.AccessToken}, d.Payload)
	if err != nil {
		return err
	}
	if resp.status/100 == 2 {
		f.log.DebugContext(ctx, "fcm message accepted", "delivery_id", d.DeliveryID)
		return nil
	}
	return httpError(resp.status, resp.header, resp.body, time.Now())
}

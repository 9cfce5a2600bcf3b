package channels

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"golang.org/x/oauth2/jwt"

	"github.com/rtm-project/rtm/topics"
)

// FCMScope is the OAuth 2 scope of the FCM HTTP v1 API.
const FCMScope = "https://www.googleapis.com/auth/firebase.messaging"

// FCMConfig configures the FCM HTTP v1 adapter. Production uses a
// service account (CredentialsJSON): FCM access tokens expire after an
// hour, so the adapter mints them from the account's key and refreshes
// them before they expire. AccessToken, a static bearer token, is for the
// local sink and tests.
type FCMConfig struct {
	// BaseURL of the FCM API. Default "https://fcm.googleapis.com".
	BaseURL string `yaml:"base_url"`
	// ProjectID is the Firebase project. Default: the service account's
	// project_id; required with AccessToken.
	ProjectID string `yaml:"project_id"`
	// CredentialsJSON is a service-account key, the JSON file the Google
	// Cloud console issues. Exactly one of CredentialsJSON and
	// AccessToken is required.
	CredentialsJSON string `yaml:"credentials_json"`
	// TokenURL overrides the OAuth 2 token endpoint (default: the key's
	// token_uri, https://oauth2.googleapis.com/token); for tests and
	// egress proxies.
	TokenURL string `yaml:"token_url"`
	// AccessToken is sent as "Authorization: Bearer ..." as it is, never
	// refreshed.
	AccessToken string `yaml:"access_token"`
	// Timeout bounds one request (and one token request). Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConnections is how many idle connections to the API are kept
	// for reuse (see LineConfig). Default DefaultMaxConnections.
	MaxConnections int `yaml:"max_connections"`
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
	if c.ProjectID == "" && c.CredentialsJSON != "" {
		var key struct {
			ProjectID string `json:"project_id"`
		}
		if json.Unmarshal([]byte(c.CredentialsJSON), &key) == nil {
			c.ProjectID = key.ProjectID
		}
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
	switch {
	case c.CredentialsJSON != "" && c.AccessToken != "":
		errs = append(errs, errors.New("fcm.credentials_json and fcm.access_token are both set: use the service account (credentials_json) in production, a static access_token only against a local sink"))
	case c.CredentialsJSON != "":
		if _, err := c.jwtConfig(); err != nil {
			errs = append(errs, err)
		}
	case c.AccessToken == "":
		errs = append(errs, errors.New("fcm.credentials_json (a service-account key) or fcm.access_token is required"))
	}
	if c.ProjectID == "" {
		errs = append(errs, errors.New("fcm.project_id is required (with a service account it defaults to the key's project_id)"))
	}
	if c.TokenURL != "" {
		if err := checkBaseURL("fcm.token_url", c.TokenURL); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("fcm.timeout must not be negative"))
	}
	if c.MaxConnections < 0 {
		errs = append(errs, errors.New("fcm.max_connections must not be negative"))
	}
	return errors.Join(errs...)
}

// jwtConfig parses the service-account key.
func (c FCMConfig) jwtConfig() (*jwt.Config, error) {
	jc, err := google.JWTConfigFromJSON([]byte(c.CredentialsJSON), FCMScope)
	if err != nil {
		return nil, fmt.Errorf("fcm.credentials_json is not a usable service-account key (download a JSON key of a service account with the Firebase Cloud Messaging API role): %w", err)
	}
	if c.TokenURL != "" {
		jc.TokenURL = c.TokenURL
	}
	return jc, nil
}

// FCMAdapter sends push notifications through FCM HTTP v1.
type FCMAdapter struct {
	cfg    FCMConfig
	url    string
	client *http.Client
	// tokens gives the bearer token of each request: a refreshing
	// source of service-account tokens, or the static token.
	tokens oauth2.TokenSource
	log    *slog.Logger
}

// NewFCMAdapter returns the FCM adapter; log may be nil.
func NewFCMAdapter(cfg FCMConfig, log *slog.Logger) (*FCMAdapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	client := httpClient(cfg.Timeout, cfg.MaxConnections)
	var ts oauth2.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: cfg.AccessToken, TokenType: "Bearer"})
	if cfg.CredentialsJSON != "" {
		jc, err := cfg.jwtConfig()
		if err != nil {
			return nil, err
		}
		// The token requests share the adapter's bounded client. The
		// source caches its token and mints a new one shortly before
		// it expires (oauth2's expiry margin), one request at a time.
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
		ts = jc.TokenSource(ctx)
	}
	return &FCMAdapter{cfg: cfg, url: cfg.BaseURL + FCMSendPath(cfg.ProjectID), client: client, tokens: ts, log: orDiscard(log)}, nil
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
	tok, err := f.tokens.Token()
	if err != nil {
		// Retryable: the token endpoint may be briefly down; a key that
		// was revoked shows in the error of every attempt, and the
		// deliveries wait for a fixed key instead of being dropped.
		return &RetryableError{Err: fmt.Errorf("fcm: getting an access token for the service account: %w", err)}
	}
	resp, err := postJSON(ctx, f.client, f.url, map[string]string{"Authorization": tok.Type() + " " + tok.AccessToken}, d.Payload)
	if err != nil {
		return err
	}
	if resp.status/100 == 2 {
		f.log.DebugContext(ctx, "fcm message accepted", "delivery_id", d.DeliveryID)
		return nil
	}
	return httpError(resp.status, resp.header, resp.body, time.Now())
}

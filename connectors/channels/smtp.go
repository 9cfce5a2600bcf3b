package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/rtm-project/rtm/topics"
)

// SMTP TLS policies.
const (
	TLSNone          = "none"          // plain text: the local sink only
	TLSOpportunistic = "opportunistic" // STARTTLS when offered
	TLSMandatory     = "mandatory"     // STARTTLS or fail
	TLSImplicit      = "implicit"      // TLS from the first byte (SMTPS, port 465)
)

// SMTPConfig configures the mail adapter.
type SMTPConfig struct {
	// Host and Port of the submission server. Defaults "127.0.0.1" and 587.
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS is none, opportunistic, mandatory or implicit. Default
	// mandatory; `rtm dev` uses none for the local sink.
	TLS string `yaml:"tls"`
	// Username and Password enable SMTP AUTH (PLAIN, or LOGIN when
	// AuthMechanism says so). Empty Username: no AUTH.
	Username      string `yaml:"username"`
	Password      string `yaml:"password"`
	AuthMechanism string `yaml:"auth_mechanism"`
	// HELO is the name sent in EHLO. Default: the host name.
	HELO string `yaml:"helo"`
	// Timeout bounds connecting and each command. Default 15s.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is how many SMTP sessions are kept open and reused (and
	// the most open at once): a session costs a TCP connect, a TLS
	// handshake and AUTH. Default 4.
	PoolSize int `yaml:"pool_size"`
	// IdleTimeout is how long an unused session is kept; servers drop
	// idle sessions (RFC 5321 asks them to wait at least 5 minutes; many
	// wait less). Default 30s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// SMTPDefaults returns the documented defaults.
func SMTPDefaults() SMTPConfig {
	return SMTPConfig{Host: "127.0.0.1", Port: 587, TLS: TLSMandatory, AuthMechanism: "plain", Timeout: 15 * time.Second,
		PoolSize: 4, IdleTimeout: 30 * time.Second}
}

func (c SMTPConfig) withDefaults() SMTPConfig {
	d := SMTPDefaults()
	if c.Host == "" {
		c.Host = d.Host
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.TLS == "" {
		c.TLS = d.TLS
	}
	if c.AuthMechanism == "" {
		c.AuthMechanism = d.AuthMechanism
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.PoolSize == 0 {
		c.PoolSize = d.PoolSize
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	return c
}

// Validate reports every problem of c (after defaults).
func (c SMTPConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("smtp.port %d is not a TCP port", c.Port))
	}
	switch c.TLS {
	case TLSNone, TLSOpportunistic, TLSMandatory, TLSImplicit:
	default:
		errs = append(errs, fmt.Errorf("smtp.tls %q is not one of none, opportunistic, mandatory, implicit", c.TLS))
	}
	switch c.AuthMechanism {
	case "plain", "login":
	default:
		errs = append(errs, fmt.Errorf("smtp.auth_mechanism %q is not plain or login", c.AuthMechanism))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("smtp.password is set but smtp.username is not"))
	}
	if c.Username != "" && c.TLS == TLSNone {
		// go-mail refuses to send credentials in clear text, and so do we
		errs = append(errs, errors.New("smtp.username needs smtp.tls other than none: credentials are never sent in clear text"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("smtp.timeout must not be negative"))
	}
	if c.PoolSize < 1 {
		errs = append(errs, fmt.Errorf("smtp.pool_size %d must be at least 1", c.PoolSize))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, errors.New("smtp.idle_timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// SMTPAdapter sends mail through an SMTP submission server over a small
// pool of reused sessions (see smtpPool). It is safe for concurrent use.
type SMTPAdapter struct {
	pool *smtpPool
	log  *slog.Logger
}

// NewSMTPAdapter returns the mail adapter; log may be nil.
func NewSMTPAdapter(cfg SMTPConfig, log *slog.Logger) (*SMTPAdapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := []gomail.Option{gomail.WithPort(cfg.Port), gomail.WithTimeout(cfg.Timeout)}
	switch cfg.TLS {
	case TLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	case TLSOpportunistic:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case TLSMandatory:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL())
	}
	if cfg.HELO != "" {
		opts = append(opts, gomail.WithHELO(cfg.HELO))
	}
	if cfg.Username != "" {
		mech := gomail.SMTPAuthPlain
		if cfg.AuthMechanism == "login" {
			mech = gomail.SMTPAuthLogin
		}
		opts = append(opts, gomail.WithSMTPAuth(mech), gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	c, err := gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("smtp client for %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	return &SMTPAdapter{pool: newSMTPPool(c, cfg.PoolSize, cfg.IdleTimeout), log: orDiscard(log)}, nil
}

// Channel implements Adapter.
func (*SMTPAdapter) Channel() string { return topics.ChannelMail }

// Send implements Adapter. The Message-ID is <delivery_id@rtm>, so a mail
// sent twice (SMTP has no idempotency key) is at least recognisable as
// the same message by the receiving side.
func (s *SMTPAdapter) Send(ctx context.Context, d *topics.Delivery) error {
	var p MailPayload
	if err := decodePayload(d, &p); err != nil {
		return err
	}
	m, err := buildMail(d.DeliveryID, &p)
	if err != nil {
		return err
	}
	if err := s.pool.send(ctx, m); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return smtpError(err)
	}
	s.log.DebugContext(ctx, "mail accepted", "delivery_id", d.DeliveryID)
	return nil
}

// Close ends the pooled sessions.
func (s *SMTPAdapter) Close() error { return s.pool.close() }

// MessageID is the Message-ID header of a delivery's mail.
func MessageID(deliveryID string) string { return "<" + deliveryID + "@rtm>" }

func buildMail(deliveryID string, p *MailPayload) (*gomail.Msg, error) {
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := m.From(p.From); err != nil {
		return nil, permanent(0, "mail from %q: %w", p.From, err)
	}
	if err := m.To(p.To); err != nil {
		return nil, permanent(0, "mail to %q: %w", p.To, err)
	}
	m.Subject(p.Subject)
	m.SetMessageIDWithValue(deliveryID + "@rtm")
	m.SetDate()
	// sorted, so the same payload always yields the same header order
	for _, k := range slices.Sorted(maps.Keys(p.Headers)) {
		// Preformatted: List-Unsubscribe's <...> list must reach the
		// receiver byte for byte; Validate has ruled out line breaks.
		m.SetGenHeaderPreformatted(gomail.Header(k), p.Headers[k])
	}
	switch {
	case p.Text != "" && p.HTML != "":
		m.SetBodyString(gomail.TypeTextPlain, p.Text)
		m.AddAlternativeString(gomail.TypeTextHTML, p.HTML)
	case p.Text != "":
		m.SetBodyString(gomail.TypeTextPlain, p.Text)
	default:
		m.SetBodyString(gomail.TypeTextHTML, p.HTML)
	}
	return m, nil
}

// smtpError classifies a go-mail error: a reply the server marked
// permanent (5xx) is permanent; temporary replies (4xx), refused
// connections, timeouts and anything else are retryable.
func smtpError(err error) error {
	var se *gomail.SendError
	if errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500 {
		return &PermanentError{Code: se.ErrorCode(), Err: fmt.Errorf("smtp: %w", err)}
	}
	code := 0
	if se != nil {
		code = se.ErrorCode()
	}
	return &RetryableError{Code: code, Err: fmt.Errorf("smtp: %w", err)}
}

package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"

	"github.com/rtm-project/rtm/topics"
)

// DelivererConfig configures retries and the rate limit around one
// channel's Adapter. Zero values take the documented defaults.
type DelivererConfig struct {
	// MaxAttempts caps the sends of one delivery, the first included.
	// Default 5.
	MaxAttempts int `yaml:"max_attempts"`
	// BaseDelay is the backoff before the second attempt; it doubles each
	// attempt (with jitter in its upper half) up to MaxDelay. Defaults
	// 500ms and 30s.
	BaseDelay time.Duration `yaml:"base_delay"`
	MaxDelay  time.Duration `yaml:"max_delay"`
	// MaxRetryAfter is the longest Retry-After the Deliverer waits out.
	// A longer one ends the delivery as failed (still a *RetryableError,
	// so the send stage may reschedule it) instead of blocking its
	// partition. Default 5m.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
	// RatePerSecond and Burst limit attempts on the channel (retries
	// included). Default DefaultRate(channel) and a burst of one second's
	// worth; a negative rate disables the limit.
	RatePerSecond float64 `yaml:"rate_per_second"`
	Burst         int     `yaml:"burst"`
	// Metrics receives attempts, outcomes and latency; nil keeps them
	// unregistered.
	Metrics *Metrics `yaml:"-"`
	// Logger; nil discards.
	Logger *slog.Logger `yaml:"-"`
	// Sleep waits d or until ctx is done (tests record the waits instead
	// of sleeping). Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error `yaml:"-"`
}

// DefaultRate is the default attempts per second of a channel: LINE's
// push limit is 2,000 requests/s per channel, FCM's 600,000 messages/min
// per project; mail goes to one relay that rarely takes more than a few
// dozen connections per second; the in-app topic takes what Kafka takes.
// A negative result means unlimited.
func DefaultRate(channel string) float64 {
	switch channel {
	case topics.ChannelLine:
		return 2000
	case topics.ChannelPush:
		return 10000
	case topics.ChannelMail:
		return 50
	default:
		return -1
	}
}

func (c DelivererConfig) withDefaults(channel string) DelivererConfig {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 5
	}
	if c.BaseDelay == 0 {
		c.BaseDelay = 500 * time.Millisecond
	}
	if c.MaxDelay == 0 {
		c.MaxDelay = 30 * time.Second
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 5 * time.Minute
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = DefaultRate(channel)
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(c.RatePerSecond))
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
	c.Logger = orDiscard(c.Logger)
	return c
}

// Validate reports every problem of c.
func (c DelivererConfig) Validate() error {
	var errs []error
	if c.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("max_attempts %d must be at least 1", c.MaxAttempts))
	}
	if c.BaseDelay < 0 || c.MaxDelay < 0 || c.MaxRetryAfter < 0 {
		errs = append(errs, errors.New("base_delay, max_delay and max_retry_after must not be negative"))
	}
	if c.MaxDelay > 0 && c.BaseDelay > c.MaxDelay {
		errs = append(errs, fmt.Errorf("base_delay %v is longer than max_delay %v", c.BaseDelay, c.MaxDelay))
	}
	if c.Burst < 0 {
		errs = append(errs, fmt.Errorf("burst %d must not be negative", c.Burst))
	}
	return errors.Join(errs...)
}

// Outcome is the result of delivering one delivery.
type Outcome struct {
	// Status is topics.StatusSent or topics.StatusFailed.
	Status string
	// Attempts is how many times the adapter's Send ran.
	Attempts int
	// Err is the last error for a failed delivery. It wraps a
	// *PermanentError, a *RetryableError (attempts exhausted), or the
	// context's error when ctx ended first (shutdown: the send stage
	// should not record such a delivery as failed).
	Err error
}

// Result returns the delivery.results record of the outcome.
func (o Outcome) Result(d *topics.Delivery, at time.Time) topics.DeliveryResult {
	r := topics.DeliveryResult{DeliveryID: d.DeliveryID, OfferID: d.OfferID, MemberID: d.MemberID,
		CampaignID: d.CampaignID, Channel: d.Channel, Status: o.Status, Attempts: o.Attempts, At: at}
	if o.Err != nil {
		r.Error = o.Err.Error()
	}
	return r
}

// Deliverer wraps one channel's Adapter with the channel's rate limit and
// retries. It is safe for concurrent use; concurrent deliveries share the
// limit.
type Deliverer struct {
	a       Adapter
	cfg     DelivererConfig
	limiter *rate.Limiter
	m       *Metrics
}

// NewDeliverer returns a Deliverer for a.
func NewDeliverer(a Adapter, cfg DelivererConfig) (*Deliverer, error) {
	if a == nil {
		return nil, errors.New("deliverer needs an adapter")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("deliverer for %s: %w", a.Channel(), err)
	}
	cfg = cfg.withDefaults(a.Channel())
	lim := rate.NewLimiter(rate.Inf, 0)
	if cfg.RatePerSecond > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.RatePerSecond), cfg.Burst)
	}
	m := cfg.Metrics
	if m == nil {
		m, _ = NewMetrics(nil) // registers nothing, cannot fail
	}
	return &Deliverer{a: a, cfg: cfg, limiter: lim, m: m}, nil
}

// Channel is the adapter's channel.
func (dl *Deliverer) Channel() string { return dl.a.Channel() }

// Deliver sends d, retrying retryable failures with exponential backoff
// (at least the channel's Retry-After) up to MaxAttempts, and never
// retrying a permanent one. It returns when d is sent, has failed, or
// ctx is done.
func (dl *Deliverer) Deliver(ctx context.Context, d *topics.Delivery) Outcome {
	ch := dl.a.Channel()
	o := dl.deliver(ctx, d, ch)
	dl.m.outcomes.WithLabelValues(ch, o.Status).Inc()
	if o.Status == topics.StatusFailed {
		dl.cfg.Logger.WarnContext(ctx, "delivery failed", "channel", ch, "delivery_id", d.DeliveryID,
			"attempts", o.Attempts, "err", o.Err)
	}
	return o
}

func (dl *Deliverer) deliver(ctx context.Context, d *topics.Delivery, ch string) Outcome {
	var last error
	for attempt := 1; ; attempt++ {
		if err := dl.limiter.Wait(ctx); err != nil {
			return failed(attempt-1, stopped(ctx, err, last))
		}
		start := time.Now()
		err := dl.a.Send(ctx, d)
		dl.m.latency.WithLabelValues(ch).Observe(time.Since(start).Seconds())
		dl.m.attempts.WithLabelValues(ch, attemptResult(err)).Inc()
		if err == nil {
			return Outcome{Status: topics.StatusSent, Attempts: attempt}
		}
		last = err
		if ctx.Err() != nil {
			return failed(attempt, stopped(ctx, ctx.Err(), last))
		}
		if IsPermanent(err) || attempt >= dl.cfg.MaxAttempts {
			return failed(attempt, err)
		}
		wait := dl.backoff(attempt)
		var re *RetryableError
		if errors.As(err, &re) && re.RetryAfter > 0 {
			if re.RetryAfter > dl.cfg.MaxRetryAfter {
				return failed(attempt, fmt.Errorf("retry-after %v exceeds max_retry_after %v: %w", re.RetryAfter, dl.cfg.MaxRetryAfter, err))
			}
			wait = max(wait, re.RetryAfter)
		}
		dl.cfg.Logger.DebugContext(ctx, "retrying delivery", "channel", ch, "delivery_id", d.DeliveryID,
			"attempt", attempt, "wait", wait, "err", err)
		if err := dl.cfg.Sleep(ctx, wait); err != nil {
			return failed(attempt, stopped(ctx, err, last))
		}
	}
}

// backoff is the wait after attempt n (1-based): BaseDelay·2^(n-1),
// capped at MaxDelay, drawn from its upper half so that deliveries failing
// together do not retry together.
func (dl *Deliverer) backoff(n int) time.Duration {
	d := dl.cfg.MaxDelay
	if n-1 < 32 {
		d = min(dl.cfg.BaseDelay<<(n-1), dl.cfg.MaxDelay)
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func failed(attempts int, err error) Outcome {
	return Outcome{Status: topics.StatusFailed, Attempts: attempts, Err: err}
}

// stopped is the error of a delivery cut short by ctx (or by a rate
// limiter that cannot grant a token before ctx's deadline).
func stopped(ctx context.Context, err, last error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	if last == nil {
		return fmt.Errorf("delivery stopped: %w", err)
	}
	return fmt.Errorf("delivery stopped: %w (last attempt: %w)", err, last)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Router delivers each delivery with the Deliverer of its channel.
type Router struct {
	byChannel map[string]*Deliverer
}

// NewRouter returns a Router over ds; two Deliverers for one channel are
// an error.
func NewRouter(ds ...*Deliverer) (*Router, error) {
	r := &Router{byChannel: make(map[string]*Deliverer, len(ds))}
	for _, d := range ds {
		if _, dup := r.byChannel[d.Channel()]; dup {
			return nil, fmt.Errorf("two deliverers for channel %s", d.Channel())
		}
		r.byChannel[d.Channel()] = d
	}
	return r, nil
}

// Deliver sends d on its channel; a channel without a Deliverer fails
// permanently without an attempt.
func (r *Router) Deliver(ctx context.Context, d *topics.Delivery) Outcome {
	dl, ok := r.byChannel[d.Channel]
	if !ok {
		return failed(0, permanent(0, "no adapter configured for channel %q", d.Channel))
	}
	return dl.Deliver(ctx, d)
}

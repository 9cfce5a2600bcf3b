package collector

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/topics"
)

// Config configures the collector. Zero values take the documented
// defaults (Defaults fills them in one place).
type Config struct {
	// Addr is the listen address for Run. Default ":8080".
	Addr string `yaml:"addr"`
	// Topic receives the events. Default topics.BehaviorEvents.
	Topic string `yaml:"topic"`
	// MaxBodyBytes caps a request body; larger bodies get 413. Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxEvents caps the events of one request; more get 413. Default 1000.
	MaxEvents int `yaml:"max_events"`
	// RatePerSecond and Burst bound the events per second of each API key,
	// counted in events, not requests (a request may carry MaxEvents);
	// a request over the limit gets 429 with Retry-After. Defaults 500 and
	// 1000; Burst must hold MaxEvents. A negative rate disables the limit.
	RatePerSecond float64 `yaml:"rate_per_second"`
	Burst         int     `yaml:"burst"`
	// TrackingRate and TrackingBurst bound the tracking hits (/t/...) per
	// second of each client address; over it they get 429. Defaults 10 and
	// 50; a negative rate disables the limit.
	TrackingRate  float64 `yaml:"tracking_rate"`
	TrackingBurst int     `yaml:"tracking_burst"`
	// APIKeys are the accepted X-API-Key values of POST /v1/events, at
	// least one, each at least tracking.MinSecretBytes long; several are
	// active at once for rotation. New keeps only their SHA-256 hashes.
	// Tracking links are authenticated by their seal instead.
	APIKeys []string `yaml:"api_keys"`
	// Keys opens tracking tokens; the render stage seals them with the
	// same secrets. Required.
	Keys *tracking.Keyring `yaml:"-"`
	// ProduceTimeout is how long a request waits for Kafka before it gets
	// 503. Default 5s.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// RetryAfter is the Retry-After sent with 503 and 429. Default 5s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// Registerer receives the collector's metrics; nil registers none.
	Registerer prometheus.Registerer `yaml:"-"`
	// Now is the clock (tests); default time.Now.
	Now func() time.Time `yaml:"-"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{Addr: ":8080", Topic: topics.BehaviorEvents, MaxBodyBytes: 1 << 20, MaxEvents: 1000,
		RatePerSecond: 500, Burst: 1000, TrackingRate: 10, TrackingBurst: 50, ProduceTimeout: 5 * time.Second, RetryAfter: 5 * time.Second, Now: time.Now}
}

func (c Config) withDefaults() Config {
	d := Defaults()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = d.MaxEvents
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = d.RatePerSecond
	}
	if c.Burst == 0 {
		c.Burst = d.Burst
	}
	if c.TrackingRate == 0 {
		c.TrackingRate = d.TrackingRate
	}
	if c.TrackingBurst == 0 {
		c.TrackingBurst = d.TrackingBurst
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = d.ProduceTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("max_body_bytes %d is negative", c.MaxBodyBytes))
	}
	if c.MaxEvents < 0 {
		errs = append(errs, fmt.Errorf("max_events %d is negative", c.MaxEvents))
	}
	if c.RatePerSecond > 0 && c.Burst < max(1, c.MaxEvents) {
		errs = append(errs, fmt.Errorf("burst %d must be at least max_events (%d): the rate limit counts events, so a smaller burst refuses every full request", c.Burst, c.MaxEvents))
	}
	if c.TrackingRate > 0 && c.TrackingBurst < 1 {
		errs = append(errs, fmt.Errorf("tracking_burst %d must be at least 1 when rate limiting", c.TrackingBurst))
	}
	if c.ProduceTimeout < 0 || c.RetryAfter < 0 {
		errs = append(errs, errors.New("produce_timeout and retry_after must not be negative"))
	}
	if len(c.APIKeys) == 0 {
		errs = append(errs, errors.New("api_keys: at least one API key is required (POST /v1/events is never open)"))
	}
	for i, k := range c.APIKeys {
		if len(k) < tracking.MinSecretBytes {
			errs = append(errs, fmt.Errorf("api_keys[%d] has %d bytes; use at least %d random bytes", i, len(k), tracking.MinSecretBytes))
		}
	}
	if c.Keys == nil {
		errs = append(errs, errors.New("tracking keys are required (the render stage's tracking secret)"))
	}
	return errors.Join(errs...)
}

package collector

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	// RatePerSecond and Burst bound requests per second (all clients
	// together); excess requests get 429 with Retry-After. Defaults 500
	// and 1000; a negative rate disables the limit.
	RatePerSecond float64 `yaml:"rate_per_second"`
	Burst         int     `yaml:"burst"`
	// APIKeys, when not empty, are the accepted X-API-Key values for
	// POST /v1/events (tracking links are authenticated by their signature).
	APIKeys []string `yaml:"api_keys"`
	// TrackingSecret is the HMAC-SHA256 key of tracking tokens; the render
	// stage signs with the same secret. Without it the /t/ routes answer 404.
	TrackingSecret []byte `yaml:"tracking_secret"`
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
		RatePerSecond: 500, Burst: 1000, ProduceTimeout: 5 * time.Second, RetryAfter: 5 * time.Second, Now: time.Now}
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
	if c.RatePerSecond > 0 && c.Burst < 1 {
		errs = append(errs, fmt.Errorf("burst %d must be at least 1 when rate limiting", c.Burst))
	}
	if c.ProduceTimeout < 0 || c.RetryAfter < 0 {
		errs = append(errs, errors.New("produce_timeout and retry_after must not be negative"))
	}
	for i, k := range c.APIKeys {
		if k == "" {
			errs = append(errs, fmt.Errorf("api_keys[%d] is empty", i))
		}
	}
	if len(c.TrackingSecret) > 0 && len(c.TrackingSecret) < 32 {
		errs = append(errs, fmt.Errorf("tracking_secret has %d bytes; use at least 32 random bytes", len(c.TrackingSecret)))
	}
	return errors.Join(errs...)
}

package channels

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/bytedance/sonic"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// InAppTopic is where in-app messages go, keyed by member_id. The inbox
// (a compacted table keyed by member) is built from it elsewhere.
const InAppTopic = topics.InAppMessages

// Producer is what the in-app adapter needs from Kafka; *kgo.Client
// implements it. ProduceSync must return only once the broker acknowledged
// (or refused) every record.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// NewInAppProducer returns a Kafka client for the in-app adapter:
// idempotent, acks=all (both franz-go defaults, stated here because the
// adapter relies on them), Kafka's murmur2 key partitioner so a member's
// messages land on the member's partition, over k's connection (TLS,
// SASL). The caller closes it.
func NewInAppProducer(k kafka.Config, extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := k.NewClient(append(topics.ProducerOpts(), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("in-app producer: %w", err)
	}
	return cl, nil
}

// InAppConfig configures the in-app adapter.
type InAppConfig struct {
	// Topic receives the messages. Default InAppTopic.
	Topic string `yaml:"topic"`
	// Timeout bounds one produce. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Now is the clock for InAppMessage.At (tests); default time.Now.
	Now func() time.Time `yaml:"-"`
}

// InAppDefaults returns the documented defaults.
func InAppDefaults() InAppConfig {
	return InAppConfig{Topic: InAppTopic, Timeout: 10 * time.Second, Now: time.Now}
}

func (c InAppConfig) withDefaults() InAppConfig {
	d := InAppDefaults()
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate reports every problem of c (after defaults).
func (c InAppConfig) Validate() error {
	if c.Timeout < 0 {
		return errors.New("inapp.timeout must not be negative")
	}
	return nil
}

// InAppAdapter writes in-app inbox messages to Kafka.
type InAppAdapter struct {
	cfg InAppConfig
	p   Producer
}

// NewInAppAdapter returns the in-app adapter producing with p (see
// NewInAppProducer); the caller keeps ownership of p.
func NewInAppAdapter(cfg InAppConfig, p Producer) (*InAppAdapter, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if p == nil {
		errs = append(errs, errors.New("in-app adapter needs a producer"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &InAppAdapter{cfg: cfg.withDefaults(), p: p}, nil
}

// Channel implements Adapter.
func (*InAppAdapter) Channel() string { return topics.ChannelInApp }

// Send implements Adapter. The record is keyed by the payload's member_id;
// the inbox deduplicates on delivery_id, because a producer retry after a
// lost acknowledgement writes the record twice across client sessions.
func (a *InAppAdapter) Send(ctx context.Context, d *topics.Delivery) error {
	var p InAppPayload
	if err := decodePayload(d, &p); err != nil {
		return err
	}
	if p.MemberID != d.MemberID {
		return permanent(0, "in-app payload member_id %q differs from the delivery's %q", p.MemberID, d.MemberID)
	}
	v, err := sonic.ConfigStd.Marshal(topics.InAppMessage{DeliveryID: d.DeliveryID, Title: p.Title, Body: p.Body, URL: p.URL, At: a.cfg.Now().UTC()})
	if err != nil {
		return permanent(0, "encoding in-app message: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	err = a.p.ProduceSync(pctx, &kgo.Record{Topic: a.cfg.Topic, Key: []byte(p.MemberID), Value: v}).FirstErr()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return kafkaError(a.cfg.Topic, err)
}

// kafkaError classifies a produce error: Kafka's non-retriable errors
// (record too large, not authorized, invalid record) are permanent;
// retriable ones, timeouts and anything else are retryable.
func kafkaError(topic string, err error) error {
	var ke *kerr.Error
	if errors.As(err, &ke) && !ke.Retriable {
		return &PermanentError{Err: fmt.Errorf("producing to %s: %w", topic, err)}
	}
	return &RetryableError{Err: fmt.Errorf("producing to %s: %w", topic, err)}
}

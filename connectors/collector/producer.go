package collector

import (
	"context"
	"fmt"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// Producer is what the collector needs from Kafka; *kgo.Client implements
// it. ProduceSync must return only after the broker acknowledged (or
// refused) every record.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// NewProducer returns the collector's Kafka client: idempotent, acks=all,
// Kafka's murmur2 key partitioner (topics.Partition), so events land on
// their member's partition, over k's connection (TLS, SASL).
func NewProducer(k kafka.Config, extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := k.NewClient(append(topics.ProducerOpts(), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("collector producer: %w", err)
	}
	return cl, nil
}

package collector

import (
	"context"
	"fmt"

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
// their member's partition. extra options are appended (e.g. TLS, SASL).
func NewProducer(brokers []string, extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(topics.ProducerOpts(brokers), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("collector producer: %w", err)
	}
	return cl, nil
}

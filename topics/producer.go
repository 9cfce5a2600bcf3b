package topics

import "github.com/twmb/franz-go/pkg/kgo"

// ProducerOpts are the options of every franz-go producer that writes
// member-keyed records (the collector, the in-app adapter): acks from all
// in-sync replicas, idempotent (franz-go's default with acks=all), and
// Kafka's murmur2 key partitioner, so a record lands on its member's
// partition (Partition). The connection (seeds, TLS, SASL) comes from
// kafka.Config. No linger: these producers wait for each ack
// before answering, so batching would only add latency.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(0),
	}
}

// Package stage is the wiring every RTM stage shares: Goka options that agree
// with the topic catalogue (Kafka's murmur2 partitioner, replication, Pebble
// storage) and one sarama configuration built in one place.
package stage

import (
	"fmt"
	"hash"
	"log/slog"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/topics"
)

// Env is what a stage needs to talk to Kafka the RTM way.
type Env struct {
	Brokers []string
	// Kafka is the cluster's security (TLS, SASL), applied to every sarama
	// client Goka makes for the stage.
	Kafka     kafka.Config
	Catalogue topics.Catalogue
	// InstanceID, when set, is the static group membership ID.
	InstanceID string
	// Group is the stage's consumer group (for its metrics).
	Group string
	// Storage builds the local state of group and join tables.
	Storage storage.Builder
	// Registry finds the open stores Storage built, for index scans.
	Registry *state.Registry
	Log      *slog.Logger
}

// saramaConfig returns a fresh sarama configuration for Goka clients, with
// the cluster's TLS and SASL. Goka keeps a package-global config; RTM never
// touches it and passes its own per builder instead, so two stages in one
// process (rtm dev, tests) cannot race on it.
func (e Env) saramaConfig(clientID string) (*sarama.Config, error) {
	c := baseSaramaConfig(clientID)
	k := e.Kafka
	k.Brokers = e.Brokers
	if err := k.ApplySarama(c); err != nil {
		return nil, err
	}
	return c, nil
}

func baseSaramaConfig(clientID string) *sarama.Config {
	c := goka.DefaultConfig()
	c.ClientID = clientID
	// Kafka 2.8+ protocol; the embedded broker and any supported cluster speak it.
	c.Version = sarama.V2_8_0_0
	// acks=all: a changelog or output write survives a broker loss.
	c.Producer.RequiredAcks = sarama.WaitForAll
	// Stages start from the oldest record the first time a group runs, so
	// records produced before a stage was deployed are not skipped.
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	// The CDC bridge writes rows and checkpoints in transactions: never
	// read rows of an aborted one.
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	return c
}

// Hasher is the partition hasher for every Goka processor, view and emitter.
func Hasher() func() hash.Hash32 { return topics.Hasher() }

// TopicManagerConfig creates Goka's own topics (group tables and loops, if
// provisioning has not) with the catalogue's replication: Goka's default of
// 2 is rejected by a one-broker cluster, production catalogues say 3.
func (e Env) TopicManagerConfig() *goka.TopicManagerConfig {
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = int(e.Catalogue.Replication)
	tmc.Stream.Replication = int(e.Catalogue.Replication)
	tmc.Stream.Retention = 7 * 24 * time.Hour
	tmc.CreateTopicTimeout = 30 * time.Second
	return tmc
}

func (e Env) topicManagerBuilder() goka.TopicManagerBuilder {
	return func(brokers []string) (goka.TopicManager, error) {
		c, err := e.saramaConfig("rtm-topic-manager")
		if err != nil {
			return nil, err
		}
		return goka.NewTopicManager(brokers, c, e.TopicManagerConfig())
	}
}

func (e Env) producerBuilder(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
	c, err := e.saramaConfig(clientID)
	if err != nil {
		return nil, err
	}
	c.Producer.Partitioner = sarama.NewCustomHashPartitioner(hasher)
	p, err := goka.NewProducer(brokers, c)
	if err != nil {
		return nil, err
	}
	return changelogGuard{Producer: p, reg: e.Registry, log: e.Log}, nil
}

// changelogGuard fails the local stores of a table whose changelog write
// failed. Goka writes a row to the local store first and to its changelog
// after; when the changelog write fails, the processor stops, but the
// store already holds the row and would be closed as clean: after a
// restart it would disagree with the changelog for good (the send stage
// counted deliveries as sent whose results were never written, 2,962 local
// rows against 2,104 in Kafka). A failed store is never marked clean, so
// the next start restores the table from its changelog instead.
type changelogGuard struct {
	goka.Producer
	reg *state.Registry
	log *slog.Logger
}

func (g changelogGuard) Emit(topic, key string, value []byte) *goka.Promise {
	return g.EmitWithHeaders(topic, key, value, nil)
}

func (g changelogGuard) EmitWithHeaders(topic, key string, value []byte, h goka.Headers) *goka.Promise {
	p := g.Producer.EmitWithHeaders(topic, key, value, h)
	if g.reg == nil || !strings.HasSuffix(topic, "-table") {
		return p
	}
	return p.Then(func(err error) {
		if err == nil {
			return
		}
		if n := g.reg.FailTopic(topic, fmt.Errorf("changelog write to %s failed: %w", topic, err)); n > 0 && g.log != nil {
			g.log.Error("changelog write failed; the local stores of the table will be restored from the changelog on restart",
				"topic", topic, "stores", n, "err", err)
		}
	})
}

func (e Env) consumerGroupBuilder(brokers []string, group, clientID string) (sarama.ConsumerGroup, error) {
	c, err := e.saramaConfig(clientID)
	if err != nil {
		return nil, err
	}
	if e.InstanceID != "" {
		// KIP-345: the broker keeps this member's assignment across a
		// restart inside the session timeout instead of rebalancing.
		c.Consumer.Group.InstanceId = e.InstanceID
	}
	cg, err := sarama.NewConsumerGroup(brokers, group, c)
	if err != nil {
		return nil, err
	}
	return orderedGroup{cg}, nil
}

func (e Env) consumerBuilder(brokers []string, clientID string) (sarama.Consumer, error) {
	c, err := e.saramaConfig(clientID)
	if err != nil {
		return nil, err
	}
	return sarama.NewConsumer(brokers, c)
}

// ProcessorOptions returns the options every stage processor uses, followed
// by extra.
func (e Env) ProcessorOptions(extra ...goka.ProcessorOption) []goka.ProcessorOption {
	opts := []goka.ProcessorOption{
		goka.WithHasher(Hasher()),
		goka.WithTopicManagerBuilder(e.topicManagerBuilder()),
		goka.WithProducerBuilder(e.producerBuilder),
		goka.WithConsumerGroupBuilder(e.consumerGroupBuilder),
		goka.WithConsumerSaramaBuilder(e.consumerBuilder),
	}
	if e.Storage != nil {
		opts = append(opts, goka.WithStorageBuilder(e.Storage))
	}
	if e.Log != nil {
		opts = append(opts, goka.WithLogger(gokaLogger{e.Log}))
	}
	if e.Group != "" {
		group := e.Group
		opts = append(opts, goka.WithRebalanceCallback(func(goka.Assignment) { Rebalances.WithLabelValues(group).Inc() }))
	}
	return append(opts, extra...)
}

// ViewOptions returns the options every view uses, followed by extra.
func (e Env) ViewOptions(extra ...goka.ViewOption) []goka.ViewOption {
	opts := []goka.ViewOption{
		goka.WithViewHasher(Hasher()),
		goka.WithViewTopicManagerBuilder(e.topicManagerBuilder()),
		goka.WithViewConsumerSaramaBuilder(e.consumerBuilder),
	}
	if e.Storage != nil {
		opts = append(opts, goka.WithViewStorageBuilder(e.Storage))
	}
	if e.Log != nil {
		opts = append(opts, goka.WithViewLogger(gokaLogger{e.Log}))
	}
	return append(opts, extra...)
}

// EmitterOptions returns the options every emitter uses, followed by extra.
func (e Env) EmitterOptions(extra ...goka.EmitterOption) []goka.EmitterOption {
	opts := []goka.EmitterOption{
		goka.WithEmitterHasher(Hasher()),
		goka.WithEmitterTopicManagerBuilder(e.topicManagerBuilder()),
		goka.WithEmitterProducerBuilder(e.producerBuilder),
	}
	if e.Log != nil {
		opts = append(opts, goka.WithEmitterLogger(gokaLogger{e.Log}))
	}
	return append(opts, extra...)
}

// gokaLogger adapts slog to Goka's Logger: Printf carries Goka's lifecycle
// messages (rebalances, recovery), Print and Println are debug detail.
type gokaLogger struct{ l *slog.Logger }

func (g gokaLogger) Print(v ...any)            { g.l.Debug(fmt.Sprint(v...), "component", "goka") }
func (g gokaLogger) Println(v ...any)          { g.l.Debug(fmt.Sprint(v...), "component", "goka") }
func (g gokaLogger) Printf(f string, v ...any) { g.l.Info(fmt.Sprintf(f, v...), "component", "goka") }

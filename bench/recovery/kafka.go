package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafka is the in-process broker the children recover from.
type kafka struct {
	cluster *kfake.Cluster
	brokers []string
}

func startKafka(ctx context.Context) (*kafka, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("starting kfake: %w", err)
	}
	return &kafka{cluster: c, brokers: c.ListenAddrs()}, nil
}

func (k *kafka) close() { k.cluster.Close() }

// key is the changelog key of record i; children use it to pick Gets.
func key(i int) string { return fmt.Sprintf("member-%09d", i) }

// fill creates the single-partition changelog and produces cfg.Records
// records with distinct keys in random order and random lowercase values.
func (k *kafka) fill(ctx context.Context, cfg config) (time.Duration, error) {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.brokers...),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, fmt.Errorf("creating producer: %w", err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("compact")}, table)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", table, err)
	}
	if cfg.Records == 0 {
		return 0, errNoRecords
	}
	rng := rand.New(rand.NewPCG(1, 1))
	// A changelog holds keys in the order they were written, not sorted:
	// produce the keys in a random order.
	order := rng.Perm(cfg.Records)
	const chunk = 20_000
	recs := make([]*kgo.Record, 0, chunk)
	for i := range cfg.Records {
		v := make([]byte, cfg.ValueSize)
		for j := range v {
			v[j] = byte('a' + rng.IntN(26))
		}
		recs = append(recs, &kgo.Record{Topic: table, Key: []byte(key(order[i])), Value: v})
		if len(recs) == chunk || i == cfg.Records-1 {
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				return 0, fmt.Errorf("producing to %s: %w", table, err)
			}
			recs = recs[:0]
		}
	}
	return time.Since(start), nil
}

func ptr[T any](v T) *T { return &v }

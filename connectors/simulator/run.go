package simulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/rtm-project/rtm/connectors/mssql"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/topics"
)

// System is the simulated shop wired to a cluster the way a real shop is:
// its rows go through the real Change Tracking bridge (from an in-memory
// Change Tracking source) into cdc.<table>, its behaviour events to
// behavior.events, and its members open and click what delivery.results
// says they were sent. `rtm dev` runs it.
type System struct {
	// Kafka is the cluster.
	Kafka kafka.Config
	// Shop configures the simulated shop (Start defaults to now, so
	// rows carry the wall clock).
	Shop Config
	// Registerer receives the bridge's metrics (nil: none).
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Run runs the bridge, the shop and the members' replies until ctx is
// done or one of them fails.
func (s System) Run(ctx context.Context) error {
	ct, err := mssql.NewMemCT(mssql.DefaultTables()...)
	if err != nil {
		return err
	}
	// Continue above what earlier runs bridged, so downstream stages (which
	// ignore versions they have seen) take the new rows.
	cps, err := mssql.ReadCheckpoints(ctx, s.Kafka, topics.CDCCheckpoints)
	if err != nil {
		return err
	}
	var top int64
	for _, v := range cps {
		top = max(top, v)
	}
	if err := ct.StartAt(top); err != nil {
		return err
	}
	bc := mssql.Defaults()
	bc.Kafka = s.Kafka
	bc.PollInterval = 200 * time.Millisecond
	bc.TransactionalID = "rtm-dev-cdc"
	bridge, err := mssql.New(bc, ct, s.Log, s.Registerer)
	if err != nil {
		return err
	}
	producer, err := s.Kafka.NewClient(topics.ProducerOpts()...)
	if err != nil {
		return fmt.Errorf("shop producer: %w", err)
	}
	defer producer.Close()
	sink := func(ctx context.Context, ev topics.BehaviorEvent) error {
		v, err := topics.BehaviorEventCodec{}.Encode(&ev)
		if err != nil {
			return err
		}
		return producer.ProduceSync(ctx, &kgo.Record{Topic: topics.BehaviorEvents, Key: []byte(ev.MemberID), Value: v}).FirstErr()
	}
	sc := s.Shop
	if sc.Start.IsZero() {
		sc.Start = time.Now().UTC()
	}
	shop, err := New(sc, ct, sink)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return bridge.Run(ctx) })
	g.Go(func() error { return shop.Run(ctx) })
	g.Go(func() error { return s.replies(ctx, sink) })
	err = g.Wait()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// replies makes simulated members react to what they were sent.
func (s System) replies(ctx context.Context, sink EventSink) error {
	cl, err := s.Kafka.NewClient(kgo.ConsumeTopics(topics.DeliveryResults), kgo.ConsumerGroup("rtm-dev-simulated-members"))
	if err != nil {
		return fmt.Errorf("simulated replies: %w", err)
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(rec *kgo.Record) {
			r, err := topics.DeliveryResultCodec{}.DecodeValue(rec.Value)
			if err != nil {
				return
			}
			if err := Reply(ctx, sink, *r, time.Now().UTC()); err != nil && !errors.Is(err, context.Canceled) {
				s.Log.Warn("simulated reply", "err", err)
			}
		})
	}
	return nil
}

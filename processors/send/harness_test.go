package send_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// sendStage starts a send stage on one partition with d as its channels,
// and returns a function that produces a LINE delivery (expiring at
// expires, if set), one that waits until n results have arrived in all and
// returns them by delivery ID, and one that stops the stage and starts
// another in its place (same broker, new data directory).
func sendStage(t *testing.T, d send.Deliverer, cfg send.Config) (deliver func(id, member string, expires time.Time), results func(n int) map[string][]topics.DeliveryResult, restart func(between func())) {
	t.Helper()
	b := testkit.Broker(t, "")
	addr := b.Addr()
	ctx := testkit.Context(t)
	cat := topics.New(1, 1)
	cl := testkit.Client(t, addr)
	if _, err := topics.Apply(ctx, kadm.NewClient(cl), cat, false); err != nil {
		t.Fatal(err)
	}
	start := func() (stop func() error) {
		env, err := stage.NewEnv(stage.EnvConfig{Kafka: kafka.Config{Brokers: []string{addr}}, Catalogue: cat,
			DataDir: t.TempDir(), Group: send.Group, Indexes: send.Indexes(), IndexedTable: topics.TableOf(send.Group), Log: testkit.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		st, err := send.New(env, d, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- st.Run(rctx) }()
		var once sync.Once
		var runErr error
		return func() error {
			once.Do(func() { cancel(); runErr = <-done })
			return runErr
		}
	}
	stop := start()
	t.Cleanup(func() { stop() })
	restart = func(between func()) {
		t.Helper()
		if err := stop(); err != nil {
			t.Errorf("stopping: %v", err)
		}
		between()
		stop = start()
	}
	deliver = func(id, member string, expires time.Time) {
		v, err := topics.DeliveryCodec{}.Encode(&topics.Delivery{DeliveryID: id, OfferID: "o-" + id, MemberID: member,
			CampaignID: "c", Channel: topics.ChannelLine, Payload: []byte(`{}`), ExpiresAt: expires})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Deliveries, Key: []byte(member), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	read := testkit.Client(t, addr, kgo.ConsumeTopics(topics.DeliveryResults), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got, count := map[string][]topics.DeliveryResult{}, 0
	results = func(n int) map[string][]topics.DeliveryResult {
		t.Helper()
		pctx, pcancel := context.WithTimeout(ctx, time.Minute)
		defer pcancel()
		for count < n {
			fs := read.PollFetches(pctx)
			if pctx.Err() != nil {
				t.Fatalf("%d of %d results", count, n)
			}
			fs.EachRecord(func(r *kgo.Record) {
				res, err := topics.DeliveryResultCodec{}.DecodeValue(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				got[res.DeliveryID] = append(got[res.DeliveryID], *res)
				count++
			})
		}
		return got
	}
	return deliver, results, restart
}

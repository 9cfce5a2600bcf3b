package send_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// outage is a channel that answers a retryable error until it is healed,
// or a permanent one for the member given.
type outage struct {
	mu        sync.Mutex
	down      bool
	permanent string
	sent      map[string]int // delivery ID -> accepted sends
	tries     map[string]int
}

func (o *outage) Deliver(ctx context.Context, d *topics.Delivery) channels.Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tries[d.DeliveryID]++
	switch {
	case d.MemberID == o.permanent:
		return channels.Outcome{Status: topics.StatusFailed, Attempts: 1, Err: &channels.PermanentError{Code: 400, Err: errors.New("invalid user")}}
	case o.down && d.MemberID != "UP":
		return channels.Outcome{Status: topics.StatusFailed, Attempts: 2, Err: &channels.RetryableError{Code: 503, Err: errors.New("service unavailable")}}
	}
	o.sent[d.DeliveryID]++
	return channels.Outcome{Status: topics.StatusSent, Attempts: 1}
}

func (o *outage) heal() { o.mu.Lock(); o.down = false; o.mu.Unlock() }

// TestChannelOutageLosesNothing: deliveries that fail on an outage are
// rescheduled, not failed; a member on a working channel is not held up
// behind them on the same partition; after the outage every delivery is
// sent exactly once with one result; a permanent error still fails at
// once; an expired offer fails with the reason.
func TestChannelOutageLosesNothing(t *testing.T) {
	b := testkit.Broker(t, "")
	addr := b.Addr()
	ctx := testkit.Context(t)
	cat := topics.New(1, 1)
	cl := testkit.Client(t, addr, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if _, err := topics.Apply(ctx, kadm.NewClient(cl), cat, false); err != nil {
		t.Fatal(err)
	}
	env, err := stage.NewEnv(stage.EnvConfig{Kafka: kafka.Config{Brokers: []string{addr}}, Catalogue: cat,
		DataDir: t.TempDir(), Group: send.Group, Indexes: send.Indexes(), IndexedTable: topics.TableOf(send.Group), Log: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ch := &outage{down: true, permanent: "BAD", sent: map[string]int{}, tries: map[string]int{}}
	st, err := send.New(env, ch, send.Config{RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, TickInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(rctx) }()
	defer func() { cancel(); <-done }()

	deliver := func(id, member string, expires time.Time) {
		v, err := topics.DeliveryCodec{}.Encode(&topics.Delivery{DeliveryID: id, OfferID: "o-" + id, MemberID: member,
			CampaignID: "c", Channel: topics.ChannelLine, Payload: []byte(`{}`), ExpiresAt: expires})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Deliveries, Key: []byte(member), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []string{"M1", "M2", "M3"} {
		deliver("d-"+m, m, time.Time{})
	}
	deliver("d-expiring", "M4", time.Now().Add(150*time.Millisecond))
	deliver("d-bad", "BAD", time.Time{})
	deliver("d-up", "UP", time.Time{}) // behind the failing ones on the one partition

	results := map[string][]topics.DeliveryResult{}
	read := testkit.Client(t, addr, kgo.ConsumeTopics(topics.DeliveryResults), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	poll := func(want int, what string) {
		t.Helper()
		pctx, pcancel := context.WithTimeout(ctx, time.Minute)
		defer pcancel()
		n := func() (n int) {
			for _, rs := range results {
				n += len(rs)
			}
			return n
		}
		for n() < want {
			fs := read.PollFetches(pctx)
			if pctx.Err() != nil {
				t.Fatalf("waiting for %s: %d of %d results", what, n(), want)
			}
			fs.EachRecord(func(r *kgo.Record) {
				res, err := topics.DeliveryResultCodec{}.DecodeValue(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				results[res.DeliveryID] = append(results[res.DeliveryID], *res)
			})
		}
	}
	// During the outage: the working member, the permanent failure and
	// the expired offer have results; the others are waiting.
	poll(3, "the results the outage does not hold back")
	if r := results["d-up"]; len(r) != 1 || r[0].Status != topics.StatusSent {
		t.Errorf("the member on a working channel: %+v", r)
	}
	if r := results["d-bad"]; len(r) != 1 || r[0].Status != topics.StatusFailed {
		t.Errorf("permanent error: %+v", r)
	}
	if r := results["d-expiring"]; len(r) != 1 || r[0].Status != topics.StatusFailed || r[0].Attempts < 2 {
		t.Errorf("expired offer: %+v", r)
	} else {
		t.Logf("expired: %s", r[0].Error)
	}
	testkit.Eventually(t, time.Minute, "the waiting deliveries to be retried", func() bool {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		return ch.tries["d-M1"] >= 3 && ch.tries["d-M3"] >= 3
	})
	for _, id := range []string{"d-M1", "d-M2", "d-M3"} {
		if len(results[id]) != 0 {
			t.Errorf("%s has a result during the outage: %+v", id, results[id])
		}
	}

	ch.heal()
	poll(6, "every delivery after the outage")
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, id := range []string{"d-M1", "d-M2", "d-M3"} {
		r := results[id]
		if len(r) != 1 || r[0].Status != topics.StatusSent || r[0].Attempts < 2 {
			t.Errorf("%s after the outage: %+v", id, r)
		}
		if ch.sent[id] != 1 {
			t.Errorf("%s accepted %d times, want once", id, ch.sent[id])
		}
	}
}

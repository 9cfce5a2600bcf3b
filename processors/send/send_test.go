package send_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/send"
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
	ch := &outage{down: true, permanent: "BAD", sent: map[string]int{}, tries: map[string]int{}}
	deliver, results, _ := sendStage(t, ch, send.Config{RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, TickInterval: 20 * time.Millisecond})
	for _, m := range []string{"M1", "M2", "M3"} {
		deliver("d-"+m, m, time.Time{})
	}
	deliver("d-expiring", "M4", time.Now().Add(150*time.Millisecond))
	deliver("d-bad", "BAD", time.Time{})
	deliver("d-up", "UP", time.Time{}) // behind the failing ones on the one partition

	// During the outage: the working member, the permanent failure and
	// the expired offer have results; the others are waiting.
	res := results(3) // the results the outage does not hold back
	if r := res["d-up"]; len(r) != 1 || r[0].Status != topics.StatusSent {
		t.Errorf("the member on a working channel: %+v", r)
	}
	if r := res["d-bad"]; len(r) != 1 || r[0].Status != topics.StatusFailed {
		t.Errorf("permanent error: %+v", r)
	}
	if r := res["d-expiring"]; len(r) != 1 || r[0].Status != topics.StatusFailed || r[0].Attempts < 2 {
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
		if len(res[id]) != 0 {
			t.Errorf("%s has a result during the outage: %+v", id, res[id])
		}
	}

	ch.heal()
	res = results(6) // every delivery after the outage
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, id := range []string{"d-M1", "d-M2", "d-M3"} {
		r := res[id]
		if len(r) != 1 || r[0].Status != topics.StatusSent || r[0].Attempts < 2 {
			t.Errorf("%s after the outage: %+v", id, r)
		}
		if ch.sent[id] != 1 {
			t.Errorf("%s accepted %d times, want once", id, ch.sent[id])
		}
	}
}

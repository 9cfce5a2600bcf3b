// Package channeltest is the suite every channels.Adapter must pass, run
// against the adapter's local protocol server (connectors/sinks, or the
// embedded broker for the in-app inbox), in the manner of watermill's
// pubsub/tests: each adapter's test file builds a Harness and calls Run.
package channeltest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/topics"
)

// Fault is a failure a Harness makes its server produce.
type Fault int

const (
	// RateLimited: HTTP 429 (with Retry-After), SMTP 421, a Kafka quota error.
	RateLimited Fault = iota
	// Unavailable: HTTP 503, SMTP 451, a retriable Kafka error.
	Unavailable
	// Rejected: HTTP 400, SMTP 550, a non-retriable Kafka error.
	Rejected
	// LostResponse: the server accepts the message, then answers 500.
	// Only asked of harnesses with Dedupes.
	LostResponse
)

// Harness is one adapter wired to its local server.
type Harness struct {
	Adapter channels.Adapter
	// Delivery returns a valid delivery for the adapter with the given ID.
	Delivery func(id string) *topics.Delivery
	// Accepted is how many messages the server accepted.
	Accepted func() int
	// Requests is how many requests (sends) reached the server, accepted
	// or failed.
	Requests func() int
	// Check fails t unless accepted message i (0-based) is exactly what
	// delivery d must produce: headers, idempotency key, body.
	Check func(t *testing.T, i int, d *topics.Delivery)
	// Key is the idempotency key accepted message i carried ("" when the
	// protocol has none).
	Key func(i int) string
	// Fail makes the next n requests fail with f; retryAfter is sent
	// where the protocol can carry it.
	Fail func(n int, f Fault, retryAfter time.Duration)
	// RetryAfter: the protocol carries Retry-After, so the suite checks
	// that it was honoured.
	RetryAfter bool
	// Dedupes: the server drops a second message with the same key.
	Dedupes bool
}

// NewHarness builds a fresh adapter and server for one test.
type NewHarness func(t *testing.T) Harness

// recorder is a DelivererConfig.Sleep that records the waits and does
// not wait: the suite checks what the Deliverer asked for, not the clock.
type recorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recorder) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
	return ctx.Err()
}

func (r *recorder) all() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

func deliverer(t *testing.T, h Harness, maxAttempts int) (*channels.Deliverer, *recorder) {
	t.Helper()
	rec := &recorder{}
	dl, err := channels.NewDeliverer(h.Adapter, channels.DelivererConfig{
		MaxAttempts: maxAttempts, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond,
		RatePerSecond: -1, Sleep: rec.sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	return dl, rec
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Run runs the suite.
func Run(t *testing.T, newHarness NewHarness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Success", testSuccess},
		{"RateLimitedThenSuccess", testRateLimited},
		{"UnavailableThenSuccess", testUnavailable},
		{"RejectedIsNotRetried", testRejected},
		{"MalformedPayloadIsNotSent", testMalformed},
		{"WrongChannelIsNotSent", testWrongChannel},
		{"RetriesAreCapped", testCapped},
		{"SameDeliveryTwice", testSameDeliveryTwice},
		{"LostResponseIsRetriedOnce", testLostResponse},
		{"CancelledContext", testCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

func wantOutcome(t *testing.T, o channels.Outcome, status string, attempts int) {
	t.Helper()
	if o.Status != status || o.Attempts != attempts {
		t.Fatalf("outcome = %s after %d attempts (err %v), want %s after %d", o.Status, o.Attempts, o.Err, status, attempts)
	}
}

func wantCount(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %d, want %d", what, got, want)
	}
}

func testSuccess(t *testing.T, h Harness) {
	dl, rec := deliverer(t, h, 5)
	d := h.Delivery("dl-success")
	wantOutcome(t, dl.Deliver(ctx(t), d), topics.StatusSent, 1)
	wantCount(t, "accepted", h.Accepted(), 1)
	wantCount(t, "requests", h.Requests(), 1)
	wantCount(t, "waits", len(rec.all()), 0)
	h.Check(t, 0, d)
}

func testRateLimited(t *testing.T, h Harness) {
	dl, rec := deliverer(t, h, 5)
	const retryAfter = 2 * time.Second // recorded, never slept
	h.Fail(1, RateLimited, retryAfter)
	d := h.Delivery("dl-429")
	wantOutcome(t, dl.Deliver(ctx(t), d), topics.StatusSent, 2)
	wantCount(t, "accepted", h.Accepted(), 1)
	wantCount(t, "requests", h.Requests(), 2)
	waits := rec.all()
	wantCount(t, "waits", len(waits), 1)
	if h.RetryAfter && waits[0] < retryAfter {
		t.Errorf("waited %v before the retry, want at least the Retry-After %v", waits[0], retryAfter)
	}
	h.Check(t, 0, d)
}

func testUnavailable(t *testing.T, h Harness) {
	dl, rec := deliverer(t, h, 5)
	h.Fail(2, Unavailable, 0)
	d := h.Delivery("dl-503")
	wantOutcome(t, dl.Deliver(ctx(t), d), topics.StatusSent, 3)
	wantCount(t, "accepted", h.Accepted(), 1)
	wantCount(t, "requests", h.Requests(), 3)
	waits := rec.all()
	wantCount(t, "waits", len(waits), 2)
	for i, w := range waits {
		if w <= 0 || w > 10*time.Millisecond {
			t.Errorf("backoff %d = %v, want within (0, max_delay 10ms]", i, w)
		}
	}
	h.Check(t, 0, d)
}

func testRejected(t *testing.T, h Harness) {
	dl, rec := deliverer(t, h, 5)
	h.Fail(1, Rejected, 0)
	o := dl.Deliver(ctx(t), h.Delivery("dl-400"))
	wantOutcome(t, o, topics.StatusFailed, 1)
	var pe *channels.PermanentError
	if !errors.As(o.Err, &pe) {
		t.Fatalf("err = %v, want a *PermanentError", o.Err)
	}
	wantCount(t, "accepted", h.Accepted(), 0)
	wantCount(t, "requests", h.Requests(), 1)
	wantCount(t, "waits", len(rec.all()), 0)
}

func testMalformed(t *testing.T, h Harness) {
	dl, _ := deliverer(t, h, 5)
	for _, payload := range []string{`{"to":`, `{}`, `[]`, `null`} {
		d := h.Delivery("dl-malformed")
		d.Payload = []byte(payload)
		o := dl.Deliver(ctx(t), d)
		wantOutcome(t, o, topics.StatusFailed, 1)
		if !channels.IsPermanent(o.Err) {
			t.Errorf("payload %s: err = %v, want permanent", payload, o.Err)
		}
	}
	wantCount(t, "requests", h.Requests(), 0)
}

func testWrongChannel(t *testing.T, h Harness) {
	dl, _ := deliverer(t, h, 5)
	d := h.Delivery("dl-wrong")
	d.Channel = "CARRIER_PIGEON"
	o := dl.Deliver(ctx(t), d)
	wantOutcome(t, o, topics.StatusFailed, 1)
	if !channels.IsPermanent(o.Err) {
		t.Errorf("err = %v, want permanent", o.Err)
	}
	wantCount(t, "requests", h.Requests(), 0)
}

func testCapped(t *testing.T, h Harness) {
	dl, rec := deliverer(t, h, 3)
	h.Fail(10, Unavailable, 0)
	o := dl.Deliver(ctx(t), h.Delivery("dl-capped"))
	wantOutcome(t, o, topics.StatusFailed, 3)
	var re *channels.RetryableError
	if !errors.As(o.Err, &re) {
		t.Fatalf("err = %v, want a *RetryableError", o.Err)
	}
	wantCount(t, "requests", h.Requests(), 3)
	wantCount(t, "waits", len(rec.all()), 2)
	wantCount(t, "accepted", h.Accepted(), 0)
}

func testSameDeliveryTwice(t *testing.T, h Harness) {
	dl, _ := deliverer(t, h, 5)
	for range 2 {
		wantOutcome(t, dl.Deliver(ctx(t), h.Delivery("dl-twice")), topics.StatusSent, 1)
	}
	wantCount(t, "requests", h.Requests(), 2)
	if h.Dedupes {
		wantCount(t, "accepted", h.Accepted(), 1)
		return
	}
	wantCount(t, "accepted", h.Accepted(), 2)
	if k0, k1 := h.Key(0), h.Key(1); k0 != k1 {
		t.Errorf("the same delivery carried keys %q and %q", k0, k1)
	}
}

func testLostResponse(t *testing.T, h Harness) {
	if !h.Dedupes {
		t.Skip("the protocol has no idempotency key: a lost response means a duplicate")
	}
	dl, _ := deliverer(t, h, 5)
	h.Fail(1, LostResponse, 0)
	d := h.Delivery("dl-lost")
	wantOutcome(t, dl.Deliver(ctx(t), d), topics.StatusSent, 2)
	wantCount(t, "requests", h.Requests(), 2)
	wantCount(t, "accepted", h.Accepted(), 1)
	h.Check(t, 0, d)
}

func testCancelled(t *testing.T, h Harness) {
	h.Fail(1, Unavailable, 0)
	c, cancel := context.WithCancel(ctx(t))
	// the first attempt fails; the recorder's sleep then sees the
	// cancelled context, as a real timer would on shutdown
	rec := &recorder{}
	dl, err := channels.NewDeliverer(h.Adapter, channels.DelivererConfig{RatePerSecond: -1,
		Sleep: func(ctx context.Context, d time.Duration) error { cancel(); return rec.sleep(ctx, d) }})
	if err != nil {
		t.Fatal(err)
	}
	o := dl.Deliver(c, h.Delivery("dl-cancel"))
	wantOutcome(t, o, topics.StatusFailed, 1)
	if !errors.Is(o.Err, context.Canceled) {
		t.Errorf("err = %v, want it to wrap context.Canceled", o.Err)
	}
	wantCount(t, "accepted", h.Accepted(), 0)
}

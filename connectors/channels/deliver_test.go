package channels_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/topics"
)

// scripted is an Adapter that returns the given errors in turn, then nil.
type scripted struct {
	errs  []error
	calls int
}

func (s *scripted) Channel() string { return topics.ChannelLine }

func (s *scripted) Send(context.Context, *topics.Delivery) error {
	s.calls++
	if s.calls <= len(s.errs) {
		return s.errs[s.calls-1]
	}
	return nil
}

func TestDelivererRetryPolicy(t *testing.T) {
	retry := func(after time.Duration) error {
		return &channels.RetryableError{Code: 429, RetryAfter: after, Err: errors.New("slow down")}
	}
	tests := []struct {
		name         string
		errs         []error
		maxRetryWait time.Duration
		wantStatus   string
		wantAttempts int
		wantWaits    []time.Duration // exact for Retry-After waits, 0 = any backoff
	}{
		{"honours retry-after", []error{retry(3 * time.Second)}, 0, topics.StatusSent, 2, []time.Duration{3 * time.Second}},
		{"unknown errors are retried", []error{errors.New("connection reset")}, 0, topics.StatusSent, 2, []time.Duration{0}},
		{"permanent stops", []error{&channels.PermanentError{Code: 400, Err: errors.New("bad")}}, 0, topics.StatusFailed, 1, nil},
		{"retry-after beyond the cap fails", []error{retry(time.Hour)}, time.Minute, topics.StatusFailed, 1, nil},
		{"attempts capped", []error{retry(0), retry(0), retry(0), retry(0), retry(0), retry(0)}, 0, topics.StatusFailed, 5, []time.Duration{0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var waits []time.Duration
			a := &scripted{errs: tc.errs}
			reg := prometheus.NewRegistry()
			m, err := channels.NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			dl, err := channels.NewDeliverer(a, channels.DelivererConfig{BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond,
				MaxRetryAfter: tc.maxRetryWait, Metrics: m,
				Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }})
			if err != nil {
				t.Fatal(err)
			}
			o := dl.Deliver(context.Background(), &topics.Delivery{DeliveryID: "dl-1", Channel: topics.ChannelLine})
			if o.Status != tc.wantStatus || o.Attempts != tc.wantAttempts || a.calls != tc.wantAttempts {
				t.Fatalf("outcome %+v after %d calls, want %s after %d", o, a.calls, tc.wantStatus, tc.wantAttempts)
			}
			if len(waits) != len(tc.wantWaits) {
				t.Fatalf("waits %v, want %d", waits, len(tc.wantWaits))
			}
			for i, w := range tc.wantWaits {
				if w != 0 && waits[i] != w {
					t.Errorf("wait %d = %v, want %v", i, waits[i], w)
				}
				if w == 0 && (waits[i] <= 0 || waits[i] > 4*time.Millisecond) {
					t.Errorf("backoff %d = %v, want within (0, 4ms]", i, waits[i])
				}
			}
			if got := counter(t, reg, "rtm_send_outcomes_total", o.Status); got != 1 {
				t.Errorf("rtm_send_outcomes_total{status=%s} = %v, want 1", o.Status, got)
			}
			if got := counter(t, reg, "rtm_send_attempts_total", ""); got != float64(tc.wantAttempts) {
				t.Errorf("rtm_send_attempts_total = %v, want %d", got, tc.wantAttempts)
			}
		})
	}
}

// The rate limit applies between attempts: with a burst of one and a rate
// the test cannot reach, a context that ends first stops the delivery
// before its second attempt, without any clock in the assertion.
func TestDelivererRateLimit(t *testing.T) {
	a := &scripted{}
	dl, err := channels.NewDeliverer(a, channels.DelivererConfig{RatePerSecond: 0.001, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := &topics.Delivery{DeliveryID: "dl-1", Channel: topics.ChannelLine}
	if o := dl.Deliver(context.Background(), d); o.Status != topics.StatusSent {
		t.Fatalf("first delivery: %+v", o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	o := dl.Deliver(ctx, d)
	if o.Status != topics.StatusFailed || o.Attempts != 0 || a.calls != 1 {
		t.Fatalf("second delivery %+v after %d calls, want failed before any attempt", o, a.calls)
	}
}

func TestRouter(t *testing.T) {
	dl, err := channels.NewDeliverer(&scripted{}, channels.DelivererConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := channels.NewRouter(dl, dl); err == nil {
		t.Error("two deliverers for one channel accepted")
	}
	r, err := channels.NewRouter(dl)
	if err != nil {
		t.Fatal(err)
	}
	if o := r.Deliver(context.Background(), &topics.Delivery{Channel: topics.ChannelMail}); o.Status != topics.StatusFailed || !channels.IsPermanent(o.Err) {
		t.Errorf("unrouted channel: %+v", o)
	}
	o := r.Deliver(context.Background(), &topics.Delivery{DeliveryID: "dl-1", MemberID: "M1", Channel: topics.ChannelLine})
	res := o.Result(&topics.Delivery{DeliveryID: "dl-1", MemberID: "M1", Channel: topics.ChannelLine}, time.Unix(0, 0))
	if res.Status != topics.StatusSent || res.Attempts != 1 || res.Validate() != nil {
		t.Errorf("result %+v (%v)", res, res.Validate())
	}
}

func TestHTTPStatusClassification(t *testing.T) {
	tests := []struct {
		status    int
		permanent bool
	}{
		{400, true}, {401, true}, {403, true}, {404, true}, {413, true},
		{408, false}, {409, false}, {429, false}, {500, false}, {502, false}, {503, false},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			if got := channels.IsPermanent(channels.HTTPError(tc.status, http.Header{"Retry-After": {"7"}}, nil)); got != tc.permanent {
				t.Errorf("permanent = %v, want %v", got, tc.permanent)
			}
		})
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {"-1", 0}, {"soon", 0},
		{"Mon, 23 Nov 2026 10:00:30 GMT", 30 * time.Second},
		{"Mon, 23 Nov 2026 09:00:00 GMT", 0},
	}
	for _, tc := range tests {
		if got := channels.RetryAfter(tc.v, now); got != tc.want {
			t.Errorf("Retry-After %q = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// counter sums the samples of a counter family whose labels include
// value (any sample when value is empty).
func counter(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if value == "" || l.GetValue() == value {
					sum += m.GetCounter().GetValue()
					break
				}
			}
		}
	}
	return sum
}

package channels_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/channels/channeltest"
	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

// startSinks starts the local channel servers on free ports for one test.
func startSinks(t *testing.T) *sinks.Sinks {
	t.Helper()
	s, err := sinks.Start(testkit.Context(t), sinks.Config{SMTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		EMLDir: t.TempDir(), Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing sinks: %v", err)
		}
	})
	return s
}

func delivery(t *testing.T, id string, p channels.Payload) *topics.Delivery {
	t.Helper()
	raw, err := channels.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return &topics.Delivery{DeliveryID: id, OfferID: "of-1", MemberID: "M1", CampaignID: "C1", Channel: p.Channel(), Payload: raw}
}

func httpFail(e *sinks.Endpoint) func(int, channeltest.Fault, time.Duration) {
	return func(n int, f channeltest.Fault, retryAfter time.Duration) {
		switch f {
		case channeltest.RateLimited:
			e.FailNext(n, 429, retryAfter)
		case channeltest.Unavailable:
			e.FailNext(n, 503, retryAfter)
		case channeltest.Rejected:
			e.FailNext(n, 400, 0)
		case channeltest.LostResponse:
			e.LoseNextResponses(n, 500)
		}
	}
}

func checkHTTP(t *testing.T, e *sinks.Endpoint, i int, path string, wantHeader map[string]string, d *topics.Delivery) {
	t.Helper()
	got := e.Accepted()[i]
	if got.Path != path {
		t.Errorf("path = %s, want %s", got.Path, path)
	}
	for k, v := range wantHeader {
		if g := got.Header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	if !bytes.Equal(got.Body, d.Payload) {
		t.Errorf("body =\n%s\nwant exactly the payload\n%s", got.Body, d.Payload)
	}
}

var flexBubble = json.RawMessage(`{"type":"bubble","body":{"type":"box","layout":"vertical","contents":[{"type":"text","text":"Price drop: ¥1,980"}]}}`)

func TestLineAdapter(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) channeltest.Harness {
		s := startSinks(t)
		a, err := channels.NewLineAdapter(channels.LineConfig{BaseURL: s.HTTP.URL(), ChannelAccessToken: s.Config().LineToken}, testkit.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		e := s.HTTP.Line
		return channeltest.Harness{
			Adapter: a,
			Delivery: func(id string) *topics.Delivery {
				p := channels.NewLineFlex("U4af4980629", "Price drop on your favourite", flexBubble)
				p.Messages = append(p.Messages, channels.NewLineText("", "See it in the app").Messages...)
				return delivery(t, id, p)
			},
			Accepted: func() int { return len(e.Accepted()) },
			Requests: e.Requests,
			Check: func(t *testing.T, i int, d *topics.Delivery) {
				checkHTTP(t, e, i, "/v2/bot/message/push", map[string]string{
					"Content-Type":     "application/json",
					"X-Line-Retry-Key": channels.LineRetryKey(d.DeliveryID),
				}, d)
			},
			Key:        func(i int) string { return e.Accepted()[i].Header.Get("X-Line-Retry-Key") },
			Fail:       httpFail(e),
			RetryAfter: true,
			Dedupes:    true,
		}
	})
}

func TestFCMAdapter(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) channeltest.Harness {
		s := startSinks(t)
		cfg := s.Config()
		a, err := channels.NewFCMAdapter(channels.FCMConfig{BaseURL: s.HTTP.URL(), ProjectID: cfg.FCMProject, AccessToken: cfg.FCMToken}, testkit.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		e := s.HTTP.Push
		return channeltest.Harness{
			Adapter: a,
			Delivery: func(id string) *topics.Delivery {
				p := channels.NewPush("fcm-device-token-1", "Back in stock", "Your favourite is back", map[string]string{"delivery_id": id, "item_id": "I1"})
				p.Message.Android = &channels.FCMAndroid{Priority: "high", TTL: "3600s", CollapseKey: "I1"}
				return delivery(t, id, p)
			},
			Accepted: func() int { return len(e.Accepted()) },
			Requests: e.Requests,
			Check: func(t *testing.T, i int, d *topics.Delivery) {
				checkHTTP(t, e, i, channels.FCMSendPath(cfg.FCMProject), map[string]string{"Content-Type": "application/json"}, d)
			},
			Key:        func(int) string { return "" },
			Fail:       httpFail(e),
			RetryAfter: true,
		}
	})
}

func TestSMTPAdapter(t *testing.T) {
	channeltest.Run(t, func(t *testing.T) channeltest.Harness {
		s := startSinks(t)
		host, port, err := net.SplitHostPort(s.SMTP.Addr())
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		a, err := channels.NewSMTPAdapter(channels.SMTPConfig{Host: host, Port: p, TLS: channels.TLSNone, HELO: "rtm.test"}, testkit.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		payload := channels.NewMail("hanako@example.com", "RTM Shop <news@shop.example>", "値下げのお知らせ: Price drop",
			"Your favourite is now ¥1,980.", "<p>Your favourite is now <b>¥1,980</b>.</p>").
			WithUnsubscribe("unsubscribe@shop.example?subject=M1", "https://shop.example/u/tok123")
		return channeltest.Harness{
			Adapter:  a,
			Delivery: func(id string) *topics.Delivery { return delivery(t, id, payload) },
			Accepted: func() int { return len(s.SMTP.Messages()) },
			Requests: s.SMTP.Attempts,
			Check: func(t *testing.T, i int, d *topics.Delivery) {
				m := s.SMTP.Messages()[i]
				if m.ParseError != "" {
					t.Fatalf("sink could not parse the mail: %s\n%s", m.ParseError, m.Raw)
				}
				h := mail.Header(m.Header)
				want := map[string]string{
					"Message-Id":            "<" + d.DeliveryID + "@rtm>",
					"List-Unsubscribe":      "<mailto:unsubscribe@shop.example?subject=M1>, <https://shop.example/u/tok123>",
					"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
					"To":                    "<hanako@example.com>",
					"From":                  `"RTM Shop" <news@shop.example>`,
				}
				for k, v := range want {
					if g := h.Get(k); g != v {
						t.Errorf("header %s = %q, want %q", k, g, v)
					}
				}
				if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative;") {
					t.Errorf("Content-Type = %q, want multipart/alternative", ct)
				}
				if m.Subject != payload.Subject || m.MessageID != channels.MessageID(d.DeliveryID) {
					t.Errorf("subject %q, message-id %q", m.Subject, m.MessageID)
				}
				if strings.TrimRight(m.Text, "\r\n") != payload.Text || strings.TrimRight(m.HTML, "\r\n") != payload.HTML {
					t.Errorf("text %q, html %q", m.Text, m.HTML)
				}
				if m.MailFrom != "news@shop.example" || len(m.RcptTo) != 1 || m.RcptTo[0] != "hanako@example.com" {
					t.Errorf("envelope from %q to %q", m.MailFrom, m.RcptTo)
				}
			},
			Key: func(i int) string { return s.SMTP.Messages()[i].MessageID },
			Fail: func(n int, f channeltest.Fault, _ time.Duration) {
				code := map[channeltest.Fault]int{channeltest.RateLimited: 421, channeltest.Unavailable: 451, channeltest.Rejected: 550}[f]
				s.SMTP.FailNext(n, code)
			},
		}
	})
}

// faultyProducer produces through the real client, unless a fault is
// planned: the in-app harness's way to make Kafka fail on demand.
type faultyProducer struct {
	p        channels.Producer
	mu       sync.Mutex
	requests int
	faults   []channeltest.Fault
}

func (f *faultyProducer) ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	f.mu.Lock()
	f.requests++
	var fault channeltest.Fault = -1
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	f.mu.Unlock()
	fail := func(err error) kgo.ProduceResults {
		var out kgo.ProduceResults
		for _, r := range rs {
			out = append(out, kgo.ProduceResult{Record: r, Err: err})
		}
		return out
	}
	switch fault {
	case channeltest.RateLimited:
		return fail(kerr.ThrottlingQuotaExceeded)
	case channeltest.Unavailable:
		return fail(kerr.NotEnoughReplicas)
	case channeltest.Rejected:
		return fail(kerr.MessageTooLarge)
	case channeltest.LostResponse:
		if err := f.p.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			return fail(err)
		}
		return fail(kerr.RequestTimedOut)
	}
	return f.p.ProduceSync(ctx, rs...)
}

func TestInAppAdapter(t *testing.T) {
	const partitions = 3
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	channeltest.Run(t, func(t *testing.T) channeltest.Harness {
		b := testkit.Broker(t, "")
		testkit.CreateTopic(t, b.Addr(), channels.InAppTopic, partitions, nil)
		cl, err := channels.NewInAppProducer(kafka.Config{Brokers: []string{b.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		fp := &faultyProducer{p: cl}
		a, err := channels.NewInAppAdapter(channels.InAppConfig{Now: func() time.Time { return at }}, fp)
		if err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(cl)
		accepted := func() int {
			ends, err := adm.ListEndOffsets(testkit.Context(t), channels.InAppTopic)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			ends.Each(func(o kadm.ListedOffset) { n += int(o.Offset) })
			return n
		}
		records := func(t *testing.T) []*kgo.Record {
			want := accepted()
			c := testkit.Client(t, b.Addr(), kgo.ConsumeTopics(channels.InAppTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			var out []*kgo.Record
			ctx, cancel := context.WithTimeout(testkit.Context(t), 30*time.Second)
			defer cancel()
			for len(out) < want {
				fs := c.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("read %d of %d in-app records", len(out), want)
				}
				out = append(out, fs.Records()...)
			}
			return out
		}
		return channeltest.Harness{
			Adapter: a,
			Delivery: func(id string) *topics.Delivery {
				return delivery(t, id, channels.NewInApp("M1", "Price drop", "Your favourite is now ¥1,980", "https://shop.example/i/I1"))
			},
			Accepted: accepted,
			Requests: func() int { fp.mu.Lock(); defer fp.mu.Unlock(); return fp.requests },
			Check: func(t *testing.T, i int, d *topics.Delivery) {
				r := records(t)[i]
				if string(r.Key) != "M1" || r.Partition != topics.Partition([]byte("M1"), partitions) {
					t.Errorf("record key %q on partition %d, want M1 on its partition %d", r.Key, r.Partition, topics.Partition([]byte("M1"), partitions))
				}
				want := `{"delivery_id":"` + d.DeliveryID + `","title":"Price drop","body":"Your favourite is now ¥1,980","url":"https://shop.example/i/I1","at":"2026-11-23T10:00:00Z"}`
				if string(r.Value) != want {
					t.Errorf("value =\n%s\nwant\n%s", r.Value, want)
				}
			},
			Key: func(i int) string {
				var m topics.InAppMessage
				if err := json.Unmarshal(records(t)[i].Value, &m); err != nil {
					t.Fatal(err)
				}
				return m.DeliveryID
			},
			Fail: func(n int, f channeltest.Fault, _ time.Duration) {
				fp.mu.Lock()
				defer fp.mu.Unlock()
				for range n {
					fp.faults = append(fp.faults, f)
				}
			},
		}
	})
}

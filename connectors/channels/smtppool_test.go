package channels_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

func smtpAdapter(t *testing.T, s *sinks.Sinks, pool int) *channels.SMTPAdapter {
	t.Helper()
	host, port, err := net.SplitHostPort(s.SMTP.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	a, err := channels.NewSMTPAdapter(channels.SMTPConfig{Host: host, Port: p, TLS: channels.TLSNone, HELO: "rtm.test", PoolSize: pool}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func mailDelivery(t *testing.T, i int) *topics.Delivery {
	return delivery(t, fmt.Sprintf("dl-%d", i), channels.NewMail(fmt.Sprintf("m%d@example.com", i), "shop@shop.example", "hello", "text", ""))
}

// TestSMTPReusesSessions: the sink sees fewer sessions than messages,
// sent one after another or concurrently, and never more sessions than
// the pool size.
func TestSMTPReusesSessions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pool       int
		concurrent int
		messages   int
	}{
		{"sequential", 4, 1, 20},
		{"concurrent", 3, 8, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSinks(t)
			a := smtpAdapter(t, s, tc.pool)
			ctx := testkit.Context(t)
			var wg sync.WaitGroup
			errs := make(chan error, tc.messages)
			next := make(chan int)
			for range tc.concurrent {
				wg.Go(func() {
					for i := range next {
						errs <- a.Send(ctx, mailDelivery(t, i))
					}
				})
			}
			for i := range tc.messages {
				next <- i
			}
			close(next)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := len(s.SMTP.Messages()); got != tc.messages {
				t.Fatalf("sink has %d messages, want %d", got, tc.messages)
			}
			sessions := s.SMTP.Sessions()
			t.Logf("%d messages over %d sessions", tc.messages, sessions)
			if sessions >= tc.messages || sessions > tc.pool {
				t.Errorf("sink saw %d sessions for %d messages; want at most the pool size %d", sessions, tc.messages, tc.pool)
			}
		})
	}
}

// TestSMTPDiscardsBrokenSession: when the server has dropped a pooled
// session, the next message is sent on a fresh one, once, and the send
// succeeds.
func TestSMTPDiscardsBrokenSession(t *testing.T) {
	s := startSinks(t)
	a := smtpAdapter(t, s, 2)
	ctx := testkit.Context(t)
	if err := a.Send(ctx, mailDelivery(t, 1)); err != nil {
		t.Fatal(err)
	}
	s.SMTP.DropSessions()
	if err := a.Send(ctx, mailDelivery(t, 2)); err != nil {
		t.Fatalf("send after the server dropped the pooled session: %v", err)
	}
	if got := s.SMTP.Sessions(); got != 2 {
		t.Errorf("sessions = %d, want 2 (the dropped one and a fresh one)", got)
	}
	if got, att := len(s.SMTP.Messages()), s.SMTP.Attempts(); got != 2 || att != 2 {
		t.Errorf("sink has %d messages from %d transmissions, want 2 and 2 (no duplicate)", got, att)
	}
	// the fresh session is pooled in turn
	if err := a.Send(ctx, mailDelivery(t, 3)); err != nil {
		t.Fatal(err)
	}
	if got := s.SMTP.Sessions(); got != 2 {
		t.Errorf("sessions = %d after a third message, want 2", got)
	}
}

// TestSMTPSendHonoursContext: a send whose context has ended opens no
// session.
func TestSMTPSendHonoursContext(t *testing.T) {
	s := startSinks(t)
	a := smtpAdapter(t, s, 1)
	ctx, cancel := context.WithCancel(testkit.Context(t))
	cancel()
	if err := a.Send(ctx, mailDelivery(t, 1)); err == nil {
		t.Fatal("send with a cancelled context succeeded")
	}
	if n := s.SMTP.Sessions(); n != 0 {
		t.Errorf("a cancelled send opened %d sessions", n)
	}
}

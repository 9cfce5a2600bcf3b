package channels_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/internal/testkit"
)

// TestHTTPAdapterKeepsItsConnections: after a burst of concurrent sends,
// the next burst of the same size reuses every connection. Go's default
// transport keeps 2 idle connections per host, so there the second burst
// opened concurrency-2 new connections (and TLS handshakes in production).
// The server holds each request until the whole burst is in flight, so
// every burst needs exactly `concurrency` connections.
func TestHTTPAdapterKeepsItsConnections(t *testing.T) {
	const concurrency = 8
	var opened atomic.Int64
	var barrier sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		barrier.Done()
		barrier.Wait()
		w.Write([]byte("{}"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	a, err := channels.NewLineAdapter(channels.LineConfig{BaseURL: srv.URL, ChannelAccessToken: "t", MaxConnections: concurrency}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	push := channels.NewLineText("U1", "hello")
	burst := func(round int) {
		barrier.Add(concurrency)
		var wg sync.WaitGroup
		for i := range concurrency {
			wg.Go(func() {
				if err := a.Send(testkit.Context(t), delivery(t, fmt.Sprintf("dl-%d-%d", round, i), push)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	burst(1)
	first := opened.Load()
	burst(2)
	if got := opened.Load(); got != first || first != concurrency {
		t.Errorf("connections opened: %d for the first burst, %d after the second; want %d and no more", first, got, concurrency)
	}
}

package main

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
)

// flakyProxy forwards to the LINE sink, or refuses connections, or
// answers 503, as the harness says.
type flakyProxy struct {
	addr string
	// unavailable counts requests answered 503.
	unavailable atomic.Int32
	rp          *httputil.ReverseProxy
	mode        atomic.Int32
	mu          sync.Mutex
	srv         *http.Server
}

const (
	modeUp int32 = iota
	modeRefuse
	mode503
)

func newFlakyProxy(addr, target string) *flakyProxy {
	u, _ := url.Parse(target)
	f := &flakyProxy{addr: addr, rp: httputil.NewSingleHostReverseProxy(u)}
	f.listen()
	return f
}

func (f *flakyProxy) listen() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.mode.Load() == mode503 {
			f.unavailable.Add(1)
			http.Error(w, `{"message":"service unavailable (chaos)"}`, http.StatusServiceUnavailable)
			return
		}
		f.rp.ServeHTTP(w, r)
	})}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go srv.Serve(ln)
}

func (f *flakyProxy) setMode(m int32) {
	old := f.mode.Swap(m)
	switch {
	case m == modeRefuse && old != modeRefuse:
		f.mu.Lock()
		f.srv.Close() // connection refused from now on
		f.mu.Unlock()
	case m != modeRefuse && old == modeRefuse:
		f.listen()
	}
}

func (f *flakyProxy) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.srv.Close()
}

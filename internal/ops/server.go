package ops

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /healthz, /readyz, /metrics and any extra routes.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen starts serving on addr. extra maps ServeMux patterns (e.g.
// "GET /v1/inbox/{member}") to handlers. A taken address is an error: an
// operator's probes must reach this process, not another.
func Listen(addr string, h *Health, g prometheus.Gatherer, extra map[string]http.Handler) (*Server, error) {
	mux := http.NewServeMux()
	for pattern, hd := range extra {
		mux.Handle(pattern, hd)
	}
	h.Routes(mux)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serving /healthz, /readyz and /metrics: %w", err)
	}
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go s.srv.Serve(ln)
	return s, nil
}

// Addr is the address served.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops serving, letting requests in flight finish for up to 5 s.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

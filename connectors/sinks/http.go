package sinks

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// HTTPSink serves the LINE push endpoint, the FCM send endpoint and the
// listings:
//
//	POST /v2/bot/message/push                 LINE Messaging API push
//	POST /v1/projects/{project}/messages:send FCM HTTP v1 send
//	GET  /sinks/line, /sinks/push              accepted requests, JSON
//	GET  /sinks/mail                           mail kept by the SMTP sink, JSON
type HTTPSink struct {
	// Line and Push are the endpoints' accepted requests and fault plans.
	Line *Endpoint
	Push *Endpoint

	lineToken, fcmToken, fcmProject string
	log                             *slog.Logger
	srv                             *http.Server
	ln                              net.Listener
}

func newHTTPSink(cfg Config, mail *SMTPSink) (*HTTPSink, error) {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("http sink: listening on %s: %w", cfg.HTTPAddr, err)
	}
	h := &HTTPSink{Line: newEndpoint(cfg.Keep, cfg.Latency), Push: newEndpoint(cfg.Keep, cfg.Latency), lineToken: cfg.LineToken,
		fcmToken: cfg.FCMToken, fcmProject: cfg.FCMProject, log: cfg.Logger, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/bot/message/push", h.linePush)
	mux.HandleFunc("POST /v1/projects/{project}/messages:send", h.fcmSend)
	mux.HandleFunc("GET /sinks/line", h.Line.list)
	mux.HandleFunc("GET /sinks/push", h.Push.list)
	mux.HandleFunc("GET /sinks/mail", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, nil, mail.Messages())
	})
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	return h, nil
}

// Addr is the address the sink listens on (host:port).
func (h *HTTPSink) Addr() string { return h.ln.Addr().String() }

// URL is the base URL to configure the LINE and FCM adapters with.
func (h *HTTPSink) URL() string { return "http://" + h.Addr() }

func (h *HTTPSink) serve() error {
	if err := h.srv.Serve(h.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (h *HTTPSink) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}

// newID returns a random UUID-formatted request ID, as LINE's are.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

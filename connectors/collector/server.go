package collector

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/topics"
)

// Server is the collector. Build it with New; serve Handler yourself or call
// Run.
type Server struct {
	cfg     Config
	prod    Producer
	log     *slog.Logger
	limiter *bucket
	m       *metrics
}

// New validates cfg and returns a collector producing through p.
func New(cfg Config, p Producer, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	if p == nil {
		return nil, errors.New("collector config: no producer")
	}
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, prod: p, log: log.With("component", "collector"), m: m}
	if cfg.RatePerSecond > 0 {
		s.limiter = newBucket(cfg.RatePerSecond, cfg.Burst, cfg.Now())
	}
	return s, nil
}

// Handler routes POST /v1/events, GET /t/o/{token} and GET /t/c/{token}.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", s.events)
	mux.HandleFunc("GET /t/o/{token}", s.open)
	mux.HandleFunc("GET /t/c/{token}", s.click)
	return mux
}

// Run serves on cfg.Addr until ctx is done, then shuts down gracefully
// (in-flight requests finish; their events are produced or refused).
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("collector listening on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on an existing listener (tests: port 0).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: s.cfg.ProduceTimeout + 30*time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("collector listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("collector serving: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProduceTimeout+5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("collector shutdown: %w", err)
	}
	return nil
}

// Response is the body of every POST /v1/events answer.
type Response struct {
	Accepted int      `json:"accepted"`
	Rejected []Reject `json:"rejected"`
	Error    string   `json:"error,omitempty"`
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.APIKeys) > 0 && !s.authorized(r.Header.Get("X-API-Key")) {
		s.reply(w, http.StatusUnauthorized, Response{Error: "missing or unknown X-API-Key"})
		return
	}
	if s.limiter != nil && !s.limiter.allow(s.cfg.Now()) {
		w.Header().Set("Retry-After", s.retryAfter())
		s.reply(w, http.StatusTooManyRequests, Response{Error: "rate limit exceeded; retry later"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.reply(w, http.StatusRequestEntityTooLarge,
				Response{Error: fmt.Sprintf("body exceeds %d bytes; split the batch", s.cfg.MaxBodyBytes)})
			return
		}
		s.reply(w, http.StatusBadRequest, Response{Error: "reading body: " + err.Error()})
		return
	}
	if n := Count(body); n > s.cfg.MaxEvents {
		s.reply(w, http.StatusRequestEntityTooLarge,
			Response{Error: fmt.Sprintf("%d events exceed the limit of %d per request; split the batch", n, s.cfg.MaxEvents)})
		return
	}
	events, rejects, err := ParseEvents(body, s.cfg.Now())
	if rejects == nil {
		rejects = []Reject{}
	}
	s.m.rejected.Add(float64(len(rejects)))
	if err != nil {
		s.reply(w, http.StatusBadRequest, Response{Rejected: rejects, Error: err.Error()})
		return
	}
	if len(events) == 0 {
		s.reply(w, http.StatusBadRequest, Response{Rejected: rejects, Error: "no valid events"})
		return
	}
	if err := s.produce(r.Context(), events...); err != nil {
		s.log.Warn("kafka unavailable; refusing events", "events", len(events), "err", err)
		w.Header().Set("Retry-After", s.retryAfter())
		s.reply(w, http.StatusServiceUnavailable, Response{Rejected: rejects,
			Error: "event store unavailable; nothing was accepted, retry the whole request later"})
		return
	}
	s.m.accepted.Add(float64(len(events)))
	s.reply(w, http.StatusAccepted, Response{Accepted: len(events), Rejected: rejects})
}

// produce writes events and waits for Kafka's acknowledgement of all of
// them, at most ProduceTimeout.
func (s *Server) produce(ctx context.Context, events ...topics.BehaviorEvent) error {
	recs := make([]*kgo.Record, len(events))
	for i := range events {
		v, err := topics.BehaviorEventCodec{}.Encode(&events[i])
		if err != nil {
			return fmt.Errorf("encoding event %s: %w", events[i].EventID, err)
		}
		recs[i] = &kgo.Record{Topic: s.cfg.Topic, Key: []byte(events[i].MemberID), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ProduceTimeout)
	defer cancel()
	if err := s.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.m.produceErrors.Inc()
		return fmt.Errorf("producing %d events: %w", len(recs), err)
	}
	return nil
}

// pixel is a transparent 1x1 GIF.
var pixel = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// open serves the pixel. A Kafka failure still serves the pixel (mail
// clients never retry) but is logged and counted as a lost hit.
func (s *Server) open(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	t, err := tracking.Verify(s.cfg.TrackingSecret, token, tracking.KindOpen)
	if err != nil {
		s.m.badTokens.Inc()
		http.NotFound(w, r)
		return
	}
	s.track(r.Context(), token, t, "open")
	w.Header().Set("Content-Type", "image/gif")
	w.Header().Set("Cache-Control", "no-store, max-age=0")
	w.Write(pixel)
}

// click records the click and redirects to the signed URL only. Like the
// pixel, a Kafka failure does not break the member's link.
func (s *Server) click(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	t, err := tracking.Verify(s.cfg.TrackingSecret, token, tracking.KindClick)
	if err != nil {
		s.m.badTokens.Inc()
		http.NotFound(w, r)
		return
	}
	s.track(r.Context(), token, t, "click")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, t.URL, http.StatusFound)
}

func (s *Server) track(ctx context.Context, token string, t tracking.Tracking, typ string) {
	attrs := map[string]string{}
	if t.CampaignID != "" {
		attrs["campaign_id"] = t.CampaignID
	}
	if t.URL != "" {
		attrs["url"] = t.URL
	}
	ev := topics.BehaviorEvent{EventID: tracking.EventID(token), MemberID: t.MemberID, Type: typ,
		DeliveryID: t.DeliveryID, At: s.cfg.Now().UTC(), Attrs: attrs}
	if err := s.produce(ctx, ev); err != nil {
		s.m.lostHits.WithLabelValues(typ).Inc()
		s.log.Error("tracking hit not recorded", "type", typ, "delivery_id", t.DeliveryID, "err", err)
		return
	}
	s.m.accepted.Inc()
}

func (s *Server) authorized(key string) bool {
	ok := false
	for _, k := range s.cfg.APIKeys {
		// Compare every key in constant time, so timing reveals nothing.
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			ok = true
		}
	}
	return ok
}

func (s *Server) retryAfter() string {
	return strconv.Itoa(max(1, int(s.cfg.RetryAfter.Round(time.Second)/time.Second)))
}

func (s *Server) reply(w http.ResponseWriter, code int, resp Response) {
	s.m.responses.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(resp); err != nil {
		s.log.Debug("writing response", "err", err)
	}
}

// metrics are the collector's Prometheus series, registered on
// Config.Registerer (none when nil), never on the global registry.
type metrics struct {
	accepted, rejected, produceErrors, badTokens prometheus.Counter
	lostHits                                     *prometheus.CounterVec
	responses                                    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		accepted:      c("rtm_collector_events_accepted_total", "Events acknowledged by Kafka (including tracking hits)."),
		rejected:      c("rtm_collector_events_rejected_total", "Events refused as invalid."),
		produceErrors: c("rtm_collector_produce_errors_total", "Requests answered 503 or hits lost because Kafka did not acknowledge."),
		badTokens:     c("rtm_collector_bad_tokens_total", "Tracking requests with a forged, altered or wrong-kind token."),
		lostHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_collector_tracking_lost_total",
			Help: "Opens and clicks served but not recorded because Kafka was unavailable."}, []string{"type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_collector_responses_total",
			Help: "POST /v1/events answers by status code."}, []string{"code"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.accepted, m.rejected, m.produceErrors, m.badTokens, m.lostHits, m.responses} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("registering collector metrics: %w", err)
			}
		}
	}
	return m, nil
}

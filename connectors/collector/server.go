package collector

import (
	"context"
	"crypto/sha256"
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
	"golang.org/x/time/rate"

	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/topics"
)

// Server is the collector. Build it with New; serve Handler yourself or call
// Run.
type Server struct {
	cfg  Config
	prod Producer
	log  *slog.Logger
	// keys are the SHA-256 hashes of the API keys (the keys themselves
	// are not kept); keyLimits[i] is the event budget of keys[i] (nil: no
	// limit).
	keys      [][sha256.Size]byte
	keyLimits []*rate.Limiter
	// clients limits tracking hits per client address (nil: no limit).
	clients *clientLimits
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
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
		if cfg.RatePerSecond > 0 {
			s.keyLimits = append(s.keyLimits, rate.NewLimiter(rate.Limit(cfg.RatePerSecond), cfg.Burst))
		}
	}
	s.cfg.APIKeys = nil // only the hashes are kept
	if cfg.TrackingRate > 0 {
		s.clients = newClientLimits(cfg.TrackingRate, cfg.TrackingBurst, maxClients)
	}
	return s, nil
}

// Handler routes POST /v1/events, GET /t/o/{token}, GET /t/c/{token} and
// GET and POST /t/u/{token}.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", s.events)
	mux.HandleFunc("GET /t/o/{token}", s.limited(s.open))
	mux.HandleFunc("GET /t/c/{token}", s.limited(s.click))
	mux.HandleFunc("GET /t/u/{token}", s.limited(s.unsubscribePage))
	mux.HandleFunc("POST /t/u/{token}", s.limited(s.unsubscribe))
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
	key, ok := s.apiKey(r.Header.Get("X-API-Key"))
	if !ok {
		s.reply(w, http.StatusUnauthorized, Response{Error: "missing or unknown X-API-Key"})
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
	} else if s.keyLimits != nil && !s.keyLimits[key].AllowN(s.cfg.Now(), max(1, n)) {
		// Counted in events: one request of 1,000 costs what 1,000 of one do.
		w.Header().Set("Retry-After", s.retryAfter())
		s.reply(w, http.StatusTooManyRequests, Response{Error: "rate limit exceeded; retry later"})
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
	t, ok := s.token(w, r, token, tracking.KindOpen)
	if !ok {
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
	t, ok := s.token(w, r, token, tracking.KindClick)
	if !ok {
		return
	}
	s.track(r.Context(), token, t, "click")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, t.URL, http.StatusFound)
}

// unsubscribePage answers a GET of a one-click unsubscribe link (a person
// who opened the List-Unsubscribe URL in a browser, or a link scanner)
// with a form that POSTs the one-click body. A GET itself changes nothing:
// RFC 8058 requires that, since scanners fetch every link in a mail.
func (s *Server) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.token(w, r, r.PathValue("token"), tracking.KindUnsubscribe); !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, `<!doctype html><html><body><form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">`+
		`<button type="submit">Unsubscribe</button></form></body></html>`)
}

// unsubscribe is the RFC 8058 one-click endpoint: a POST with the body
// List-Unsubscribe=One-Click turns the channel the message came on off for
// the member the token was sealed for. Unlike an open or a click, a lost
// unsubscribe would keep mailing someone who asked us to stop, so when
// Kafka does not acknowledge it the answer is 503, never success.
func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	t, ok := s.token(w, r, token, tracking.KindUnsubscribe)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("List-Unsubscribe") != "One-Click" {
		http.Error(w, "one-click unsubscribe needs the body List-Unsubscribe=One-Click (RFC 8058)", http.StatusBadRequest)
		return
	}
	channel := t.Channel
	if channel == "" {
		channel = "all"
	}
	ev := topics.BehaviorEvent{EventID: tracking.EventID(token), MemberID: t.MemberID, Type: "unsubscribe",
		DeliveryID: t.DeliveryID, At: s.cfg.Now().UTC(), Attrs: s.attrs(t, channel)}
	if err := s.produce(r.Context(), ev); err != nil {
		s.log.Error("unsubscribe not recorded; answered 503", "delivery_id", t.DeliveryID, "err", err)
		w.Header().Set("Retry-After", s.retryAfter())
		http.Error(w, "unsubscribe could not be recorded; please try again", http.StatusServiceUnavailable)
		return
	}
	s.m.accepted.Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "You are unsubscribed.")
}

// token opens the request's token of kind, answering 404 (and counting a
// bad token) when it does not open: forged, altered, expired, of a retired
// key or of another kind all look the same from outside.
func (s *Server) token(w http.ResponseWriter, r *http.Request, token, kind string) (tracking.Tracking, bool) {
	t, err := s.cfg.Keys.Open(token, kind, s.cfg.Now())
	if err != nil {
		s.m.badTokens.Inc()
		http.NotFound(w, r)
		return t, false
	}
	return t, true
}

// limited applies the per-client-address limit to a tracking route.
func (s *Server) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.clients != nil && !s.clients.allow(clientAddr(r), s.cfg.Now()) {
			s.m.limitedHits.Inc()
			w.Header().Set("Retry-After", s.retryAfter())
			http.Error(w, "too many requests; retry later", http.StatusTooManyRequests)
			return
		}
		h(w, r)
	}
}

// clientAddr is the request's peer address without its port. Behind a load
// balancer that is the balancer's (see connectors/README.md).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) attrs(t tracking.Tracking, channel string) map[string]string {
	attrs := map[string]string{}
	for k, v := range map[string]string{"campaign_id": t.CampaignID, "url": t.URL, "channel": channel} {
		if v != "" {
			attrs[k] = v
		}
	}
	return attrs
}

func (s *Server) track(ctx context.Context, token string, t tracking.Tracking, typ string) {
	ev := topics.BehaviorEvent{EventID: tracking.EventID(token), MemberID: t.MemberID, Type: typ,
		DeliveryID: t.DeliveryID, At: s.cfg.Now().UTC(), Attrs: s.attrs(t, t.Channel)}
	if err := s.produce(ctx, ev); err != nil {
		s.m.lostHits.WithLabelValues(typ).Inc()
		s.log.Error("tracking hit not recorded", "type", typ, "delivery_id", t.DeliveryID, "err", err)
		return
	}
	s.m.accepted.Inc()
}

// apiKey returns the index of the API key presented. The presented key is
// hashed and compared with every stored hash in constant time, so neither
// the keys' contents nor which one matched shows in the timing.
func (s *Server) apiKey(presented string) (int, bool) {
	sum := sha256.Sum256([]byte(presented))
	idx := -1
	for i := range s.keys {
		if subtle.ConstantTimeCompare(s.keys[i][:], sum[:]) == 1 {
			idx = i
		}
	}
	return idx, idx >= 0 && presented != ""
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
	accepted, rejected, produceErrors, badTokens, limitedHits prometheus.Counter
	lostHits                                                  *prometheus.CounterVec
	responses                                                 *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		accepted:      c("rtm_collector_events_accepted_total", "Events acknowledged by Kafka (including tracking hits)."),
		rejected:      c("rtm_collector_events_rejected_total", "Events refused as invalid."),
		produceErrors: c("rtm_collector_produce_errors_total", "Requests answered 503 or hits lost because Kafka did not acknowledge."),
		badTokens:     c("rtm_collector_bad_tokens_total", "Tracking requests with a forged, altered, expired, retired-key or wrong-kind token."),
		limitedHits:   c("rtm_collector_tracking_limited_total", "Tracking requests answered 429 by the per-client-address limit."),
		lostHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_collector_tracking_lost_total",
			Help: "Opens and clicks served but not recorded because Kafka was unavailable."}, []string{"type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rtm_collector_responses_total",
			Help: "POST /v1/events answers by status code."}, []string{"code"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.accepted, m.rejected, m.produceErrors, m.badTokens, m.limitedHits, m.lostHits, m.responses} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("registering collector metrics: %w", err)
			}
		}
	}
	return m, nil
}

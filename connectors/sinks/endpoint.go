package sinks

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Request is one request an HTTP endpoint accepted.
type Request struct {
	// ID is the request ID the sink answered with (LINE's
	// X-Line-Request-Id, the number in FCM's message name).
	ID string    `json:"request_id"`
	At time.Time `json:"at"`
	// Path is the request path.
	Path string `json:"path"`
	// Header holds the request headers, Authorization removed (it was
	// checked; there is no need to keep a credential).
	Header http.Header `json:"header"`
	// Body is the request body as received.
	Body json.RawMessage `json:"body"`
}

// fault is one planned failure.
type fault struct {
	status     int
	retryAfter time.Duration
	// afterAccept: keep the request, then answer with status, as when the
	// channel accepted but its response was lost on the way.
	afterAccept bool
}

// Endpoint is the state of one HTTP endpoint: accepted requests, the
// request count and planned faults. Safe for concurrent use.
type Endpoint struct {
	mu       sync.Mutex
	accepted *ring[Request]
	requests int
	faults   []fault
	// keys maps LINE retry keys of kept requests to their request IDs.
	keys map[string]string
	// latency delays every answer (Config.Latency).
	latency time.Duration
}

func newEndpoint(keep int, latency time.Duration) *Endpoint {
	return &Endpoint{accepted: newRing[Request](keep), keys: make(map[string]string), latency: latency}
}

// Accepted returns the kept accepted requests, oldest first.
func (e *Endpoint) Accepted() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accepted.all()
}

// Requests is how many requests reached the endpoint, whatever the answer.
func (e *Endpoint) Requests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests
}

// FailNext makes the next n requests fail with status, and a Retry-After
// header (whole seconds, rounded up) when retryAfter > 0, before they are
// looked at.
func (e *Endpoint) FailNext(n, status int, retryAfter time.Duration) {
	e.plan(n, fault{status: status, retryAfter: retryAfter})
}

// LoseNextResponses makes the next n valid requests be accepted and kept,
// but answered with status: the channel took the message and the response
// was lost, which is what idempotency keys are for.
func (e *Endpoint) LoseNextResponses(n, status int) {
	e.plan(n, fault{status: status, afterAccept: true})
}

func (e *Endpoint) plan(n int, f fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for range n {
		e.faults = append(e.faults, f)
	}
}

// begin counts a request and takes its planned fault, if any, after the
// endpoint's latency (or until the client gives up).
func (e *Endpoint) begin(r *http.Request) (fault, bool) {
	if e.latency > 0 {
		t := time.NewTimer(e.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if len(e.faults) == 0 {
		return fault{}, false
	}
	f := e.faults[0]
	e.faults = e.faults[1:]
	return f, true
}

// accept keeps r. With a retry key, it returns the request ID that already
// holds the key, if one does, and keeps nothing.
func (e *Endpoint) accept(r Request, retryKey string) (acceptedID string, dup bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if retryKey != "" {
		if id, ok := e.keys[retryKey]; ok {
			return id, true
		}
		e.keys[retryKey] = r.ID
	}
	if old, ok := e.accepted.push(r); ok {
		if k := old.Header.Get("X-Line-Retry-Key"); k != "" {
			delete(e.keys, k)
		}
	}
	return "", false
}

func (e *Endpoint) list(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, nil, e.Accepted())
}

// writeFault answers a planned fault with body.
func writeFault(w http.ResponseWriter, f fault, body any) {
	h := http.Header{}
	if f.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((f.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, f.status, h, body)
}

func writeJSON(w http.ResponseWriter, status int, h http.Header, v any) {
	for k, vs := range h {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing to do
}

// stored copies what the sink keeps of an accepted request.
func stored(id string, r *http.Request, body []byte) Request {
	h := r.Header.Clone()
	h.Del("Authorization")
	return Request{ID: id, At: time.Now().UTC(), Path: r.URL.Path, Header: h, Body: append(json.RawMessage(nil), body...)}
}

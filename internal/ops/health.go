// Package ops is what every long-running rtm process shows its operator:
// /healthz (liveness: the process is not wedged), /readyz (readiness: every
// component has recovered and runs, with each one's state as JSON) and
// /metrics. Components — stages, the rules watcher, the bridge — report
// their state to a Health; the HTTP handlers only read it.
package ops

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// State is a component's lifecycle state.
type State string

// The states, in the order a component normally passes them.
const (
	// Starting: being built, not yet consuming.
	Starting State = "starting"
	// Recovering: restoring its tables from their changelogs.
	Recovering State = "recovering"
	// Running: recovered and processing; the only ready state.
	Running State = "running"
	// Restarting: stopped with an error, waiting for its next attempt.
	Restarting State = "restarting"
	// Failed: gave up; the process is about to exit.
	Failed State = "failed"
	// Stopping: shutting down.
	Stopping State = "stopping"
)

// Status is one component's state as /readyz shows it.
type Status struct {
	State State     `json:"state"`
	Since time.Time `json:"since"`
	// Progress, while recovering: records restored and to restore.
	Progress *Progress `json:"progress,omitempty"`
	// LastError is the error the component last stopped with.
	LastError string `json:"last_error,omitempty"`
	// Failures counts consecutive failures (reset by a healthy run).
	Failures int `json:"consecutive_failures,omitempty"`
	// NextAttempt is when a restarting component tries again.
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
}

// Progress is how far a recovery has come.
type Progress struct {
	Restored int64 `json:"restored"`
	Total    int64 `json:"total"`
}

// Health collects the components' states. Its zero value is not usable;
// use NewHealth.
type Health struct {
	mu       sync.Mutex
	comps    map[string]*component
	ready    *prometheus.GaugeVec
	beat     time.Time
	stopBeat context.CancelFunc
}

type component struct {
	status   Status
	progress func(context.Context) *Progress
}

// NewHealth returns a Health whose readiness gauge, rtm_stage_ready, is
// registered on reg (nil: none). It is the one readiness series: every
// component /readyz lists has one, named by the label stage — the stages by
// their group names, and the process's other parts (the rules watcher
// "rules", the bridge, the collector, the inbox view) by theirs.
func NewHealth(reg prometheus.Registerer) *Health {
	h := &Health{comps: map[string]*component{}, beat: time.Now()}
	h.ready = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rtm_stage_ready",
		Help: "1 while a stage (or another component /readyz lists: rules, the bridge, the collector) is recovered and running, else 0.",
	}, []string{"stage"})
	if reg != nil {
		reg.MustRegister(h.ready)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stopBeat = cancel
	go h.heartbeat(ctx)
	return h
}

// Close stops the liveness heartbeat.
func (h *Health) Close() { h.stopBeat() }

// heartbeat proves the process schedules goroutines; /healthz fails when it
// stops beating.
func (h *Health) heartbeat(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.mu.Lock()
			h.beat = now
			h.mu.Unlock()
		}
	}
}

// Set records a component's new state. A component that changes state
// keeps its failure count unless s gives one.
func (h *Health) Set(name string, s Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.comps[name]
	if c == nil {
		c = &component{}
		h.comps[name] = c
	}
	if s.Since.IsZero() {
		s.Since = time.Now().UTC()
	}
	c.status = s
	v := 0.0
	if s.State == Running {
		v = 1
	}
	h.ready.WithLabelValues(name).Set(v)
}

// SetProgress gives a recovering component a way to report its progress.
func (h *Health) SetProgress(name string, f func(context.Context) *Progress) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.comps[name]; c != nil {
		c.progress = f
	}
}

// Status returns a component's current state.
func (h *Health) Status(name string) (Status, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.comps[name]
	if !ok {
		return Status{}, false
	}
	return c.status, true
}

// Report is the readiness of every component.
type Report struct {
	Ready      bool              `json:"ready"`
	Components map[string]Status `json:"components"`
}

// Ready reports whether every component runs (and there is at least one),
// with each one's status; recovering components are asked their progress.
func (h *Health) Ready(ctx context.Context) Report {
	h.mu.Lock()
	names := make([]string, 0, len(h.comps))
	for n := range h.comps {
		names = append(names, n)
	}
	slices.Sort(names)
	rep := Report{Ready: len(names) > 0, Components: make(map[string]Status, len(names))}
	progress := map[string]func(context.Context) *Progress{}
	for _, n := range names {
		c := h.comps[n]
		rep.Components[n] = c.status
		if c.status.State != Running {
			rep.Ready = false
		}
		if c.status.State == Recovering && c.progress != nil {
			progress[n] = c.progress
		}
	}
	h.mu.Unlock()
	for n, f := range progress {
		s := rep.Components[n]
		s.Progress = f(ctx)
		rep.Components[n] = s
	}
	return rep
}

// Live reports whether the process is not wedged: its heartbeat is recent
// and no component has failed for good.
func (h *Health) Live() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if age := time.Since(h.beat); age > 10*time.Second {
		return false, "heartbeat is " + age.Round(time.Second).String() + " old"
	}
	for n, c := range h.comps {
		if c.status.State == Failed {
			return false, n + " failed: " + c.status.LastError
		}
	}
	return true, "ok"
}

// Routes adds /healthz and /readyz to mux.
func (h *Health) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := h.Live()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(why + "\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		rep := h.Ready(ctx)
		w.Header().Set("Content-Type", "application/json")
		if !rep.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	})
}

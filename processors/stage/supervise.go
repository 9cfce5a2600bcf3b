package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/rtm-project/rtm/internal/ops"
)

// ErrGaveUp is wrapped by the error Supervisor.Run returns after
// MaxFailures consecutive failures.
var ErrGaveUp = errors.New("giving up after consecutive failures")

// Supervisor runs a component and restarts it when it fails. Goka
// processors stop on broker errors, rebalancing trouble and failed stores; a
// stage must come back rather than take the process down at the first
// error — but a stage that keeps failing ends the process, so that its
// orchestrator restarts it (on another node, with a fresh disk) and the
// failure shows as a crash loop instead of a process that looks healthy.
type Supervisor struct {
	Name string
	Log  *slog.Logger
	// Health receives the component's state (nil: none is reported).
	Health *ops.Health
	// MaxFailures consecutive failures end Run with ErrGaveUp; 0 never
	// gives up.
	MaxFailures int
	// MinBackoff doubles up to MaxBackoff between attempts, with jitter
	// (each wait is drawn from [backoff/2, backoff]), so instances that
	// failed together do not retry together. Defaults 1 s and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Healthy is how long a run must last for the failure count and the
	// backoff to start again. Default 1 minute.
	Healthy time.Duration
}

func (s Supervisor) withDefaults() Supervisor {
	if s.MinBackoff <= 0 {
		s.MinBackoff = time.Second
	}
	if s.MaxBackoff < s.MinBackoff {
		s.MaxBackoff = max(30*time.Second, s.MinBackoff)
	}
	if s.Healthy <= 0 {
		s.Healthy = time.Minute
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	return s
}

// Run runs run until ctx is done (then it returns nil), restarting it with
// backoff whenever it returns an error or returns early. After MaxFailures
// consecutive failures it returns an error wrapping ErrGaveUp and the last
// failure.
func (s Supervisor) Run(ctx context.Context, run func(context.Context) error) error {
	s = s.withDefaults()
	backoff := s.MinBackoff
	failures := 0
	Restarts.WithLabelValues(s.Name) // served at 0 before the first restart
	for {
		start := time.Now()
		err := run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("stopped without an error before it was asked to")
		}
		if time.Since(start) > s.Healthy {
			backoff, failures = s.MinBackoff, 0
		}
		failures++
		Restarts.WithLabelValues(s.Name).Inc()
		if s.MaxFailures > 0 && failures >= s.MaxFailures {
			s.Log.Error("stage failed too often; giving up", "stage", s.Name, "failures", failures, "err", err)
			s.report(ops.Status{State: ops.Failed, LastError: err.Error(), Failures: failures})
			return fmt.Errorf("%s: %w (%d): %w", s.Name, ErrGaveUp, failures, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		next := time.Now().Add(wait).UTC()
		s.Log.Error("stage stopped; restarting", "stage", s.Name, "err", err, "in", wait.Round(time.Millisecond), "failures", failures)
		s.report(ops.Status{State: ops.Restarting, LastError: err.Error(), Failures: failures, NextAttempt: &next})
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(2*backoff, s.MaxBackoff)
	}
}

func (s Supervisor) report(st ops.Status) {
	if s.Health != nil {
		s.Health.Set(s.Name, st)
	}
}

// Supervise runs run under a Supervisor that never gives up; for helpers
// (the rules watcher) whose failure is reported by the stages that need
// them.
func Supervise(ctx context.Context, name string, log *slog.Logger, run func(context.Context) error) {
	_ = Supervisor{Name: name, Log: log}.Run(ctx, run)
}

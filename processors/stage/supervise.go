package stage

import (
	"context"
	"log/slog"
	"time"
)

// Supervise runs run until ctx is done, restarting it with exponential
// backoff (1 s doubling to 30 s, reset after a minute of healthy running)
// whenever it returns an error. Goka processors stop on broker errors and
// rebalancing trouble; a stage must come back rather than take the process
// down with it. It returns nil when ctx is done.
func Supervise(ctx context.Context, name string, log *slog.Logger, run func(context.Context) error) {
	const (
		minBackoff = time.Second
		maxBackoff = 30 * time.Second
		healthy    = time.Minute
	)
	backoff := minBackoff
	for {
		start := time.Now()
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > healthy {
			backoff = minBackoff
		}
		Restarts.WithLabelValues(name).Inc()
		log.Error("stage stopped; restarting", "stage", name, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

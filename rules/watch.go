package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/topics"
)

// Watcher keeps the live rule Set of a process: it reads the compacted rules
// topic from the beginning (read_committed, no consumer group, so every
// instance sees every table) and swaps in a new immutable *Set after each
// batch of records. Readers call Current, a single atomic load, so a swap
// never pauses message processing; a message evaluated during a swap uses
// either the old or the new Set, never a mix.
//
// A record that fails to decode or compile is logged and ignored: the
// table's previous version stays in force. A tombstone removes a table.
type Watcher struct {
	base   *kgo.Client
	topic  string
	log    *slog.Logger
	cur    atomic.Pointer[Set]
	mu     sync.Mutex
	change chan struct{} // closed and replaced on every swap
	ready  chan struct{} // closed once caught up with the topic at start
	// readyOnce lets Run be called again after an error (a supervisor
	// restarting it) without closing ready twice.
	readyOnce sync.Once
}

// WatcherOption configures a Watcher.
type WatcherOption func(*Watcher)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) WatcherOption { return func(w *Watcher) { w.log = l } }

// WithTopic overrides the topic (default topics.Rules).
func WithTopic(t string) WatcherOption { return func(w *Watcher) { w.topic = t } }

// NewWatcher returns a watcher that connects with client's connection
// options (seeds, TLS, SASL) through its own consumer; client itself is not
// used to consume and may be shared.
func NewWatcher(client *kgo.Client, opts ...WatcherOption) *Watcher {
	w := &Watcher{base: client, topic: topics.Rules, log: slog.Default(), change: make(chan struct{}), ready: make(chan struct{})}
	for _, o := range opts {
		o(w)
	}
	w.cur.Store(newSet(map[string]*Table{}))
	return w
}

// Current returns the live rule set. It never returns nil.
func (w *Watcher) Current() *Set { return w.cur.Load() }

// Ready is closed once the watcher has applied everything that was on the
// topic when Run started; stages should wait for it before processing.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Changed returns a channel that is closed at the next swap.
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.change
}

// WaitFor blocks until table name is live at version (a prefix is enough;
// "" waits for the table to be removed).
func (w *Watcher) WaitFor(ctx context.Context, name, version string) error {
	for {
		ch := w.Changed()
		t, ok := w.Current().Table(name)
		if (version == "" && !ok) || (version != "" && ok && len(t.Version()) >= len(version) && t.Version()[:len(version)] == version) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s@%s: %w", name, version, ctx.Err())
		}
	}
}

// Run consumes until ctx is done; it returns nil on cancellation.
func (w *Watcher) Run(ctx context.Context) error {
	pos, ends, err := stableEnds(ctx, w.base, w.topic)
	if err != nil {
		return fmt.Errorf("watching rules: %w", err)
	}
	cl, err := kgo.NewClient(append(kafka.ReaderOpts(w.base), consumerOpts(w.topic, ends)...)...)
	if err != nil {
		return fmt.Errorf("watching rules: creating consumer: %w", err)
	}
	defer cl.Close()
	caughtUp := func() bool {
		for p, end := range ends {
			if pos[p] < end {
				return false
			}
		}
		return true
	}
	if caughtUp() {
		w.readyOnce.Do(func() { close(w.ready) })
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				w.log.Warn("rules fetch failed", "topic", t, "partition", p, "err", err)
			}
		})
		next := w.Current()
		changed := false
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			if s, ok := w.apply(next, r); ok {
				next, changed = s, true
			}
		})
		if changed {
			w.swap(next)
			if err := next.Conflicts(); err != nil {
				w.log.Warn("template variants defined by two tables; the table first in name order is used", "err", err)
			}
		}
		if caughtUp() {
			w.readyOnce.Do(func() {
				close(w.ready)
				w.log.Info("rules loaded", "tables", w.Current().Len())
			})
		}
	}
}

// apply returns the set with record r applied, or false if r is ignored.
func (w *Watcher) apply(s *Set, r *kgo.Record) (*Set, bool) {
	name := string(r.Key)
	log := w.log.With("table", name, "partition", r.Partition, "offset", r.Offset)
	if r.Value == nil {
		if _, ok := s.Table(name); !ok {
			return nil, false
		}
		log.Info("rules table removed")
		return s.Without(name), true
	}
	spec, err := UnmarshalSpec(r.Value)
	if err == nil && spec.Name != name {
		err = fmt.Errorf("record key %q does not match table name %q", name, spec.Name)
	}
	if err != nil {
		log.Error("ignoring undecodable rules record; previous version stays in force", "err", err)
		return nil, false
	}
	if t, ok := s.Table(name); ok && t.Version() == spec.Meta.Version {
		return nil, false
	}
	t, err := Compile(spec)
	if err != nil {
		log.Error("ignoring rules table that does not compile; previous version stays in force", "version", spec.Meta.Version, "err", err)
		return nil, false
	}
	log.Info("rules table updated", "version", t.Version(), "kind", t.Kind(), "rules", t.Len(), "author", spec.Meta.Author)
	return s.With(t), true
}

func (w *Watcher) swap(s *Set) {
	w.cur.Store(s)
	w.mu.Lock()
	close(w.change)
	w.change = make(chan struct{})
	w.mu.Unlock()
}

// Package timer releases delayed work without a clock service (DESIGN.md,
// "Timers"): a stage keeps due work in its own table under a due-time index;
// a ticker sends a tick to every partition of the stage's loop topic; the
// tick's callback scans its own partition's index for what is due and loops
// each due key back to itself, so the release is an ordinary keyed update of
// that key's state — idempotent, ordered with the key's other updates, and
// never lost across restarts (the due entry stays until the release clears
// it).
package timer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bytedance/sonic"
	"github.com/lovoo/goka"
	"golang.org/x/sync/errgroup"

	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// Message is what travels on a stage's loop topic.
type Message struct {
	// Kind is "tick" (to a partition), "release" (to a due key) or
	// "settle" (to a key: work the stage finished outside its callback,
	// in Body, to be applied to the key's state).
	Kind string    `json:"kind"`
	At   time.Time `json:"at"`
	// Body is a settle message's content, the stage's own encoding.
	Body json.RawMessage `json:"body,omitempty"`
}

// Kinds of Message.
const (
	Tick    = "tick"
	Release = "release"
	Settle  = "settle"
)

// Codec is the loop topic's codec.
type Codec struct{}

func (Codec) Encode(v any) ([]byte, error) { return sonic.Marshal(v) }
func (Codec) Decode(b []byte) (any, error) {
	m := new(Message)
	if err := sonic.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("decoding loop message: %w", err)
	}
	return m, nil
}

// DueKey encodes a time so that byte order is time order.
func DueKey(t time.Time) string { return fmt.Sprintf("%020d", t.UnixNano()) }

// HandleTick scans the partition's due index for entries due at or before
// the tick's time and loops a release to each. table is the group table
// topic whose store holds the index.
func HandleTick(ctx goka.Context, env stage.Env, table goka.Table, index string, at time.Time) error {
	st := env.Registry.Store(string(table), ctx.Partition())
	if st == nil {
		return fmt.Errorf("no local store for %s/%d", table, ctx.Partition())
	}
	// Loop edges use raw bytes (a malformed loop record must not stop the
	// stage), so the release is encoded here.
	release, err := Codec{}.Encode(&Message{Kind: Release, At: at})
	if err != nil {
		return err
	}
	return st.ScanIndexRange(index, "", DueKey(at.Add(time.Nanosecond)), func(_, key string) error {
		ctx.Loopback(key, release)
		return nil
	})
}

// Clock is a timer stage's time source: the time its decisions are made
// at, and the ticks that release due work (each tick carries the time it
// was sent). Wall is the real one; tests pass their own, so that no test
// waits for real time to pass.
type Clock interface {
	Now() time.Time
	// NewTicker returns a channel of ticks about every d, and a function
	// that stops them.
	NewTicker(d time.Duration) (<-chan time.Time, func())
}

// Wall is the real clock: time.Now and time.NewTicker.
var Wall Clock = wall{}

type wall struct{}

func (wall) Now() time.Time { return time.Now() }
func (wall) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// RunTicker sends a tick to every partition of loop every interval of clock
// (Wall if nil) until ctx is done. Every instance of a stage may run one: a
// duplicate tick finds nothing left to release.
func RunTicker(ctx context.Context, env stage.Env, loop goka.Stream, interval time.Duration, clock Clock) error {
	if clock == nil {
		clock = Wall
	}
	em, err := goka.NewEmitter(env.Brokers, loop, Codec{}, env.EmitterOptions()...)
	if err != nil {
		return fmt.Errorf("starting ticker on %s: %w", loop, err)
	}
	defer em.Finish()
	keys := topics.PartitionKeys("tick-", env.Catalogue.Partitions)
	ticks, stop := clock.NewTicker(interval)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticks:
			for _, k := range keys {
				if _, err := em.Emit(k, &Message{Kind: Tick, At: now.UTC()}); err != nil {
					return fmt.Errorf("ticking %s: %w", loop, err)
				}
			}
		}
	}
}

// Run runs a stage's processor and its ticker (on clock, Wall if nil) until
// ctx is done or either fails.
func Run(ctx context.Context, proc *goka.Processor, env stage.Env, loop goka.Stream, interval time.Duration, clock Clock) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := proc.Run(ctx)
		if err == nil && ctx.Err() == nil {
			// Stopped on its own: end the ticker too, so a supervisor
			// restarts the stage instead of ticking into nothing.
			err = errors.New("processor stopped")
		}
		return err
	})
	g.Go(func() error { return RunTicker(ctx, env, loop, interval, clock) })
	return g.Wait()
}

// Loop returns the callback of a timer stage's loop edge: a tick is
// answered from the partition's due index (HandleTick); a release calls
// release with the key's context and the tick's time. A record that is
// neither goes to the dead-letter topic, and so does one that is not on its
// key's partition (keys.Admit): a tick there would scan another
// partition's index, a release would release a key whose state is not
// there. A settle message goes to settle with its body; a stage that
// sends none passes nil, and one that arrives anyway is dead-lettered.
func Loop(env stage.Env, keys stage.Keys, table goka.Table, index string, release func(ctx goka.Context, at time.Time), settle func(ctx goka.Context, body []byte)) goka.ProcessCallback {
	group := keys.Stage
	return func(ctx goka.Context, msg any) {
		if !keys.Admit(ctx, msg, "") {
			return
		}
		raw, _ := msg.([]byte)
		v, err := Codec{}.Decode(raw)
		if err != nil {
			stage.DeadLetter(ctx, group, msg, err)
			return
		}
		switch m := v.(*Message); m.Kind {
		case Tick:
			if err := HandleTick(ctx, env, table, index, m.At); err != nil {
				stage.Fail(ctx, err) // the local store is gone: let the supervisor restart the stage
			}
		case Release:
			release(ctx, m.At)
		case Settle:
			if settle == nil {
				stage.DeadLetter(ctx, group, msg, errors.New("settle message on a stage that settles nothing"))
				return
			}
			settle(ctx, m.Body)
		default:
			stage.DeadLetter(ctx, group, msg, fmt.Errorf("loop message of unknown kind %q", m.Kind))
		}
	}
}

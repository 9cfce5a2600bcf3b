package testkit

import (
	"sync"
	"time"
)

// Clock is a clock for timer stages (timer.Clock) that shows the time the
// test sets. Its tickers ignore their interval: each ticks once when it
// starts and once each time the clock moves, with the clock's time. A stage
// on it is quiet while the test does not move time, so its consumer group
// can be seen to catch up (WaitCaughtUp), and no test waits for real time to
// pass.
type Clock struct {
	mu    sync.Mutex
	now   time.Time
	gen   uint64        // bumped by every move
	moved chan struct{} // closed and replaced by every move
}

// NewClock returns a clock showing now.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now, gen: 1, moved: make(chan struct{})}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t (back or forth) and wakes its tickers.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.gen++
	close(c.moved)
	c.moved = make(chan struct{})
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// NewTicker returns a ticker of the clock (see Clock) and its stop function.
func (c *Clock) NewTicker(time.Duration) (<-chan time.Time, func()) {
	ch := make(chan time.Time)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var seen uint64
		for {
			c.mu.Lock()
			gen, now, moved := c.gen, c.now, c.moved
			c.mu.Unlock()
			if gen == seen {
				select {
				case <-moved:
					continue
				case <-stop:
					return
				}
			}
			select {
			case ch <- now:
				seen = gen
			case <-moved: // moved again before the tick was taken: tick the new time
			case <-stop:
				return
			}
		}
	}()
	var once sync.Once
	return ch, func() { once.Do(func() { close(stop); <-done }) }
}

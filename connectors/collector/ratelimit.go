package collector

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxClients is how many client addresses the tracking limit remembers.
// Past it the least recently seen address is forgotten (and starts again
// with a full bucket), so a flood from many addresses costs bounded memory
// (about 200 bytes an address) instead of growing without limit.
const maxClients = 10000

// clientLimits is a token bucket per client address, for the most recently
// seen maxClients addresses.
type clientLimits struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	max   int
	order *list.List // of *clientBucket, most recently seen first
	byIP  map[string]*list.Element
}

type clientBucket struct {
	addr string
	lim  *rate.Limiter
}

func newClientLimits(perSecond float64, burst, max int) *clientLimits {
	return &clientLimits{limit: rate.Limit(perSecond), burst: burst, max: max, order: list.New(), byIP: map[string]*list.Element{}}
}

// allow takes one token from addr's bucket if there is one.
func (c *clientLimits) allow(addr string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byIP[addr]
	if ok {
		c.order.MoveToFront(e)
	} else {
		if c.order.Len() >= c.max {
			oldest := c.order.Back()
			c.order.Remove(oldest)
			delete(c.byIP, oldest.Value.(*clientBucket).addr)
		}
		e = c.order.PushFront(&clientBucket{addr: addr, lim: rate.NewLimiter(c.limit, c.burst)})
		c.byIP[addr] = e
	}
	return e.Value.(*clientBucket).lim.AllowN(now, 1)
}

// len is how many addresses are remembered (tests).
func (c *clientLimits) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byIP)
}

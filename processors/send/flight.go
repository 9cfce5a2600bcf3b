package send

import (
	"sync"
)

// lanes are the stage's sends in flight, one lane per partition.
//
// Goka calls a partition's callbacks one at a time, so a callback that
// waited for the channel's answer would make a partition send one message
// per round trip: with LINE answering in 30 ms, 33 a second. Instead the
// delivery callback hands the send to a goroutine and returns with its
// commit deferred; up to Config.Concurrency sends of a partition are in
// flight at once. When one finishes, its outcome goes back to the partition
// through the stage's loop topic (a "settle" message keyed by the member),
// whose callback records it in the member's log and emits the result, as
// the callback did before; only then is the delivery's input committed
// (see dispatch). A lane holds only what lives in memory while a send is in
// flight: which delivery IDs are on their way (so a duplicate arriving
// meanwhile is not sent twice), and which members have a send in flight
// (so a member's deliveries still go out one after another, in order).
type lanes struct {
	mu  sync.Mutex
	per map[int32]*lane
	n   int
}

func newLanes(concurrency int) *lanes {
	return &lanes{per: map[int32]*lane{}, n: concurrency}
}

func (ls *lanes) of(partition int32) *lane {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.per[partition]
	if l == nil {
		l = &lane{slots: make(chan struct{}, ls.n), ids: map[string]struct{}{}, members: map[string]chan struct{}{}}
		ls.per[partition] = l
	}
	return l
}

// lane is one partition's sends in flight.
type lane struct {
	slots chan struct{} // one token per send in flight
	mu    sync.Mutex
	// ids are the deliveries sent or being sent whose outcome the loop
	// has not recorded in the member's log yet.
	ids map[string]struct{}
	// members have a send in flight; the channel closes when it returns.
	members map[string]chan struct{}
}

// pending reports whether delivery id is on its way.
func (l *lane) pending(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.ids[id]
	return ok
}

// busy returns the channel that closes when member's send in flight
// returns, or nil when it has none.
func (l *lane) busy(member string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.members[member]
}

// start records a send of delivery id to member as in flight; the caller
// holds a slot. done, called when the channel has answered, frees the
// member for its next send.
func (l *lane) start(id, member string) (done func()) {
	c := make(chan struct{})
	l.mu.Lock()
	l.ids[id] = struct{}{}
	l.members[member] = c
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		if l.members[member] == c {
			delete(l.members, member)
		}
		l.mu.Unlock()
		close(c)
	}
}

// forget drops delivery id once its outcome is in the member's log (or
// will never be: the send was abandoned and its input is not committed).
func (l *lane) forget(id string) {
	l.mu.Lock()
	delete(l.ids, id)
	l.mu.Unlock()
}

package sinks

// ring keeps the last cap items pushed. Not safe for concurrent use; the
// sinks guard it with their mutex.
type ring[T any] struct {
	items []T
	next  int // index of the oldest item once full
	cap   int
}

func newRing[T any](capacity int) *ring[T] {
	return &ring[T]{items: make([]T, 0, min(capacity, 1024)), cap: capacity}
}

// push adds v and returns the item it evicted, if any.
func (r *ring[T]) push(v T) (evicted T, ok bool) {
	if len(r.items) < r.cap {
		r.items = append(r.items, v)
		return evicted, false
	}
	evicted = r.items[r.next]
	r.items[r.next] = v
	r.next = (r.next + 1) % r.cap
	return evicted, true
}

// all returns a copy of the items, oldest first.
func (r *ring[T]) all() []T {
	out := make([]T, 0, len(r.items))
	out = append(out, r.items[r.next:]...)
	return append(out, r.items[:r.next]...)
}

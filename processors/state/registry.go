package state

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/lovoo/goka/storage"
)

// Registry finds the open store of a table partition. Goka's callback
// Context does not expose storage, so the Builder registers every store it
// opens here, and a callback reaches its own partition's store with
//
//	st := reg.Store(string(goka.GroupTable(group)), ctx.Partition())
//
// A Registry is safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	stores map[partitionKey]*Store
}

type partitionKey struct {
	topic     string
	partition int32
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{stores: make(map[partitionKey]*Store)}
}

// Store returns the open store of the table partition, or nil if this
// process has none open (not assigned here, or already closed).
func (r *Registry) Store(topic string, partition int32) *Store {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.stores[partitionKey{topic, partition}]
}

// Stores returns the open stores, in no particular order.
func (r *Registry) Stores() []*Store {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	ss := make([]*Store, 0, len(r.stores))
	for _, s := range r.stores {
		ss = append(ss, s)
	}
	return ss
}

func (r *Registry) register(s *Store) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stores[partitionKey{s.topic, s.partition}] = s
}

// unregister removes s, but not a newer store of the same partition.
func (r *Registry) unregister(s *Store) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := partitionKey{s.topic, s.partition}
	if r.stores[k] == s {
		delete(r.stores, k)
	}
}

// Builder returns a Goka storage builder that keeps each table partition in
// its own Pebble DB under root/<topic>/<partition> and registers open
// stores in reg (which may be nil). Options are validated here, once.
func Builder(root string, opts Options, reg *Registry) (storage.Builder, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	cache := opts.blockCache() // one for every partition of this builder
	return func(topic string, partition int32) (storage.Storage, error) {
		if topic == "" || filepath.Base(topic) != topic {
			return nil, fmt.Errorf("building state store: topic %q is not a plain name", topic)
		}
		dir := filepath.Join(root, topic, strconv.Itoa(int(partition)))
		return newStore(dir, topic, partition, opts, reg, cache), nil
	}, nil
}

// New returns an unopened store kept in dir, for use outside Goka (tools,
// tests). Call Open, and MarkRecovered once it holds what it should.
func New(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	return newStore(dir, "", -1, opts, nil, opts.blockCache()), nil
}

// FailTopic fails every open store of topic (see Store.Fail) and reports
// how many there were.
func (r *Registry) FailTopic(topic string, err error) int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	var ss []*Store
	for k, s := range r.stores {
		if k.topic == topic {
			ss = append(ss, s)
		}
	}
	r.mu.RUnlock()
	for _, s := range ss {
		s.Fail(err)
	}
	return len(ss)
}

package state

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/lovoo/goka/storage"
)

// Get returns a copy of key's value, or nil if the row does not exist.
// (Pebble's Get returns memory owned by Pebble until its closer is closed;
// Goka keeps the returned slice, so it must be a copy.)
func (s *Store) Get(key string) ([]byte, error) {
	if s.opts.IndexOnly {
		return nil, fmt.Errorf("getting %q: %w", key, ErrIndexOnly)
	}
	if err := s.commitForRead(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usableLocked(); err != nil {
		return nil, err
	}
	v, closer, err := s.db.Get(appendDataKey(make([]byte, 0, 1+len(key)), key))
	if errors.Is(err, pebble.ErrNotFound) {
		if s.rememberRows() {
			s.last.Store(&lastRow{key: key})
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting %q: %w", key, s.failedBy(err))
	}
	out := make([]byte, len(v)) // non-nil even when empty: nil means "absent"
	copy(out, v)
	if s.rememberRows() {
		// Shared with the caller: neither writes into it.
		s.last.Store(&lastRow{key: key, value: out})
	}
	return out, closer.Close()
}

// Has reports whether the row exists. (Goka calls it rarely; it shares
// Get's path, copy included.)
func (s *Store) Has(key string) (bool, error) {
	v, err := s.Get(key)
	return v != nil, err
}

// GetOffset returns the latest offset given to SetOffset (or, after Open,
// the stored one), or def if there is none.
func (s *Store) GetOffset(def int64) (int64, error) {
	s.mu.RLock()
	err := s.usableLocked()
	s.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	if off := s.offset.Load(); off != noOffset {
		return off, nil
	}
	return def, nil
}

// Iterator iterates over a snapshot of all rows (never index entries or
// metadata), with their original keys.
func (s *Store) Iterator() (storage.Iterator, error) {
	return s.newDataIter(dataLower, dataUpper)
}

// IteratorWithRange iterates over a snapshot of the rows in [start, limit).
// As in Goka's LevelDB storage, an empty limit means "every key that starts
// with start" (and so, with an empty start too, every row).
func (s *Store) IteratorWithRange(start, limit []byte) (storage.Iterator, error) {
	lower := append([]byte{spaceData}, start...)
	upper := prefixEnd(lower)
	if len(limit) > 0 {
		upper = append([]byte{spaceData}, limit...)
	}
	return s.newDataIter(lower, upper)
}

func (s *Store) newDataIter(lower, upper []byte) (storage.Iterator, error) {
	if s.opts.IndexOnly {
		return nil, ErrIndexOnly
	}
	if err := s.commitForRead(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usableLocked(); err != nil {
		return nil, err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("creating iterator: %w", err)
	}
	return &dataIter{it: it}, nil
}

// commitForRead commits the recovery batch if it holds writes, so readers
// during recovery (custom update callbacks, views) see every write.
func (s *Store) commitForRead() error {
	if !s.dirty.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return err
	}
	return s.commitPendingLocked()
}

// dataIter adapts a Pebble iterator over the row keyspace to Goka's
// storage.Iterator: it starts before the first row, strips the keyspace
// byte, and is positioned on the sought row right after Seek.
type dataIter struct {
	it       *pebble.Iterator
	started  bool
	released bool
	err      error
}

func (i *dataIter) Next() bool {
	if i.released {
		return false
	}
	if !i.started {
		i.started = true
		return i.it.First()
	}
	return i.it.Next()
}

func (i *dataIter) Err() error {
	if i.released {
		return i.err
	}
	return i.it.Error()
}

func (i *dataIter) Key() []byte {
	if i.released || !i.it.Valid() {
		return nil
	}
	return i.it.Key()[1:]
}

func (i *dataIter) Value() ([]byte, error) {
	if i.released || !i.it.Valid() {
		return nil, nil
	}
	return i.it.ValueAndErr()
}

// Release closes the iterator; an error from closing is kept for Err.
func (i *dataIter) Release() {
	if i.released {
		return
	}
	i.released = true
	i.err = i.it.Close()
}

func (i *dataIter) Seek(key []byte) bool {
	if i.released {
		return false
	}
	i.started = true
	return i.it.SeekGE(append([]byte{spaceData}, key...))
}

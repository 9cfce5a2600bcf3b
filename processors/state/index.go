package state

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// StopScan, returned by a scan callback, ends the scan without an error.
var StopScan = errors.New("stop scan")

// ScanIndex calls fn with the primary key of every row of this partition
// whose index name has a key starting with prefix, in (index key, primary
// key) order. A row with several matching index keys is reported once per
// key. The scan reads a snapshot taken when it starts, so fn may write to
// the store (e.g. delete the row it was given).
//
// Prefix matching is byte-wise: prefix "item-1" also matches index key
// "item-10". Use Lookup for exact index keys.
func (s *Store) ScanIndex(name, prefix string, fn func(primaryKey string) error) error {
	lower := append(indexPrefix(name), prefix...)
	return s.scan(name, lower, prefixEnd(lower), func(_, pk []byte) error { return fn(string(pk)) })
}

// Lookup calls fn with the primary key of every row of this partition
// that has exactly indexKey in index name, e.g. every member on this
// partition who favourited item X.
func (s *Store) Lookup(name, indexKey string, fn func(primaryKey string) error) error {
	if strings.IndexByte(indexKey, sep) >= 0 {
		return fmt.Errorf("looking up %q: %w", indexKey, ErrInvalidIndexKey)
	}
	lower := appendIndexKey(nil, name, indexKey, "")
	return s.scan(name, lower, prefixEnd(lower), func(_, pk []byte) error { return fn(string(pk)) })
}

// ScanIndexRange calls fn for every entry of index name whose index key is
// in [start, end); an empty end means no upper bound. It suits due-time
// indexes: with index keys that are fixed-width big-endian or zero-padded
// times, ScanIndexRange(name, "", encode(now+1), fn) visits everything due
// by now, earliest first.
func (s *Store) ScanIndexRange(name, start, end string, fn func(indexKey, primaryKey string) error) error {
	p := indexPrefix(name)
	lower := append(p, start...)
	upper := prefixEnd(p)
	if end != "" {
		upper = append(indexPrefix(name), end...)
	}
	return s.scan(name, lower, upper, func(ik, pk []byte) error { return fn(string(ik), string(pk)) })
}

// scan iterates over index entries in [lower, upper) of index name.
func (s *Store) scan(name string, lower, upper []byte, fn func(indexKey, primaryKey []byte) error) error {
	if _, ok := s.opts.Indexes[name]; !ok {
		return fmt.Errorf("scanning index %q: %w", name, ErrUnknownIndex)
	}
	it, err := s.newIndexIter(lower, upper)
	if err != nil {
		return fmt.Errorf("scanning index %q: %w", name, err)
	}
	skip := len(name) + 2 // 'i' name 0x00
	var ferr error
	for valid := it.First(); valid; valid = it.Next() {
		ik, pk, ok := splitIndexEntry(it.Key()[skip:])
		if !ok {
			ferr = fmt.Errorf("scanning index %q: malformed entry %q", name, it.Key())
			break
		}
		if ferr = fn(ik, pk); ferr != nil {
			break
		}
	}
	if errors.Is(ferr, StopScan) {
		ferr = nil
	}
	s.stats.scans.Add(1)
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return errors.Join(ferr, fmt.Errorf("scanning index %q: %w", name, err))
	}
	return ferr
}

// newIndexIter opens an iterator over index entries; it holds no lock
// afterwards, so the scan callback may write to the store.
func (s *Store) newIndexIter(lower, upper []byte) (*pebble.Iterator, error) {
	if err := s.commitForRead(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usableLocked(); err != nil {
		return nil, err
	}
	if s.deferIndex {
		return nil, ErrIndexNotReady
	}
	return s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
}

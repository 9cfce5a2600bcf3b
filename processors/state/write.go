package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// getter reads through a DB or an indexed batch (which sees its own writes).
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

// lastRow is the row of an indexed store that Get read last: Goka reads a
// row, the callback changes it, Goka writes it back, and the write's
// index maintenance needs the old value it just read. Keeping it spares
// that second point read (a Pebble Get of every member-state, timing and
// send write). value nil: the row was absent.
//
// It is set by Get under the read lock and replaced by every write under
// the write lock, so it never holds a value older than the store's: a Get
// cannot read before a write and publish after it.
type lastRow struct {
	key   string
	value []byte
}

// Get answers for the one key the row is of (the caller asks for no
// other; see takeLastLocked).
func (l *lastRow) Get([]byte) ([]byte, io.Closer, error) {
	if l.value == nil {
		return nil, nil, pebble.ErrNotFound
	}
	return l.value, io.NopCloser(nil), nil
}

// rememberRows reports whether Get and the writes keep lastRow: only for a
// store that maintains indexes per write.
func (s *Store) rememberRows() bool { return s.maintainIndexes() && !s.recovering }

// oldRowLocked is where a write of key reads the old row: the remembered
// one if it is key's, else the DB. The memo is dropped either way until
// the write succeeds (rememberLocked).
func (s *Store) oldRowLocked(key string) getter {
	l := s.last.Swap(nil)
	if l != nil && l.key == key {
		return l
	}
	if s.maintainIndexes() {
		s.stats.oldRowReads.Add(1)
	}
	return s.db
}

// rememberLocked keeps a copy of the row just written as the last row
// (present false: it was deleted).
func (s *Store) rememberLocked(key string, value []byte, present bool) {
	if !s.rememberRows() {
		return
	}
	l := &lastRow{key: key}
	if present {
		l.value = append(make([]byte, 0, len(value)), value...) // non-nil: nil means absent
	}
	s.last.Store(l)
}

// Set stores a row. Its index entries are updated in the same batch: the
// old value is read, and entries it had but the new value lacks are
// deleted, new ones added. During recovery the batch is the large pending
// batch; afterwards each Set is its own batch. An index-only store stores
// the row's projection instead (layout.go), or deletes the row if it has
// no index key.
func (s *Store) Set(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return err
	}
	if s.opts.IndexOnly {
		p, err := s.project(key, value)
		if err != nil {
			return fmt.Errorf("setting %q: %w", key, err)
		}
		if p == nil {
			return s.deleteLocked(key)
		}
		value = p
	}
	return s.setLocked(key, value)
}

func (s *Store) setLocked(key string, value []byte) error {
	if s.recovering {
		s.last.Store(nil)
		if err := s.putRowLocked(s.pending, s.pending, key, value); err != nil {
			return fmt.Errorf("setting %q: %w", key, err)
		}
		if s.freshKeys != nil {
			s.freshKeys[key] = struct{}{}
		}
		s.stats.sets.Add(1)
		s.pendingRecords++
		s.dirty.Store(true)
		// Normally SetOffset commits; this bounds the batch for update
		// callbacks that write without an offset.
		return s.maybeCommitLocked(2 * s.batchLimit())
	}
	if same, err := s.unchangedLocked(key, value, true); err != nil || same {
		return err
	}
	b := s.writeBatchLocked()
	if err := s.putRowLocked(b, s.oldRowLocked(key), key, value); err != nil {
		b.Reset()
		return fmt.Errorf("setting %q: %w", key, err)
	}
	s.stats.sets.Add(1)
	if err := s.applyLocked(b); err != nil {
		return err
	}
	s.rememberLocked(key, value, true)
	return nil
}

// Delete removes a row and all its index entries in one batch.
func (s *Store) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return err
	}
	return s.deleteLocked(key)
}

func (s *Store) deleteLocked(key string) error {
	if s.recovering {
		s.last.Store(nil)
		if s.freshKeys != nil {
			if _, ok := s.freshKeys[key]; !ok {
				s.pendingRecords++ // restored, as far as OnRecovered is concerned
				return nil         // never written: nothing to delete
			}
			delete(s.freshKeys, key)
		}
		if err := s.deleteRowLocked(s.pending, s.pending, key); err != nil {
			return fmt.Errorf("deleting %q: %w", key, err)
		}
		s.stats.deletes.Add(1)
		s.pendingRecords++
		s.dirty.Store(true)
		return s.maybeCommitLocked(2 * s.batchLimit())
	}
	if same, err := s.unchangedLocked(key, nil, false); err != nil || same {
		return err
	}
	b := s.writeBatchLocked()
	if err := s.deleteRowLocked(b, s.oldRowLocked(key), key); err != nil {
		b.Reset()
		return fmt.Errorf("deleting %q: %w", key, err)
	}
	s.stats.deletes.Add(1)
	if err := s.applyLocked(b); err != nil {
		return err
	}
	s.rememberLocked(key, nil, false)
	return nil
}

// unchangedLocked reports, for an index-only store, whether key's stored
// row already is value (present) or absent (!present): such a write
// changes nothing and writes nothing. Most writes to an index-only copy
// are like that (a delivery's result updates a member's profile, not its
// favourites), so they cost one point read of a small row. The row read
// is remembered (lastRow), so a write that does change it diffs its index
// entries without reading it again.
func (s *Store) unchangedLocked(key string, value []byte, present bool) (bool, error) {
	if !s.opts.IndexOnly {
		return false, nil
	}
	s.keyBuf = appendDataKey(s.keyBuf[:0], key)
	old, closer, err := s.oldRowLocked(key).Get(s.keyBuf)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		s.rememberLocked(key, nil, false)
		return !present, nil
	case err != nil:
		return false, fmt.Errorf("reading old row: %w", s.failedBy(err))
	}
	same := present && bytes.Equal(old, value)
	s.rememberLocked(key, old, true) // copies old, which closer releases
	return same, closer.Close()
}

// SetOffset records the changelog offset the store's contents cover.
//
// During recovery Goka calls it after each message's Set/Delete on the same
// goroutine, so the offset is put into the pending batch just before that
// batch is committed: each committed recovery batch holds exactly the
// messages up to the offset it stores. After recovery Goka calls it from
// the producer's callback, once the changelog write of an earlier Set is
// acknowledged; the offset is then written with the next row's batch, or
// by MarkRecovered/Close. The store never needs it earlier: it is only
// read back after a clean Close (see doc.go).
func (s *Store) SetOffset(offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return err
	}
	s.offset.Store(offset)
	s.offsetDirty = true
	if s.recovering {
		return s.maybeCommitLocked(s.batchLimit())
	}
	return nil
}

// MarkRecovered commits the recovery batch, builds the index entries if
// they were deferred, and switches to one batch per write.
func (s *Store) MarkRecovered() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usableLocked(); err != nil {
		return err
	}
	if !s.recovering {
		return nil
	}
	if err := s.commitPendingLocked(); err != nil {
		return err
	}
	if s.deferIndex {
		if err := s.rebuildIndexesLocked(); err != nil {
			return err
		}
		s.deferIndex = false
	}
	if err := s.pending.Close(); err != nil {
		return fmt.Errorf("closing recovery batch: %w", err)
	}
	s.pending = nil
	s.ingestRefs = nil
	s.endRecoveryLocked()
	// A changelog replay leaves a deep L0 of files that each span the
	// whole key range, and every point read (Goka's Get, a join) then
	// consults all of them. Compact once, in the background, so reads after
	// recovery touch one file per level; writes and reads go on meanwhile.
	// Close cancels it and waits, since Pebble panics on a compaction of
	// a closed DB.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.compactCancel, s.compactDone = cancel, done
	db := s.db
	go func() {
		defer close(done)
		if err := db.Compact(ctx, []byte{}, []byte{0xff}, false); err != nil && ctx.Err() == nil {
			s.log.Debug("post-recovery compaction failed", "dir", s.dir, "err", err)
		}
	}()
	return nil
}

func (s *Store) writeBatchLocked() *pebble.Batch {
	if s.wb == nil {
		s.wb = s.db.NewBatch()
	}
	return s.wb
}

// applyLocked commits a single-write batch (with the offset, if it moved)
// and resets it for reuse.
func (s *Store) applyLocked(b *pebble.Batch) error {
	if s.offsetDirty {
		if err := b.Set(metaOffset, encodeOffset(s.offset.Load()), nil); err != nil {
			b.Reset()
			return fmt.Errorf("batching offset: %w", err)
		}
	}
	if err := s.callLocked(pebbleCall{commit: b}); err != nil {
		return fmt.Errorf("committing write: %w", err) // the store failed: b is Pebble's now
	}
	b.Reset()
	s.offsetDirty = false
	s.stats.commits.Add(1)
	return nil
}

// batchLimit is how large the recovery batch grows before it is committed:
// RecoveryBatchBytes, or the store's share of RecoveryMemory.
func (s *Store) batchLimit() int { return s.opts.RecoveryMemory.share(s.opts.RecoveryBatchBytes) }

// endRecoveryLocked leaves recovery (MarkRecovered, or Close before it).
func (s *Store) endRecoveryLocked() {
	if s.recovering {
		s.recovering = false
		s.freshKeys = nil
		s.opts.RecoveryMemory.leave()
	}
}

func (s *Store) maybeCommitLocked(limit int) error {
	if s.pending.Len() < limit {
		return nil
	}
	return s.commitPendingLocked()
}

// commitPendingLocked commits the recovery batch, with the latest offset.
func (s *Store) commitPendingLocked() error {
	if s.pending == nil {
		return nil
	}
	if s.offsetDirty {
		if err := s.pending.Set(metaOffset, encodeOffset(s.offset.Load()), nil); err != nil {
			return fmt.Errorf("batching offset: %w", err)
		}
	}
	if s.pending.Empty() {
		return nil
	}
	if err := s.commitBulkLocked(s.pending); err != nil {
		return fmt.Errorf("committing recovery batch: %w", err)
	}
	s.offsetDirty = false
	s.dirty.Store(false)
	s.stats.commits.Add(1)
	if n := s.pendingRecords; n > 0 && s.opts.OnRecovered != nil {
		s.opts.OnRecovered(s.topic, n)
	}
	s.pendingRecords = 0
	return nil
}

// putOffsetLocked writes the offset on its own (Close after recovery).
func (s *Store) putOffsetLocked() error {
	db, off := s.db, encodeOffset(s.offset.Load()) // the call may outlive this method (callLocked)
	if err := s.callLocked(pebbleCall{fn: func() error {
		return db.Set(metaOffset, off, pebble.NoSync)
	}}); err != nil {
		return fmt.Errorf("writing offset: %w", err)
	}
	s.offsetDirty = false
	return nil
}

// putRowLocked adds a row and its index changes to b; old values are read
// through r. It allocates nothing when no index is maintained.
func (s *Store) putRowLocked(b *pebble.Batch, r getter, key string, value []byte) error {
	if s.maintainIndexes() {
		if err := s.reindexLocked(b, r, key, value, true); err != nil {
			return err
		}
	}
	op := b.SetDeferred(1+len(key), len(value))
	op.Key[0] = spaceData
	copy(op.Key[1:], key)
	copy(op.Value, value)
	return op.Finish()
}

func (s *Store) deleteRowLocked(b *pebble.Batch, r getter, key string) error {
	if s.maintainIndexes() {
		if err := s.reindexLocked(b, r, key, nil, false); err != nil {
			return err
		}
	}
	op := b.DeleteDeferred(1 + len(key))
	op.Key[0] = spaceData
	copy(op.Key[1:], key)
	return op.Finish()
}

// maintainIndexes: index entries are kept per write (not rebuilt later).
func (s *Store) maintainIndexes() bool {
	return len(s.names) > 0 && !s.deferIndex
}

// reindexLocked reads key's old value through r and adds to b the index
// changes that replace it with value (or remove it, if !hasNew).
func (s *Store) reindexLocked(b *pebble.Batch, r getter, key string, value []byte, hasNew bool) error {
	s.keyBuf = appendDataKey(s.keyBuf[:0], key)
	old, closer, err := r.Get(s.keyBuf)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return s.indexDiff(b, key, nil, false, value, hasNew)
	case err != nil:
		return fmt.Errorf("reading old value: %w", s.failedBy(err))
	}
	if hasNew && bytes.Equal(old, value) {
		return closer.Close()
	}
	err = s.indexDiff(b, key, old, true, value, hasNew)
	return errors.Join(err, closer.Close())
}

// indexDiff adds to b, for every index, the deletion of entries only the
// old value has and the insertion of entries only the new value has.
func (s *Store) indexDiff(b *pebble.Batch, key string, old []byte, hasOld bool, value []byte, hasNew bool) error {
	for i, name := range s.names {
		var oldKeys, newKeys []string
		var err error
		if hasOld {
			if oldKeys, err = s.rowIndexKeys(i, name, key, old); err != nil {
				return err
			}
		}
		if hasNew {
			if newKeys, err = s.rowIndexKeys(i, name, key, value); err != nil {
				return err
			}
		}
		i, j := 0, 0
		for i < len(oldKeys) || j < len(newKeys) {
			switch {
			case j == len(newKeys) || (i < len(oldKeys) && oldKeys[i] < newKeys[j]):
				s.keyBuf = appendIndexKey(s.keyBuf[:0], name, oldKeys[i], key)
				if err := b.Delete(s.keyBuf, nil); err != nil {
					return fmt.Errorf("batching index delete: %w", err)
				}
				s.stats.indexDeletes.Add(1)
				i++
			case i == len(oldKeys) || newKeys[j] < oldKeys[i]:
				s.keyBuf = appendIndexKey(s.keyBuf[:0], name, newKeys[j], key)
				if err := b.Set(s.keyBuf, nil, nil); err != nil {
					return fmt.Errorf("batching index entry: %w", err)
				}
				s.stats.indexPuts.Add(1)
				j++
			default: // in both: unchanged
				i++
				j++
			}
		}
	}
	return nil
}

// indexKeys runs an indexer and returns its keys sorted, without
// duplicates, checked for zero bytes.
func indexKeys(fn Indexer, name, key string, value []byte) ([]string, error) {
	keys, err := fn(key, value)
	if err != nil {
		return nil, fmt.Errorf("index %q: %w", name, err)
	}
	for _, k := range keys {
		if strings.IndexByte(k, sep) >= 0 {
			return nil, fmt.Errorf("index %q: key %q: %w", name, k, ErrInvalidIndexKey)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// rebuildIndexesLocked drops every index entry and derives them again from
// all rows, in large unsynced batches. The last batch records the index set
// and clears the rebuild flag, so an interrupted rebuild is redone.
func (s *Store) rebuildIndexesLocked() error {
	start := time.Now()
	b := s.db.NewBatch()
	defer func() {
		if s.Failed() == nil { // else b may still be in an abandoned commit
			_ = b.Close()
		}
	}()
	// The range deletion is committed on its own, before the entries: they
	// are ingested (see ingest.go), and an sstable holds point writes only.
	if err := b.DeleteRange(indexLower, indexUpper, nil); err != nil {
		return fmt.Errorf("batching index range delete: %w", err)
	}
	if err := s.callLocked(pebbleCall{commit: b}); err != nil {
		return fmt.Errorf("committing index range delete: %w", err)
	}
	b.Reset()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	if err != nil {
		return fmt.Errorf("iterating rows for index rebuild: %w", err)
	}
	rows := 0
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return errors.Join(fmt.Errorf("reading row for index rebuild: %w", err), it.Close())
		}
		if err := s.indexDiff(b, string(it.Key()[1:]), nil, false, v, true); err != nil {
			return errors.Join(fmt.Errorf("rebuilding indexes: %w", err), it.Close())
		}
		rows++
		if b.Len() >= s.batchLimit() {
			if err := s.commitBulkLocked(b); err != nil {
				return errors.Join(fmt.Errorf("committing index rebuild: %w", err), it.Close())
			}
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("iterating rows for index rebuild: %w", err)
	}
	if err := b.Set(metaIndexSet, indexSetFingerprint(s.opts.Indexes), nil); err != nil {
		return fmt.Errorf("batching index set: %w", err)
	}
	if err := b.Delete(metaIndexRebuild, nil); err != nil {
		return fmt.Errorf("batching index rebuild flag: %w", err)
	}
	if err := s.commitBulkLocked(b); err != nil {
		return fmt.Errorf("committing index rebuild: %w", err)
	}
	s.ingestRefs = nil
	s.stats.rebuilds.Add(1)
	level := slog.LevelInfo
	if rows == 0 {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "rebuilt partition-local indexes", "indexes", s.names, "rows", rows,
		"duration", time.Since(start).Round(time.Millisecond))
	return nil
}

package state

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Bulk loads (a changelog replay into a store that does not maintain
// indexes per write, and the index rebuild that ends it) do not go through
// Pebble's memtables. A memtable is a skiplist in an arena: a random-order
// replay inserts every record into it (the dearest step of a write),
// and keeps up to MemTableStopWritesThreshold arenas of MemTableSize
// resident per partition while flushes catch up, which is where most of a
// recovering process's memory went (bench/recovery). Instead the recovery
// batch, once it holds RecoveryBatchBytes, is sorted, reduced to the last
// write of each key, written as one sstable next to the DB and ingested:
// Pebble links the file into L0 under one new sequence number, above
// everything already in the store, which is exactly the batch commit's
// semantics. Memory is the batch and its sort order; the sstable is
// written through the store's FS (so the fail-stop guard sees its writes)
// and synced before it is ingested, like a flush's.
//
// Small commits (a read during recovery, Close, MarkRecovered) still go
// through the memtable: an sstable per read would flood L0 with tiny files.

// minIngestFraction: a recovery batch of at least its limit (batchLimit)
// divided by this is ingested rather than committed.
const minIngestFraction = 4

// ingestRef is one batch entry to write: its key, value and kind, and its
// position in the batch (a later write of the same key wins).
type ingestRef struct {
	key, value []byte
	kind       pebble.InternalKeyKind
	pos        int32
}

// commitBulkLocked commits b, a batch of a bulk load: by ingesting it if it
// is large enough (and holds only point writes), else as a batch. Either
// way b is empty afterwards.
func (s *Store) commitBulkLocked(b *pebble.Batch) error {
	if !b.Indexed() && b.Len() >= s.batchLimit()/minIngestFraction {
		if ingested, err := s.ingestLocked(b); err != nil || ingested {
			return err
		}
	}
	if err := s.callLocked(pebbleCall{commit: b}); err != nil {
		return err // the store failed: b is Pebble's now
	}
	b.Reset()
	return nil
}

// ingestLocked writes b's entries into one sorted sstable, ingests it and
// resets b. It returns false, having done nothing, if b holds anything but
// point sets and deletes (the caller then commits it as a batch).
func (s *Store) ingestLocked(b *pebble.Batch) (bool, error) {
	refs := s.ingestRefs[:0]
	r := b.Reader()
	for pos := int32(0); ; pos++ {
		kind, key, value, ok, err := r.Next()
		if err != nil {
			return false, fmt.Errorf("reading recovery batch: %w", err)
		}
		if !ok {
			break
		}
		if kind != pebble.InternalKeyKindSet && kind != pebble.InternalKeyKindDelete {
			return false, nil
		}
		refs = append(refs, ingestRef{key: key, value: value, kind: kind, pos: pos})
	}
	slices.SortFunc(refs, func(a, b ingestRef) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(b.pos, a.pos) // the latest write first
	})
	s.ingestRefs = refs
	s.ingestSeq++
	db, fs := s.db, s.fs // the call may outlive this method (callLocked)
	path := fs.PathJoin(s.dir, fmt.Sprintf("bulk-%06d.sst", s.ingestSeq))
	wo := s.popts.MakeWriterOptions(0, db.TableFormat())
	f, stopAt := s.fail.Load(), s.popts.L0StopWritesThreshold
	if err := s.callLocked(pebbleCall{fn: func() error {
		s.waitForL0(db, f, stopAt)
		return writeAndIngest(db, fs, path, wo, refs)
	}}); err != nil {
		return true, fmt.Errorf("ingesting %d bulk writes: %w", len(refs), err) // the store failed: refs are Pebble's now
	}
	clear(refs) // they point into b's buffer
	b.Reset()
	s.stats.ingests.Add(1)
	return true, nil
}

// waitForL0 holds an ingestion while L0 has stopAt sublevels or more, as
// Pebble holds a batch commit (Pebble never stalls an ingestion for a deep
// L0: it would grow without bound on a disk where compactions fall behind,
// and every read after recovery would pay for it). It gives up when the
// store fails, since compactions then stop.
func (s *Store) waitForL0(db *pebble.DB, f *failure, stopAt int) {
	stalled := false
	for f.get() == nil && int(db.Metrics().Levels[0].Sublevels) >= stopAt {
		if !stalled {
			stalled = true
			s.stats.writeStalls.Add(1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeAndIngest writes refs (sorted, latest first per key) as an sstable
// at path and ingests it into db, which then owns (and removes) the file.
func writeAndIngest(db *pebble.DB, fs vfs.FS, path string, wo sstable.WriterOptions, refs []ingestRef) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	// The writable syncs the file when the writer closes it: an ingested
	// table must be as durable as a flushed one before the MANIFEST names
	// it, or a clean marker could outlive its data after a power loss.
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), wo)
	var prev []byte
	for i, ref := range refs {
		if i > 0 && bytes.Equal(ref.key, prev) {
			continue // an older write of the same key
		}
		prev = ref.key
		if ref.kind == pebble.InternalKeyKindSet {
			err = w.Set(ref.key, ref.value)
		} else {
			err = w.Delete(ref.key)
		}
		if err != nil {
			_ = w.Close()
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := db.Ingest(context.Background(), []string{path}); err != nil {
		_ = fs.Remove(path)
		return err
	}
	return nil
}

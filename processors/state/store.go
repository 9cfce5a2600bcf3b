package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lovoo/goka/storage"
)

// Errors returned by Store. Callers test them with errors.Is.
var (
	// ErrClosed is returned by every method of a store that is not open.
	ErrClosed = errors.New("state store is closed")
	// ErrUnknownIndex is returned by scans of an index not in Options.Indexes.
	ErrUnknownIndex = errors.New("unknown index")
	// ErrIndexNotReady is returned by scans while the store recovers a
	// table whose index entries are built only when recovery ends.
	ErrIndexNotReady = errors.New("index is rebuilt when recovery ends; scan after the table is recovered")
	// ErrInvalidIndexKey is returned when an Indexer yields a key with a
	// zero byte.
	ErrInvalidIndexKey = errors.New("index key must not contain a zero byte")
	// ErrIndexOnly is returned by Get, Has and the iterators of a store
	// that keeps index keys only (Options.IndexOnly).
	ErrIndexOnly = errors.New("the store keeps index keys, not rows (Options.IndexOnly): read it through its indexes")
)

// noOffset marks "no offset stored".
const noOffset = math.MinInt64

// Store is one table partition's state: a Pebble DB with the table rows,
// their secondary index entries and the Goka offset. It implements
// storage.Storage. Goka opens and closes it; stages read its indexes through
// a Registry.
//
// A store is fail-stop: once a write or flush has failed, every method
// returns an error wrapping ErrFailed (see Failed and doc.go).
//
// Concurrency: any number of readers and one writer, as Goka requires, plus
// SetOffset from Goka's producer-callback goroutine. Writes and lifecycle
// changes hold mu exclusively, reads share it. Scans and iterators hold no
// lock while the caller's code runs, so a scan callback may write to the
// store; it sees the snapshot taken when the scan started.
type Store struct {
	dir       string
	topic     string
	partition int32
	opts      Options
	names     []string // sorted index names
	log       *slog.Logger
	reg       *Registry
	cache     *pebble.Cache // shared with the builder's other stores

	mu sync.RWMutex
	db *pebble.DB
	// lock is the directory's LOCK, held from before prepareDir until the
	// DB has closed.
	lock *pebble.Lock
	// fs is Options.FS behind the store's fail-stop guard (failGuard).
	fs vfs.FS
	// calls and results talk to the worker that runs Pebble writes
	// (runCalls), so that a write stuck in Pebble cannot hold its caller.
	calls   chan pebbleCall
	results chan error
	// idle is closed when the worker has ended (after calls is closed
	// and its last call returned).
	idle chan struct{}
	// recovering is true from Open until MarkRecovered: writes go to the
	// pending batch, which is committed unsynced every RecoveryBatchBytes.
	recovering bool
	pending    *pebble.Batch
	// pendingRecords counts the changelog records in pending, for
	// Options.OnRecovered.
	pendingRecords int
	// deferIndex: index entries are not maintained per write but rebuilt
	// from all rows in MarkRecovered (empty store, changed index set, or an
	// interrupted rebuild).
	deferIndex bool
	// freshKeys, while an index-only store that was empty when it opened
	// recovers, holds the keys of the rows recovery wrote: a row without
	// index keys is then deleted only if it was written before. (Deleting
	// every row the table has but the store does not keep would leave a
	// tombstone for each: nine in ten members favourite nothing.)
	freshKeys map[string]struct{}
	// wb is the reusable batch for writes after recovery.
	wb *pebble.Batch
	// offsetDirty: offset changed since it was last put in a batch.
	offsetDirty bool
	// last is the row Get read or a write wrote last (indexed stores
	// only; see lastRow).
	last atomic.Pointer[lastRow]
	// keyBuf is the writer's scratch buffer for Pebble keys.
	keyBuf []byte
	// popts are the options the DB was opened with (sstables written for
	// ingestion use its table options); ingestRefs is the sort order of
	// the batch being ingested, kept for the next one, and ingestSeq names
	// the files (see ingest.go).
	popts      *pebble.Options
	ingestRefs []ingestRef
	ingestSeq  int

	// compactCancel and compactDone stop and await the post-recovery
	// compaction (see MarkRecovered) before the DB closes.
	compactCancel context.CancelFunc
	compactDone   chan struct{}

	// releaseRoom gives back the cache room the open DB's memtables were
	// given (see cacheroom.go).
	releaseRoom func()

	fail   atomic.Pointer[failure] // this Open's failure state
	offset atomic.Int64            // latest offset given to SetOffset, or noOffset
	dirty  atomic.Bool             // pending holds writes a reader must not miss
	stats  counters
}

var _ storage.Storage = (*Store)(nil)

func newStore(dir, topic string, partition int32, opts Options, reg *Registry, cache *pebble.Cache) *Store {
	names := make([]string, 0, len(opts.Indexes))
	for name := range opts.Indexes {
		names = append(names, name)
	}
	sort.Strings(names)
	s := &Store{
		dir:       dir,
		topic:     topic,
		partition: partition,
		opts:      opts,
		names:     names,
		log:       opts.Logger.With("topic", topic, "partition", partition),
		reg:       reg,
		cache:     cache,
	}
	s.offset.Store(noOffset)
	return s
}

// Open opens (or creates) the partition's DB. A store that was not closed
// cleanly is discarded first, so the table is restored from its changelog.
func (s *Store) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return nil
	}
	s.last.Store(nil) // of the DB before, which a crash may have discarded
	f := newFailure(s.dir, s.reportFailure)
	s.fail.Store(f)
	s.fs = guardFS{FS: s.opts.FS, g: failGuard{f}}
	if err := s.fs.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("creating store directory: %w", err)
	}
	// Lock the directory before judging its contents: a store that is
	// still open, or still closing after a failure, in this process or
	// another, must not be discarded under it.
	lock, err := pebble.LockDirectory(s.dir, s.fs)
	if err != nil {
		return fmt.Errorf("locking store directory %s: %w", s.dir, err)
	}
	if err := s.prepareDir(); err != nil {
		return errors.Join(err, lock.Close())
	}
	if err := s.checkLayout(); err != nil {
		return errors.Join(err, lock.Close())
	}
	o := s.pebbleOptions(s.cache, f)
	o.Lock = lock
	s.popts = o
	db, err := pebble.Open(s.dir, o)
	if err != nil {
		return errors.Join(fmt.Errorf("opening pebble store %s: %w", s.dir, err), lock.Close())
	}
	s.db, s.lock = db, lock
	s.releaseRoom = growCache(s.cache, memtableRoom(s.opts))
	s.calls, s.results, s.idle = make(chan pebbleCall), make(chan error, 1), make(chan struct{})
	go func(calls <-chan pebbleCall, results chan<- error, idle chan<- struct{}) {
		runCalls(calls, results)
		close(idle)
	}(s.calls, s.results, s.idle)
	if err := s.loadMeta(); err != nil {
		return errors.Join(err, s.closeDBLocked())
	}
	s.recovering = true
	s.opts.RecoveryMemory.join()
	s.pendingRecords = 0
	// The batch grows to what the store's share of RecoveryMemory lets it
	// hold (batchLimit), not to RecoveryBatchBytes at once.
	if len(s.names) > 0 && !s.deferIndex {
		// Index maintenance reads old values, which may still be in the
		// pending batch: only an indexed batch can answer that.
		s.pending = db.NewIndexedBatch()
	} else {
		s.pending = db.NewBatch(pebble.WithMaxRetainedSizeBytes(2 * s.opts.RecoveryBatchBytes))
	}
	s.reg.register(s)
	return nil
}

// prepareDir consumes the clean-shutdown marker and discards the contents
// of a store that was not closed cleanly.
func (s *Store) prepareDir() error {
	clean, err := markerExists(s.fs, s.dir)
	if err != nil {
		return err
	}
	if clean {
		// Remove it before the first write: from now on the directory is
		// "in use" until Close writes the marker again.
		return removeMarker(s.fs, s.dir)
	}
	empty, err := isEmptyDir(s.fs, s.dir)
	if err != nil || empty {
		return err
	}
	s.log.Warn("state store was not closed cleanly; discarding it to restore the table from its changelog",
		"dir", s.dir)
	s.stats.discards.Add(1)
	return clearDir(s.fs, s.dir)
}

// loadMeta reads the offset and decides how indexes are kept during recovery.
func (s *Store) loadMeta() error {
	if v, ok, err := s.getMeta(metaOffset); err != nil {
		return err
	} else if ok {
		off, valid := decodeOffset(v)
		if !valid {
			return fmt.Errorf("decoding stored offset %x: invalid length", v)
		}
		s.offset.Store(off)
	}
	fresh, err := s.isEmpty()
	if err != nil {
		return err
	}
	storedSet, _, err := s.getMeta(metaIndexSet)
	if err != nil {
		return err
	}
	_, rebuilding, err := s.getMeta(metaIndexRebuild)
	if err != nil {
		return err
	}
	fp := indexSetFingerprint(s.opts.Indexes)
	changed := !fresh && !bytes.Equal(storedSet, fp)
	s.freshKeys = nil
	if s.opts.IndexOnly && fresh {
		s.freshKeys = map[string]struct{}{}
	}
	s.deferIndex = rebuilding || changed || (fresh && len(s.names) > 0)
	if changed {
		s.log.Info("index set changed; indexes are rebuilt when recovery ends",
			"was", string(bytes.ReplaceAll(storedSet, []byte{0}, []byte(","))), "now", s.names)
	}
	if s.deferIndex && !rebuilding {
		// Persist the decision: if this store is closed before recovery
		// ends, the next Open still knows the index entries are incomplete.
		db := s.db // the call may outlive this method (callLocked)
		if err := s.callLocked(pebbleCall{fn: func() error {
			return db.Set(metaIndexRebuild, nil, pebble.NoSync)
		}}); err != nil {
			return fmt.Errorf("marking index rebuild: %w", err)
		}
	}
	return nil
}

func (s *Store) getMeta(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %q: %w", key[1:], err)
	}
	out := bytes.Clone(v)
	return out, true, closer.Close()
}

// isEmpty reports whether the DB holds no key at all.
func (s *Store) isEmpty() (bool, error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return false, fmt.Errorf("checking for an empty store: %w", err)
	}
	empty := !it.First()
	return empty, it.Close()
}

// Close commits what is pending, flushes everything to sstables, closes
// the DB and only then writes the clean-shutdown marker. If any step fails
// the marker is not written and the next Open discards the store.
//
// A failed store (see Failed) is closed without a flush and never marked
// clean; Close returns its failure. Pebble's own Close then gets at most
// Options.CloseTimeout (see closeDBLocked).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	s.last.Store(nil)
	s.reg.unregister(s)
	err := s.Failed()
	if err == nil {
		err = s.commitPendingLocked()
	}
	if err == nil && s.offsetDirty {
		err = s.putOffsetLocked()
	}
	if err == nil {
		// The WAL is disabled: only flushed memtables survive Close.
		if ferr := s.callLocked(pebbleCall{fn: s.db.Flush}); ferr != nil {
			err = fmt.Errorf("flushing store: %w", ferr)
		}
	}
	err = errors.Join(err, s.closeDBLocked())
	if ferr := s.Failed(); ferr != nil && !errors.Is(err, ErrFailed) {
		err = errors.Join(ferr, err) // failed while closing
	}
	if err != nil {
		return err
	}
	return writeMarker(s.fs, s.dir)
}

// closeDBLocked stops the post-recovery compaction and closes the batches,
// the worker and the DB. A healthy DB closes in the time Pebble needs. A
// failed one normally closes within about failedWriteDelay (its flushes
// and the commits stalled behind them end once its writes are skipped, see
// failGuard), but DB.Close waits for every job in progress, and a file
// operation can hang instead of failing (a dead disk or NFS server). So
// once the store has failed, closeDBLocked waits at most CloseTimeout and
// then returns with Pebble still closing on a leaked goroutine (holding
// the directory's LOCK, its memory and files) until the process exits,
// which a failed store's owner is expected to do.
func (s *Store) closeDBLocked() error {
	f := s.fail.Load()
	db, lock, batches, idle := s.db, s.lock, []*pebble.Batch{s.pending, s.wb}, s.idle
	cancel, compactDone, releaseRoom := s.compactCancel, s.compactDone, s.releaseRoom
	// A failed store's batches may still be in a commit its caller stopped
	// waiting for (callLocked): leave them to the garbage collector.
	failed := f.get() != nil
	s.endRecoveryLocked() // closed before it recovered: its share goes to the others
	s.db, s.lock, s.pending, s.wb = nil, nil, nil, nil
	s.ingestRefs = nil // a failed store's worker may still be sorting with it
	s.compactCancel, s.compactDone, s.releaseRoom = nil, nil, nil
	s.dirty.Store(false)
	close(s.calls) // the worker ends once it is idle
	done := make(chan error, 1)
	go func() {
		if cancel != nil {
			// Pebble panics on a compaction of a closed DB.
			cancel()
			<-compactDone
		}
		// A failed store's worker may still be in a commit its caller
		// stopped waiting for. Pebble must not be closed under a commit
		// that is applying its batch to a memtable (DB.Close frees the
		// memtable: a test died of SIGSEGV in the skiplist that way), so
		// wait for the worker; one stalled behind a flush that only
		// DB.Close ends waits inside Pebble's stall, which DB.Close ends
		// with ErrClosed (runCall turns that into an error), and is let go
		// after workerDrain.
		select {
		case <-idle:
		case <-time.After(workerDrain):
		}
		var err error
		for _, b := range batches {
			if b != nil && !failed {
				err = errors.Join(err, b.Close())
			}
		}
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing pebble store: %w", cerr))
		}
		releaseRoom() // after Close has freed the memtables
		done <- errors.Join(err, lock.Close())
	}()
	select {
	case err := <-done:
		return err
	case <-f.done:
	}
	timer := time.NewTimer(s.opts.CloseTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("closing pebble store: gave up after %v; it goes on closing in the background", s.opts.CloseTimeout)
	}
}

// usableLocked returns ErrClosed for a store that is not open and the
// failure of a failed one: a failed store touches Pebble no more, for
// reads either (they could miss the writes that failed).
func (s *Store) usableLocked() error {
	if s.db == nil {
		return ErrClosed
	}
	return s.Failed()
}

// Topic and Partition name the table partition the store holds.
func (s *Store) Topic() string    { return s.topic }
func (s *Store) Partition() int32 { return s.partition }

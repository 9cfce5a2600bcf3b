package state

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ErrFailed is wrapped, together with its cause, by the error every method
// of a failed store returns: one of its writes or flushes failed (disk
// full, read-only, directory gone, I/O error), so it no longer holds what
// the changelog says. Such a store is fail-stop: it accepts no further
// writes, is never marked clean, and the next Open restores the table from
// its changelog. See Store.Failed and Options.OnFailure.
var ErrFailed = errors.New("state store failed")

// failedWriteDelay is how long a failed store's FS makes each file create
// and open wait. Pebble retries a failed flush or compaction at once and
// forever (compaction.go: "TODO(peter): count consecutive flush errors and
// backoff"), as does its table stats loader a file it cannot open; on main
// that loop took a whole core and wrote 471k log lines. Every round of such
// a loop creates or opens a file, so none can run more than a few times a
// second, while Pebble's Close, which waits for the job in progress, still
// finishes in about this long.
const failedWriteDelay = 100 * time.Millisecond

// workerDrain bounds how long closing a store waits for its worker to
// finish the call in progress before it closes Pebble anyway: far longer
// than a commit takes, short against CloseTimeout.
const workerDrain = time.Second

// failure is the failed state of one open store (one per Open).
type failure struct {
	dir    string
	done   chan struct{} // closed when the store fails
	err    error         // set before done is closed
	once   sync.Once
	report func(error) // called once, with err
}

func newFailure(dir string, report func(error)) *failure {
	return &failure{dir: dir, done: make(chan struct{}), report: report}
}

// fail records the first failure; later ones are ignored.
func (f *failure) fail(cause error) {
	f.once.Do(func() {
		f.err = fmt.Errorf("%w (%s): %w", ErrFailed, f.dir, cause)
		close(f.done)
		f.report(f.err)
	})
}

// get returns the failure, or nil while the store is healthy.
func (f *failure) get() error {
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}

// failGuard makes the store's FS fail-stop: the first write-side error
// fails the store (before Pebble even reports it), and from then on no
// write reaches the disk, even if the disk heals: nothing written after a
// lost write can be trusted, and the CLEAN marker must never appear.
//
// Those later writes are skipped, reported done, rather than failed,
// because that is what lets Pebble stop. Pebble cannot abandon a flush: a
// failed one is retried forever, and every commit stalled behind it
// (memtables full) waits forever with it, holding the commit pipeline,
// which DB.Close needs. A flush that "succeeds" into nothing ends the stall
// and the retries, and DB.Close finishes. It loses nothing that was not
// lost already: the store serves no reads once failed, and its directory,
// which has no CLEAN marker, is discarded at the next Open. Creates and
// opens wait failedWriteDelay first, and opens fail (a failed store serves
// no reads, and Pebble cannot read what was skipped), so that no retry
// loop of Pebble's can spin.
type failGuard struct{ f *failure }

func (g failGuard) before(op, name string) (skip bool, err error) {
	if g.f.get() == nil {
		return false, nil
	}
	if op == "create" {
		time.Sleep(failedWriteDelay)
	}
	return true, nil
}

func (g failGuard) beforeOpen(name string) error {
	if g.f.get() == nil {
		return nil
	}
	time.Sleep(failedWriteDelay)
	return &fs.PathError{Op: "open", Path: name, Err: ErrFailed} // the cause is in Failed
}

func (g failGuard) after(op, name string, err error) error {
	// Removing what is already gone is routine (Pebble's obsolete files,
	// the marker); everything else that fails is a failed write.
	if err != nil && !(op == "remove" && errors.Is(err, fs.ErrNotExist)) {
		g.f.fail(err)
	}
	return err
}

// Failed returns nil while the store is healthy, and once one of its writes
// or flushes has failed, that failure: an error wrapping ErrFailed and the
// cause. It stays set after Close, until the store is opened again.
func (s *Store) Failed() error { return s.fail.Load().get() }

// reportFailure logs the failure and tells the owner (Options.OnFailure)
// on its own goroutine: fail may run inside Pebble with its locks held, and
// the owner will want to stop the stage, which closes this store.
func (s *Store) reportFailure(err error) {
	s.log.Error("state store failed; it takes no more writes and is restored from the changelog at the next start",
		"dir", s.dir, "err", err)
	if fn := s.opts.OnFailure; fn != nil {
		go fn(s.topic, s.partition, err)
	}
}

// backgroundError is Pebble's EventListener.BackgroundError: a flush,
// compaction or other background job failed. Pebble only retries, so this
// is where the store learns of it; the retries are logged at debug level.
func (s *Store) backgroundError(f *failure) func(error) {
	return func(err error) {
		if f.get() != nil {
			s.log.Debug("pebble background error on a failed store", "dir", s.dir, "err", err)
			return
		}
		f.fail(fmt.Errorf("pebble background error: %w", err))
	}
}

// dataCorruption is Pebble's EventListener.DataCorruption, called when a
// read finds an sstable damaged or missing (as after the directory was
// removed). Pebble's default handler exits the process; failing the store
// instead stops only its stage, and the next Open, finding no CLEAN marker,
// restores the table from its changelog: what a restart would do.
func (s *Store) dataCorruption(f *failure) func(pebble.DataCorruptionInfo) {
	return func(info pebble.DataCorruptionInfo) {
		f.fail(fmt.Errorf("pebble found on-disk corruption in %s: %w", info.Path, info.Details))
	}
}

// pebbleCall is one Pebble write the worker runs for the writer: a batch
// commit (the hot path, which allocates nothing) or any other call.
type pebbleCall struct {
	commit *pebble.Batch
	fn     func() error
}

// runCalls is the store's worker. Every Pebble call that may wait for a
// flush runs here, not on the caller's goroutine: a commit that meets a
// write stall (memtables full, or L0 too deep) waits inside Pebble, with
// its commit pipeline locked, until a flush or compaction succeeds, and
// DB.Flush waits for the flush itself. When the disk is full that flush
// ends only once the failed store's guard skips its writes (failGuard),
// after a retry or two, or never if a file operation hangs; the caller must
// get its error at once. So the caller waits for the result or for the
// store to fail, whichever comes first (callLocked).
//
// A failed store's Close does not wait for the worker (its call may be a
// flush that only DB.Close ends), so a call can reach Pebble after DB.Close,
// where Pebble panics with ErrClosed: the worker turns that into the call's
// error, which nobody is waiting for any more.
func runCalls(calls <-chan pebbleCall, results chan<- error) {
	for c := range calls {
		results <- runCall(c)
	}
}

func runCall(c pebbleCall) (err error) {
	defer func() {
		if r := recover(); r != nil {
			rerr, ok := r.(error)
			if !ok || !errors.Is(rerr, pebble.ErrClosed) {
				panic(r)
			}
			err = rerr
		}
	}()
	if c.commit != nil {
		return c.commit.Commit(pebble.NoSync)
	}
	return c.fn()
}

// failedBy fails the store with err, an error from Pebble (which fails only
// on I/O errors and corruption), and returns the store's failure: the first
// one, which wraps ErrFailed.
func (s *Store) failedBy(err error) error {
	f := s.fail.Load()
	f.fail(err)
	return f.get()
}

// callLocked runs c on the worker and returns its error, or the store's
// failure as soon as the store fails. Any error from Pebble fails the
// store. A call the caller stopped waiting for stays with Pebble, and with
// it the batch it commits: that is why, once the store has failed, no
// method touches a batch or the DB again (Close only closes the DB, and
// only for a bounded time).
func (s *Store) callLocked(c pebbleCall) error {
	f := s.fail.Load()
	if err := f.get(); err != nil {
		return err
	}
	s.calls <- c
	select {
	case err := <-s.results:
		if err != nil {
			return s.failedBy(err)
		}
		return nil
	case <-f.done:
		return f.err
	}
}

// Fail marks the store failed with err from outside: its owner learned
// that the store no longer matches its changelog (a changelog write of a
// row it holds failed), so it must not be trusted after this process —
// its Close writes no CLEAN marker, and the next Open restores the table
// from the changelog. OnFailure is called as for a failed write.
func (s *Store) Fail(err error) {
	if f := s.fail.Load(); f != nil {
		f.fail(err)
	}
}

package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// failureRecorder is an Options.OnFailure that remembers its calls.
type failureRecorder struct {
	mu        sync.Mutex
	calls     []error
	topic     string
	partition int32
}

func (r *failureRecorder) onFailure(topic string, partition int32, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, err)
	r.topic, r.partition = topic, partition
}

func (r *failureRecorder) get() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.calls...)
}

// failingOptions: small memtables and batches, so a few hundred rows make
// Pebble flush.
func failingOptions(t *testing.T, fsys vfs.FS, rec *failureRecorder) Options {
	o := testOptions(t)
	o.FS = fsys
	o.MemTableSize = 256 << 10
	o.RecoveryBatchBytes = 32 << 10
	o.OnFailure = rec.onFailure
	return o
}

var value1k = []byte("fav=item-1;" + strings.Repeat("x", 1000))

// writeUntilFailed writes rows until a write fails and returns its error.
// (It may run on another goroutine, so it reports instead of failing.)
func writeUntilFailed(st *Store, prefix string) error {
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if err := st.Set(fmt.Sprintf("%s%06d", prefix, i), value1k); err != nil {
			return err
		}
		if err := st.SetOffset(int64(i)); err != nil {
			return err
		}
	}
	return errors.New("writes did not fail")
}

// checkFailed asserts that err and every method of st report the failure
// with its cause, and that OnFailure was called exactly once.
func checkFailed(t *testing.T, st *Store, rec *failureRecorder, err, cause error) {
	t.Helper()
	if !errors.Is(err, ErrFailed) || !errors.Is(err, cause) {
		t.Fatalf("write error = %v; want ErrFailed and %v", err, cause)
	}
	if f := st.Failed(); !errors.Is(f, ErrFailed) || !errors.Is(f, cause) {
		t.Fatalf("Failed() = %v; want ErrFailed and %v", f, cause)
	}
	for name, call := range map[string]func() error{
		"Set":           func() error { return st.Set("k", []byte("v")) },
		"Delete":        func() error { return st.Delete("k") },
		"SetOffset":     func() error { return st.SetOffset(1) },
		"MarkRecovered": st.MarkRecovered,
		"Get":           func() error { _, err := st.Get("k"); return err },
		"GetOffset":     func() error { _, err := st.GetOffset(0); return err },
		"Iterator":      func() error { _, err := st.Iterator(); return err },
		"Lookup":        func() error { return st.Lookup("fav", "item-1", func(string) error { return nil }) },
	} {
		if err := call(); !errors.Is(err, ErrFailed) || !errors.Is(err, cause) {
			t.Errorf("%s on a failed store = %v; want ErrFailed and %v", name, err, cause)
		}
	}
	waitFor(t, "OnFailure", func() bool { return len(rec.get()) > 0 })
	if calls := rec.get(); len(calls) != 1 || !errors.Is(calls[0], ErrFailed) || !errors.Is(calls[0], cause) {
		t.Fatalf("OnFailure calls = %v; want one, with ErrFailed and %v", calls, cause)
	}
}

// TestFailedStore injects write errors into a store's FS: the write or the
// Close that meets the failed flush fails the store, which then refuses
// everything, closes with an error and without the CLEAN marker, and is
// discarded by the next Open once the disk is fine again.
func TestFailedStore(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO, syscall.EROFS} {
		for _, mode := range []string{"recovering", "recovered"} {
			for _, trigger := range []string{"writes", "close"} {
				t.Run(fmt.Sprintf("%s/%s/%s", errno, mode, trigger), func(t *testing.T) {
					testFailedStore(t, errno, mode == "recovered", trigger)
				})
			}
		}
	}
}

func testFailedStore(t *testing.T, errno syscall.Errno, recovered bool, trigger string) {
	dir := t.TempDir()
	ffs := NewFaultFS(vfs.Default)
	rec := &failureRecorder{}
	opts := failingOptions(t, ffs, rec)
	st, err := New(dir, opts)
	must(t, err)
	must(t, st.Open())
	if recovered {
		must(t, st.MarkRecovered())
	}
	for i := range 100 {
		must(t, st.Set(fmt.Sprintf("before%03d", i), value1k))
		must(t, st.SetOffset(int64(i)))
	}
	if st.Failed() != nil {
		t.Fatalf("healthy store: Failed() = %v", st.Failed())
	}

	ffs.Fail(errno)
	if trigger == "writes" {
		checkFailed(t, st, rec, writeUntilFailed(st, "after"), errno)
	}
	err = st.Close()
	if !errors.Is(err, ErrFailed) || !errors.Is(err, errno) {
		t.Fatalf("Close = %v; want ErrFailed and %v", err, errno)
	}
	waitFor(t, "OnFailure", func() bool { return len(rec.get()) > 0 })
	if err := st.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	if !errors.Is(st.Failed(), errno) {
		t.Fatalf("Failed() after Close = %v; want %v", st.Failed(), errno)
	}

	ffs.Heal()
	if ok, err := markerExists(vfs.Default, dir); err != nil || ok {
		t.Fatalf("CLEAN marker after a failed Close: %v, %v; want none", ok, err)
	}
	if n := len(rec.get()); n != 1 {
		t.Fatalf("OnFailure called %d times, want once", n)
	}
	st = reopen(t, dir, opts)
	if d := st.Stats().Discards; d != 1 {
		t.Fatalf("reopened after failure: Discards = %d, want 1", d)
	}
	if off, err := st.GetOffset(-1); err != nil || off != -1 {
		t.Fatalf("reopened after failure: GetOffset = %d, %v; want the default", off, err)
	}
	if v, err := st.Get("before000"); err != nil || v != nil {
		t.Fatalf("reopened after failure: Get = %q, %v; want no row", v, err)
	}
	must(t, st.MarkRecovered())
	must(t, st.Set("k", []byte("fav=a")))
	if st.Failed() != nil {
		t.Fatalf("reopened store: Failed() = %v", st.Failed())
	}
}

// reopen opens a new store in dir, waiting while the last one's Pebble may
// still be closing in the background (its LOCK held).
func reopen(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	st, err := New(dir, opts)
	must(t, err)
	waitFor(t, "the store to open again", func() bool {
		err = st.Open()
		return err == nil
	})
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// gateFS holds every sstable create until open is closed: flushes hang,
// so writes pile up in memtables until Pebble stalls them.
type gateFS struct {
	vfs.FS
	open    chan struct{}
	waiting *atomic.Int32 // creates held
}

func newGateFS(base vfs.FS) gateFS {
	return gateFS{FS: base, open: make(chan struct{}), waiting: new(atomic.Int32)}
}

func (g gateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasSuffix(name, ".sst") {
		g.waiting.Add(1)
		<-g.open
	}
	return g.FS.Create(name, c)
}

// TestWriteStallThenDiskFull: a write stalled by Pebble (memtables full,
// flush in progress; during recovery, its ingested sstable being written)
// when the flush fails with ENOSPC must still return,
// and so must Close, and the directory can be opened again.
func TestWriteStallThenDiskFull(t *testing.T) {
	for _, recovered := range []bool{false, true} {
		t.Run(fmt.Sprintf("recovered=%v", recovered), func(t *testing.T) {
			ffs := NewFaultFS(vfs.NewMem())
			gate := newGateFS(ffs)
			rec := &failureRecorder{}
			opts := failingOptions(t, gate, rec)
			st, err := New("/stall", opts)
			must(t, err)
			must(t, st.Open())
			if recovered {
				must(t, st.MarkRecovered())
			}
			done := make(chan error, 1)
			go func() { done <- writeUntilFailed(st, "r") }()
			if recovered {
				waitFor(t, "a write stall", func() bool { return st.Stats().WriteStalls > 0 })
			} else {
				// Recovery writes bypass the memtables (they are ingested
				// as sstables, see ingest.go), so they never stall on
				// them: the write is held inside its sstable's create.
				waitFor(t, "a recovery write held in its sstable", func() bool { return gate.waiting.Load() > 0 })
			}

			ffs.Fail(syscall.ENOSPC)
			close(gate.open)
			werr := recv(t, "the stalled write to return", done)
			checkFailed(t, st, rec, werr, syscall.ENOSPC)

			closed := make(chan error, 1)
			go func() { closed <- st.Close() }()
			cerr := recv(t, "Close to return", closed)
			if !errors.Is(cerr, ErrFailed) || !errors.Is(cerr, syscall.ENOSPC) {
				t.Fatalf("Close = %v; want ErrFailed and ENOSPC", cerr)
			}
			if ok, err := markerExists(ffs, "/stall"); err != nil || ok {
				t.Fatalf("CLEAN marker after a failed Close: %v, %v; want none", ok, err)
			}
			// The stall ended (the failed store's flush went nowhere), so
			// Pebble closed and released the directory: it opens again,
			// discarded.
			ffs.Heal()
			st = reopen(t, "/stall", opts)
			if d := st.Stats().Discards; d != 1 {
				t.Fatalf("reopened after failure: Discards = %d, want 1", d)
			}
		})
	}
}

// TestRemovedDirectoryFailsStore: the store directory removed under a
// running store (the failure measured on main: endless flush retries)
// fails it at the next flush; OnFailure names the partition.
func TestRemovedDirectoryFailsStore(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "table", "3")
	rec := &failureRecorder{}
	opts := failingOptions(t, nil, rec)
	reg := NewRegistry()
	build, err := Builder(root, opts, reg)
	must(t, err)
	storage, err := build("table", 3)
	must(t, err)
	st := storage.(*Store)
	must(t, st.Open())
	must(t, st.MarkRecovered())
	must(t, st.Set("k", value1k))
	// Pebble may be writing a file meanwhile ("directory not empty").
	waitFor(t, "the store directory removed", func() bool { return os.RemoveAll(dir) == nil })
	checkFailed(t, st, rec, writeUntilFailed(st, "r"), fs.ErrNotExist)
	if rec.topic != "table" || rec.partition != 3 {
		t.Fatalf("OnFailure(%q, %d), want (table, 3)", rec.topic, rec.partition)
	}
	if reg.Store("table", 3) != st {
		t.Fatal("a failed store left the registry before Close")
	}
	if err := st.Close(); !errors.Is(err, ErrFailed) {
		t.Fatalf("Close = %v; want ErrFailed", err)
	}
	if ok, _ := markerExists(vfs.Default, dir); ok {
		t.Fatal("CLEAN marker written by a failed store")
	}
	st = reopen(t, dir, opts)
	if off, err := st.GetOffset(-1); err != nil || off != -1 {
		t.Fatalf("reopened: GetOffset = %d, %v; want the default", off, err)
	}
}

// TestFaultFS: armed, every write-side operation fails with the error, on
// new and already open files; reads keep working; Heal restores writes.
func TestFaultFS(t *testing.T) {
	ffs := NewFaultFS(vfs.NewMem())
	must(t, ffs.MkdirAll("/d", 0o755))
	f, err := ffs.Create("/d/a", vfs.WriteCategoryUnspecified)
	must(t, err)
	_, err = f.Write([]byte("hello"))
	must(t, err)

	ffs.Fail(syscall.EIO)
	var pe *fs.PathError
	for name, op := range map[string]func() error{
		"write":  func() error { _, err := f.Write([]byte("x")); return err },
		"sync":   f.Sync,
		"create": func() error { _, err := ffs.Create("/d/b", vfs.WriteCategoryUnspecified); return err },
		"rename": func() error { return ffs.Rename("/d/a", "/d/c") },
		"remove": func() error { return ffs.Remove("/d/a") },
		"link":   func() error { return ffs.Link("/d/a", "/d/l") },
		"mkdir":  func() error { return ffs.MkdirAll("/e", 0o755) },
		"dirsync": func() error {
			d, err := ffs.OpenDir("/d")
			must(t, err)
			defer d.Close()
			return d.Sync()
		},
	} {
		if err := op(); !errors.Is(err, syscall.EIO) || !errors.As(err, &pe) {
			t.Errorf("%s on an armed FaultFS = %v; want a PathError with EIO", name, err)
		}
	}
	if _, err := ffs.Stat("/d/a"); err != nil {
		t.Fatalf("Stat on an armed FaultFS: %v", err)
	}
	r, err := ffs.Open("/d/a")
	must(t, err)
	buf := make([]byte, 5)
	if _, err := r.ReadAt(buf, 0); err != nil || string(buf) != "hello" {
		t.Fatalf("read on an armed FaultFS = %q, %v", buf, err)
	}
	must(t, r.Close())

	ffs.Heal()
	_, err = f.Write([]byte("!"))
	must(t, err)
	must(t, f.Close())
	_, err = ffs.Create("/d/b", vfs.WriteCategoryUnspecified)
	must(t, err)
}

// TestFailGuard: the first write error fails the store; removing what is
// already gone does not; after the failure writes are skipped (reported
// done, not done) even once the disk is fine, and opens fail.
func TestFailGuard(t *testing.T) {
	var reported atomic.Int32
	f := newFailure("/d", func(error) { reported.Add(1) })
	ffs := NewFaultFS(vfs.NewMem())
	g := guardFS{FS: ffs, g: failGuard{f}}
	must(t, g.MkdirAll("/d", 0o755))
	if err := g.Remove("/d/missing"); !errors.Is(err, fs.ErrNotExist) || f.get() != nil {
		t.Fatalf("Remove(missing) = %v, failure %v; want ErrNotExist and no failure", err, f.get())
	}
	ffs.Fail(syscall.ENOSPC)
	if _, err := g.Create("/d/a", vfs.WriteCategoryUnspecified); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Create = %v; want ENOSPC", err)
	}
	if err := f.get(); !errors.Is(err, ErrFailed) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("failure = %v; want ErrFailed and ENOSPC", err)
	}
	ffs.Heal()
	f2, err := g.Create("/d/a", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatalf("Create on a failed store's FS = %v; want it skipped", err)
	}
	if _, err := f2.Write([]byte("x")); err != nil {
		t.Fatalf("Write to a skipped file = %v; want it skipped", err)
	}
	must(t, f2.Sync())
	must(t, f2.Close())
	must(t, g.Rename("/d/a", "/d/b"))
	for _, name := range []string{"/d/a", "/d/b"} {
		if _, err := ffs.Stat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a failed store's write reached the FS: Stat(%s) = %v", name, err)
		}
	}
	if _, err := g.Open("/d"); !errors.Is(err, ErrFailed) {
		t.Fatalf("Open on a failed store's FS = %v; want ErrFailed", err)
	}
	if n := reported.Load(); n != 1 {
		t.Fatalf("failure reported %d times, want once", n)
	}
}

// TestCloseTimeout: a failed store whose Pebble cannot close (a flush hangs
// in the FS instead of failing) is closed with an error after CloseTimeout;
// Pebble finishes closing in the background once the FS lets go.
func TestCloseTimeout(t *testing.T) {
	gate := newGateFS(vfs.NewMem())
	rec := &failureRecorder{}
	opts := failingOptions(t, gate, rec)
	opts.CloseTimeout = 10 * time.Millisecond // the flush below never ends by itself
	st, err := New("/hang", opts)
	must(t, err)
	must(t, st.Open())
	must(t, st.MarkRecovered())
	// The writes may stall behind the held flush, so they run aside.
	done := make(chan error, 1)
	go func() { done <- writeUntilFailed(st, "r") }()
	waitFor(t, "a flush held in the FS", func() bool { return gate.waiting.Load() > 0 })
	// An I/O error elsewhere, reported by Pebble, fails the store.
	st.backgroundError(st.fail.Load())(syscall.EIO)
	werr := recv(t, "the writes to fail", done)
	if !errors.Is(werr, ErrFailed) || !errors.Is(werr, syscall.EIO) {
		t.Fatalf("write error = %v; want ErrFailed and EIO", werr)
	}
	closed := make(chan error, 1)
	go func() { closed <- st.Close() }()
	cerr := recv(t, "Close to return", closed)
	if !errors.Is(cerr, ErrFailed) || !errors.Is(cerr, syscall.EIO) || !strings.Contains(cerr.Error(), "gave up") {
		t.Fatalf("Close = %v; want ErrFailed, EIO and giving up on Pebble", cerr)
	}
	close(gate.open)
	st = reopen(t, "/hang", opts)
	if d := st.Stats().Discards; d != 1 {
		t.Fatalf("reopened: Discards = %d, want 1", d)
	}
}

// recv waits, within waitFor's deadline, for the error ch delivers.
func recv(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	var err error
	waitFor(t, what, func() bool {
		select {
		case err = <-ch:
			return true
		default:
			return false
		}
	})
	return err
}

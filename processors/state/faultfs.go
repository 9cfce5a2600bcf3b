package state

import (
	"io/fs"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FaultFS is a vfs.FS for tests and chaos runs that fails writes on demand.
// Once armed with Fail, every write-side operation (create, write, sync,
// rename, remove, link, mkdir, preallocate, on files opened before or after
// arming) fails at once with the given error, wrapped in an *fs.PathError as
// the OS would, so errors.Is(err, syscall.ENOSPC) holds; reads go on
// working, as on a full or read-only disk. Heal disarms it.
//
// Pass it as Options.FS:
//
//	ffs := state.NewFaultFS(vfs.Default)
//	builder, err := state.Builder(root, state.Options{FS: ffs}, reg)
//	...
//	ffs.Fail(syscall.ENOSPC) // the stores fail: writes return ErrFailed
//
// A FaultFS is safe for concurrent use.
type FaultFS struct {
	guardFS
	err atomic.Pointer[error]
	// hung, while not nil, is a channel every write-side operation waits
	// on until Heal closes it: a disk (or NFS server) that stops answering.
	hung atomic.Pointer[chan struct{}]
}

// NewFaultFS returns a healed FaultFS over base (vfs.Default if nil).
func NewFaultFS(base vfs.FS) *FaultFS {
	if base == nil {
		base = vfs.Default
	}
	f := &FaultFS{}
	f.guardFS = guardFS{FS: base, g: f}
	return f
}

// Fail arms the FS: from now on every write-side operation fails with err
// (e.g. syscall.ENOSPC, syscall.EIO, syscall.EROFS). A nil err heals it.
func (f *FaultFS) Fail(err error) {
	if err == nil {
		f.Heal()
		return
	}
	f.err.Store(&err)
}

// Hang makes every write-side operation block until Heal, as a disk that
// stops answering does: nothing fails, so nothing is detected, and a
// store's Close waits on its flush (the process's shutdown_timeout is what
// bounds that).
func (f *FaultFS) Hang() {
	ch := make(chan struct{})
	f.hung.CompareAndSwap(nil, &ch)
}

// Heal disarms the FS: operations reach the underlying FS again.
func (f *FaultFS) Heal() {
	f.err.Store(nil)
	if ch := f.hung.Swap(nil); ch != nil {
		close(*ch)
	}
}

func (f *FaultFS) before(op, name string) (bool, error) {
	if ch := f.hung.Load(); ch != nil {
		<-*ch
	}
	if p := f.err.Load(); p != nil {
		return false, &fs.PathError{Op: op, Path: name, Err: *p}
	}
	return false, nil
}

func (f *FaultFS) after(_, _ string, err error) error { return err }

func (f *FaultFS) beforeOpen(string) error { return nil }

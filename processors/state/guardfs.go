package state

import (
	"io/fs"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// writeGuard decides about the write-side operations of a guardFS. before
// is asked first: it may fail the operation (err) or skip it (reported
// done, not done). after sees the outcome of each operation that was done
// and returns the error to report. beforeOpen may fail the opening of a
// file for reading.
type writeGuard interface {
	before(op, name string) (skip bool, err error)
	after(op, name string, err error) error
	beforeOpen(name string) error
}

// guardFS passes every write-side operation of an FS (create, link, rename,
// remove, mkdir, ...) and of the files it opens for writing (write, sync,
// preallocate) through a writeGuard. Reads go straight through but for
// opening a file: they do not need space and a failing disk shows itself on
// writes first. Both the store's fail-stop FS and FaultFS are built on it,
// so they agree on what a write is.
type guardFS struct {
	vfs.FS
	g writeGuard
}

func (fs guardFS) Unwrap() vfs.FS { return fs.FS }

func (fs guardFS) do(op, name string, fn func() error) error {
	if skip, err := fs.g.before(op, name); skip || err != nil {
		return err
	}
	return fs.g.after(op, name, fn())
}

func (fs guardFS) file(op, name string, open func() (vfs.File, error)) (vfs.File, error) {
	skip, err := fs.g.before(op, name)
	if err != nil {
		return nil, err
	}
	if skip {
		return discardFile{name}, nil
	}
	f, err := open()
	if err = fs.g.after(op, name, err); err != nil {
		if f != nil {
			_ = f.Close()
		}
		return nil, err
	}
	return guardFile{File: f, g: fs.g, name: name}, nil
}

func (fs guardFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.file("create", name, func() (vfs.File, error) { return fs.FS.Create(name, c) })
}

func (fs guardFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.file("create", name, func() (vfs.File, error) { return fs.FS.OpenReadWrite(name, c, opts...) })
}

func (fs guardFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return fs.file("create", newname, func() (vfs.File, error) { return fs.FS.ReuseForWrite(oldname, newname, c) })
}

func (fs guardFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if err := fs.g.beforeOpen(name); err != nil {
		return nil, err
	}
	return fs.FS.Open(name, opts...)
}

// OpenDir is guarded for the directory syncs that make creates and renames
// durable; opening a directory is not itself a write.
func (fs guardFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return guardFile{File: f, g: fs.g, name: name}, nil
}

func (fs guardFS) Link(oldname, newname string) error {
	return fs.do("link", newname, func() error { return fs.FS.Link(oldname, newname) })
}

func (fs guardFS) Remove(name string) error {
	return fs.do("remove", name, func() error { return fs.FS.Remove(name) })
}

func (fs guardFS) RemoveAll(name string) error {
	return fs.do("remove", name, func() error { return fs.FS.RemoveAll(name) })
}

func (fs guardFS) Rename(oldname, newname string) error {
	return fs.do("rename", newname, func() error { return fs.FS.Rename(oldname, newname) })
}

func (fs guardFS) MkdirAll(dir string, perm os.FileMode) error {
	return fs.do("mkdir", dir, func() error { return fs.FS.MkdirAll(dir, perm) })
}

// guardFile guards the writes of one file.
type guardFile struct {
	vfs.File
	g    writeGuard
	name string
}

func (f guardFile) Write(p []byte) (int, error) {
	if skip, err := f.g.before("write", f.name); skip || err != nil {
		return written(skip, p), err
	}
	n, err := f.File.Write(p)
	return n, f.g.after("write", f.name, err)
}

func (f guardFile) WriteAt(p []byte, off int64) (int, error) {
	if skip, err := f.g.before("write", f.name); skip || err != nil {
		return written(skip, p), err
	}
	n, err := f.File.WriteAt(p, off)
	return n, f.g.after("write", f.name, err)
}

func written(skip bool, p []byte) int {
	if skip {
		return len(p)
	}
	return 0
}

func (f guardFile) Preallocate(off, length int64) error {
	if skip, err := f.g.before("preallocate", f.name); skip || err != nil {
		return err
	}
	return f.g.after("preallocate", f.name, f.File.Preallocate(off, length))
}

func (f guardFile) Sync() error {
	if skip, err := f.g.before("sync", f.name); skip || err != nil {
		return err
	}
	return f.g.after("sync", f.name, f.File.Sync())
}

func (f guardFile) SyncData() error {
	if skip, err := f.g.before("sync", f.name); skip || err != nil {
		return err
	}
	return f.g.after("sync", f.name, f.File.SyncData())
}

func (f guardFile) SyncTo(length int64) (bool, error) {
	if skip, err := f.g.before("sync", f.name); skip || err != nil {
		return skip, err
	}
	full, err := f.File.SyncTo(length)
	return full, f.g.after("sync", f.name, err)
}

// discardFile stands for a file whose creation was skipped: writes and
// syncs succeed and go nowhere, reads fail.
type discardFile struct{ name string }

func (f discardFile) err(op string) error { return &fs.PathError{Op: op, Path: f.name, Err: ErrFailed} }

func (discardFile) Close() error                           { return nil }
func (f discardFile) Read([]byte) (int, error)             { return 0, f.err("read") }
func (f discardFile) ReadAt([]byte, int64) (int, error)    { return 0, f.err("read") }
func (discardFile) Write(p []byte) (int, error)            { return len(p), nil }
func (discardFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (discardFile) Preallocate(_, _ int64) error           { return nil }
func (f discardFile) Stat() (vfs.FileInfo, error)          { return nil, f.err("stat") }
func (discardFile) Sync() error                            { return nil }
func (discardFile) SyncTo(int64) (bool, error)             { return true, nil }
func (discardFile) SyncData() error                        { return nil }
func (discardFile) Prefetch(_, _ int64) error              { return nil }
func (discardFile) Fd() uintptr                            { return vfs.InvalidFd }

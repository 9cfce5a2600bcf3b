// Package dirlock gives one process at a time a directory: an OS file lock
// (flock) on DIR/LOCK, taken before anything in the directory is opened,
// cleared or restored. Two rtm processes pointed at the same state would
// otherwise discard each other's live stores; with the lock the second
// refuses to start and touches nothing. The lock dies with the process, so
// a crash never leaves a stale one behind.
package dirlock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// ErrLocked is wrapped by Lock's error when another process holds dir.
var ErrLocked = errors.New("directory is in use by another process")

// Lock creates dir if needed and locks it. Unlock releases the lock.
func Lock(dir string) (unlock func() error, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (pid %s); give each instance its own instance_id or data_dir",
				dir, ErrLocked, bytes.TrimSpace(holder))
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Record the holder for the next process's error message.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() error {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return errors.Join(err, f.Close())
	}, nil
}

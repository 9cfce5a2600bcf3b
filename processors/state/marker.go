package state

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// markerName is the clean-shutdown marker. Close writes it after everything
// the store holds has been flushed to sstables and the DB is closed; Open
// removes it (durably) before the first write. A store directory without
// the marker was not closed cleanly: its contents may be ahead of the
// changelog, so Open discards it.
//
// All of these go through the store's FS (Options.FS behind the fail-stop
// guard), so a failed store can never write the marker.
const markerName = "CLEAN"

// lockName is Pebble's LOCK file, which Open holds while it looks at the
// directory: it is not part of the store's contents.
const lockName = "LOCK"

func markerExists(fsys vfs.FS, dir string) (bool, error) {
	_, err := fsys.Stat(fsys.PathJoin(dir, markerName))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("checking clean-shutdown marker: %w", err)
	}
}

// writeMarker creates the marker and syncs it and its directory, so that a
// marker seen after a power loss really means "closed cleanly".
func writeMarker(fsys vfs.FS, dir string) error {
	f, err := fsys.Create(fsys.PathJoin(dir, markerName), vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("writing clean-shutdown marker: %w", err)
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("syncing clean-shutdown marker: %w", err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing clean-shutdown marker: %w", err)
	}
	return syncDir(fsys, dir)
}

// removeMarker removes the marker and syncs the directory, so that a crash
// after this point cannot resurrect it.
func removeMarker(fsys vfs.FS, dir string) error {
	if err := fsys.Remove(fsys.PathJoin(dir, markerName)); err != nil {
		return fmt.Errorf("removing clean-shutdown marker: %w", err)
	}
	return syncDir(fsys, dir)
}

func syncDir(fsys vfs.FS, dir string) error {
	d, err := fsys.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync it: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		return errors.Join(fmt.Errorf("syncing %s: %w", dir, err), d.Close())
	}
	return d.Close()
}

// isEmptyDir reports whether dir has no entries but the LOCK.
func isEmptyDir(fsys vfs.FS, dir string) (bool, error) {
	names, err := storeEntries(fsys, dir)
	return len(names) == 0, err
}

// clearDir removes everything inside dir but dir itself and the LOCK.
func clearDir(fsys vfs.FS, dir string) error {
	names, err := storeEntries(fsys, dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := fsys.RemoveAll(fsys.PathJoin(dir, name)); err != nil {
			return fmt.Errorf("discarding %s: %w", name, err)
		}
	}
	return syncDir(fsys, dir)
}

// storeEntries lists dir without the LOCK.
func storeEntries(fsys vfs.FS, dir string) ([]string, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	return slices.DeleteFunc(names, func(n string) bool { return n == lockName }), nil
}

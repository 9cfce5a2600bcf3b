package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// markerName is the clean-shutdown marker. Close writes it after everything
// the store holds has been flushed to sstables and the DB is closed; Open
// removes it (durably) before the first write. A store directory without
// the marker was not closed cleanly: its contents may be ahead of the
// changelog, so Open discards it.
const markerName = "CLEAN"

func markerExists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, markerName))
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
func writeMarker(dir string) error {
	f, err := os.Create(filepath.Join(dir, markerName))
	if err != nil {
		return fmt.Errorf("writing clean-shutdown marker: %w", err)
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("syncing clean-shutdown marker: %w", err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing clean-shutdown marker: %w", err)
	}
	return syncDir(dir)
}

// removeMarker removes the marker and syncs the directory, so that a crash
// after this point cannot resurrect it.
func removeMarker(dir string) error {
	if err := os.Remove(filepath.Join(dir, markerName)); err != nil {
		return fmt.Errorf("removing clean-shutdown marker: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync it: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		return errors.Join(fmt.Errorf("syncing %s: %w", dir, err), d.Close())
	}
	return d.Close()
}

// isEmptyDir reports whether dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("listing %s: %w", dir, err)
	}
	return len(entries) == 0, nil
}

// clearDir removes everything inside dir but dir itself.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("discarding %s: %w", e.Name(), err)
		}
	}
	return syncDir(dir)
}

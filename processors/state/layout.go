package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// An index-only store (Options.IndexOnly) keeps under a row's key not its
// value but its projection: for each index, in name order, the number of
// its keys and each key, length-prefixed (uvarints). The keys are sorted
// and without duplicates (indexKeys), so two projections are equal exactly
// when the row's index keys are. A row without any index key has no
// projection and is not stored.
//
// A projection can be read only with the index set it was made with, and
// a value can never be read as one: the directory records, in layoutName,
// the index set its rows are projections of. Open discards a directory
// whose record does not match how the store is configured (values where
// projections are wanted, projections of another index set, or the
// reverse), and Goka restores the table from its changelog.
const layoutName = "INDEX-ONLY"

// checkLayout discards the directory if its rows are not in the layout
// this store keeps, and records the layout of an index-only store.
func (s *Store) checkLayout() error {
	var want []byte
	if s.opts.IndexOnly {
		want = indexSetFingerprint(s.opts.Indexes)
	}
	have, found, err := readLayout(s.fs, s.dir)
	if err != nil {
		return err
	}
	empty, err := isEmptyDir(s.fs, s.dir)
	if err != nil {
		return err
	}
	if !empty && (found != s.opts.IndexOnly || !bytes.Equal(have, want)) {
		s.log.Warn("state store holds rows in another layout (index-only or not, or another index set); discarding it to restore the table from its changelog",
			"dir", s.dir, "index_only", s.opts.IndexOnly)
		s.stats.discards.Add(1)
		if err := clearDir(s.fs, s.dir); err != nil {
			return err
		}
		found = false
	}
	if !s.opts.IndexOnly || found {
		return nil
	}
	return writeLayout(s.fs, s.dir, want)
}

func readLayout(fsys vfs.FS, dir string) ([]byte, bool, error) {
	f, err := fsys.Open(fsys.PathJoin(dir, layoutName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the store's layout: %w", err)
	}
	b, err := io.ReadAll(f)
	return b, true, errors.Join(err, f.Close())
}

// writeLayout records the index set, synced like the clean-shutdown
// marker, before the first row is written.
func writeLayout(fsys vfs.FS, dir string, fingerprint []byte) error {
	f, err := fsys.Create(fsys.PathJoin(dir, layoutName), vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("recording the store's layout: %w", err)
	}
	_, err = f.Write(fingerprint)
	if err == nil {
		err = f.Sync()
	}
	if err := errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("recording the store's layout: %w", err)
	}
	return syncDir(fsys, dir)
}

// project returns the projection of a row (nil: it has no index key).
func (s *Store) project(key string, value []byte) ([]byte, error) {
	var out []byte
	found := false
	for _, name := range s.names {
		keys, err := indexKeys(s.opts.Indexes[name], name, key, value)
		if err != nil {
			return nil, err
		}
		out = binary.AppendUvarint(out, uint64(len(keys)))
		for _, k := range keys {
			out = binary.AppendUvarint(out, uint64(len(k)))
			out = append(out, k...)
		}
		found = found || len(keys) > 0
	}
	if !found {
		return nil, nil
	}
	return out, nil
}

// rowIndexKeys returns the keys the i-th index (named name) has for a
// stored row: read from its projection in an index-only store, else
// derived from its value.
func (s *Store) rowIndexKeys(i int, name, key string, row []byte) ([]string, error) {
	if !s.opts.IndexOnly {
		return indexKeys(s.opts.Indexes[name], name, key, row)
	}
	keys, err := projectedKeys(row, i)
	if err != nil {
		return nil, fmt.Errorf("index %q: row %q: %w", name, key, err)
	}
	return keys, nil
}

var errProjection = errors.New("malformed index-only row")

// projectedKeys returns the keys of the i-th index from a projection.
func projectedKeys(p []byte, i int) ([]string, error) {
	for idx := 0; ; idx++ {
		n, w := binary.Uvarint(p)
		if w <= 0 {
			return nil, errProjection
		}
		p = p[w:]
		var keys []string
		if idx == i {
			keys = make([]string, 0, min(n, uint64(len(p))))
		}
		for range n {
			l, w := binary.Uvarint(p)
			if w <= 0 || uint64(len(p)-w) < l {
				return nil, errProjection
			}
			if idx == i {
				keys = append(keys, string(p[w:w+int(l)]))
			}
			p = p[w+int(l):]
		}
		if idx == i {
			return keys, nil
		}
	}
}

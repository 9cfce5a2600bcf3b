package state

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/lovoo/goka/storage"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// testLogger logs through the test, so logs appear only for failed tests
// or with -v.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// favIndexer and dueIndexer read test values of the form
// "fav=a,b;due=0000000005": favourite items and a zero-padded due time.
func favIndexer(_ string, v []byte) ([]string, error) { return field(v, "fav"), nil }
func dueIndexer(_ string, v []byte) ([]string, error) { return field(v, "due"), nil }

func field(v []byte, name string) []string {
	for _, part := range strings.Split(string(v), ";") {
		if rest, ok := strings.CutPrefix(part, name+"="); ok && rest != "" {
			return strings.Split(rest, ",")
		}
	}
	return nil
}

func testOptions(t testing.TB) Options {
	return Options{
		Indexes: map[string]Indexer{"fav": favIndexer, "due": dueIndexer},
		Logger:  testLogger(t),
	}
}

// openStore opens a store in dir and closes it when the test ends (a
// store the test closed itself is left alone: Close is idempotent).
func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	st, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// lookup returns the primary keys Lookup reports.
func lookup(t testing.TB, st *Store, index, key string) []string {
	t.Helper()
	got := []string{}
	must(t, st.Lookup(index, key, func(pk string) error {
		got = append(got, pk)
		return nil
	}))
	return got
}

// checkIndexes asserts that the index entries are exactly those derived
// from the current rows: nothing stale, nothing missing.
func checkIndexes(t testing.TB, st *Store) {
	t.Helper()
	if d := indexMismatch(t, st); d != "" {
		t.Fatal(d)
	}
}

// indexMismatch describes how the index entries differ from those derived
// from the rows, "" when they do not. Rows and index entries are read in
// two snapshots: a write in between shows as a mismatch, so a store that
// is still being written must be polled (see waitIndexesConsistent).
func indexMismatch(t testing.TB, st *Store) string {
	t.Helper()
	it := rowIter(t, st)
	want := map[string][]string{}
	for it.Next() {
		v, err := it.Value()
		must(t, err)
		for i, name := range st.names {
			keys, err := st.rowIndexKeys(i, name, string(it.Key()), v)
			must(t, err)
			for _, k := range keys {
				want[name] = append(want[name], k+"\x00"+string(it.Key()))
			}
		}
	}
	must(t, it.Err())
	it.Release()
	for name := range st.opts.Indexes {
		got := []string{}
		must(t, st.ScanIndexRange(name, "", "", func(ik, pk string) error {
			got = append(got, ik+"\x00"+pk)
			return nil
		}))
		exp := append([]string{}, want[name]...)
		slices.Sort(exp) // the index order: by index key, then primary key
		if !slices.Equal(got, exp) {
			return fmt.Sprintf("index %q: %d entries, want %d; stale: %q; missing: %q",
				name, len(got), len(exp), without(got, exp), without(exp, got))
		}
	}
	return ""
}

// rowIter iterates over the rows as stored: values, or in an index-only
// store (which has no Iterator) projections.
func rowIter(t testing.TB, st *Store) storage.Iterator {
	t.Helper()
	if !st.opts.IndexOnly {
		it, err := st.Iterator()
		must(t, err)
		return it
	}
	must(t, st.commitForRead())
	st.mu.RLock()
	defer st.mu.RUnlock()
	it, err := st.db.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	must(t, err)
	return &dataIter{it: it}
}

// waitIndexesConsistent waits until st's index entries match its rows: a
// Goka processor may still be re-applying redelivered input after its
// rows caught up with the changelog, and each such write moves both.
func waitIndexesConsistent(t testing.TB, st *Store) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		d := indexMismatch(t, st)
		if d == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// without returns the elements of a not in b.
func without(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

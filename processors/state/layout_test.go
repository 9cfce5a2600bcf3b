package state

import (
	"errors"
	"slices"
	"testing"
)

func indexOnlyOptions(t testing.TB) Options {
	o := testOptions(t)
	o.IndexOnly = true
	return o
}

// storedRows counts the rows an index-only store keeps on disk.
func storedRows(t testing.TB, st *Store) int {
	t.Helper()
	it := rowIter(t, st)
	defer it.Release()
	n := 0
	for it.Next() {
		n++
	}
	must(t, it.Err())
	return n
}

// TestIndexOnlyKeepsIndexKeysOnly: rows without index keys take no space,
// rows are not readable, and writes that change no index key write
// nothing.
func TestIndexOnlyKeepsIndexKeysOnly(t *testing.T) {
	st := openStore(t, t.TempDir(), indexOnlyOptions(t))
	// A fresh recovery: the rows without index keys (m2, m3) and a
	// delete of a row never written (m9) leave nothing behind.
	apply(t, st, []op{set("m1", "fav=a;name=Ann"), set("m2", "name=Bob"), set("m3", "fav=b"), set("m3", "name=Cy"), del("m9")})
	must(t, st.MarkRecovered())
	if n := storedRows(t, st); n != 1 {
		t.Fatalf("%d rows stored, want 1 (m1: the only one with index keys)", n)
	}
	if d := st.Stats().Deletes; d != 1 {
		t.Fatalf("Deletes = %d, want 1 (m3, written before; m2 and m9 never were)", d)
	}
	if got := lookup(t, st, "fav", "a"); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("Lookup(fav, a) = %q", got)
	}
	if _, err := st.Get("m1"); !errors.Is(err, ErrIndexOnly) {
		t.Fatalf("Get = %v, want ErrIndexOnly", err)
	}
	if _, err := st.Has("m1"); !errors.Is(err, ErrIndexOnly) {
		t.Fatalf("Has = %v, want ErrIndexOnly", err)
	}
	if _, err := st.Iterator(); !errors.Is(err, ErrIndexOnly) {
		t.Fatalf("Iterator = %v, want ErrIndexOnly", err)
	}

	for _, tc := range []struct {
		name    string
		op      op
		commits uint64 // batches the write commits
		reads   uint64 // point reads of the old row (none when it is the row written last)
		fav     []string
	}{
		{"other fields change", set("m1", "fav=a;name=Anne"), 0, 1, []string{"m1"}},
		{"same index keys, other order", set("m1", "fav=a,a;name=Ann"), 0, 0, []string{"m1"}},
		{"a row without index keys stays absent", set("m2", "name=Bob2"), 0, 1, []string{"m1"}},
		{"delete of an absent row", del("m2"), 0, 0, []string{"m1"}},
		{"a new favourite", set("m2", "fav=a"), 1, 0, []string{"m1", "m2"}},
		{"favourites removed: one read serves the check and the index diff", set("m1", "name=Ann"), 1, 1, []string{"m2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := st.Stats()
			apply(t, st, []op{tc.op})
			if n := st.Stats().Commits - before.Commits; n != tc.commits {
				t.Errorf("%d commits, want %d", n, tc.commits)
			}
			if n := st.Stats().OldRowReads - before.OldRowReads; n != tc.reads {
				t.Errorf("%d reads of the old row, want %d", n, tc.reads)
			}
			if got := lookup(t, st, "fav", "a"); !slices.Equal(got, tc.fav) {
				t.Errorf("Lookup(fav, a) = %q, want %q", got, tc.fav)
			}
			checkIndexes(t, st)
		})
	}
}

// TestLayoutChangeDiscards: a directory whose rows are in another layout
// is discarded on Open (the table is restored from its changelog), one in
// the same layout is kept.
func TestLayoutChangeDiscards(t *testing.T) {
	favOnly := indexOnlyOptions(t)
	favOnly.Indexes = map[string]Indexer{"fav": favIndexer}
	for _, tc := range []struct {
		name        string
		first, then Options
		discarded   bool
	}{
		{"values, then index-only", testOptions(t), indexOnlyOptions(t), true},
		{"index-only, then values", indexOnlyOptions(t), testOptions(t), true},
		{"index-only, then another index set", indexOnlyOptions(t), favOnly, true},
		{"index-only both times", indexOnlyOptions(t), indexOnlyOptions(t), false},
		{"values both times", testOptions(t), testOptions(t), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st := openStore(t, dir, tc.first)
			must(t, st.MarkRecovered())
			apply(t, st, []op{set("m1", "fav=a;due=0001")})
			must(t, st.SetOffset(7))
			must(t, st.Close())

			st = openStore(t, dir, tc.then)
			off, err := st.GetOffset(-1)
			must(t, err)
			if discarded := st.Stats().Discards == 1; discarded != tc.discarded {
				t.Fatalf("discarded = %t, want %t", discarded, tc.discarded)
			}
			wantOff, wantFav := int64(7), []string{"m1"}
			if tc.discarded {
				wantOff, wantFav = -1, []string{}
			}
			if off != wantOff {
				t.Fatalf("offset after reopen = %d, want %d", off, wantOff)
			}
			must(t, st.MarkRecovered())
			if got := lookup(t, st, "fav", "a"); !slices.Equal(got, wantFav) {
				t.Fatalf("Lookup(fav, a) = %q, want %q", got, wantFav)
			}
		})
	}
}

func TestProjectedKeysRejectsMalformedRows(t *testing.T) {
	for _, p := range [][]byte{nil, {2, 1}, {1, 5, 'a'}, {0xff}} {
		if _, err := projectedKeys(p, 1); !errors.Is(err, errProjection) {
			t.Errorf("projectedKeys(%x) = %v, want errProjection", p, err)
		}
	}
}

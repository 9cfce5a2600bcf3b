package state

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/lovoo/goka/storage"
	"github.com/syndtr/goleveldb/leveldb"
)

// features says which optional behaviour an implementation has, so the one
// suite can run against all of them (watermill's pubsub/tests style).
type features struct {
	// persistent: a storage reopened on the same directory keeps its data.
	persistent bool
	// copies: Get returns a copy and Set copies its argument.
	copies bool
}

// constructor returns an opened storage kept in dir.
type constructor func(t *testing.T, dir string) storage.Storage

// runStorageSuite checks the storage.Storage contract as Goka uses it.
func runStorageSuite(t *testing.T, open constructor, f features) {
	fill := func(t *testing.T, st storage.Storage, kv ...string) {
		t.Helper()
		for i := 0; i < len(kv); i += 2 {
			if err := st.Set(kv[i], []byte(kv[i+1])); err != nil {
				t.Fatalf("Set(%q): %v", kv[i], err)
			}
		}
	}
	collect := func(t *testing.T, it storage.Iterator) []string {
		t.Helper()
		defer it.Release()
		var got []string
		for it.Next() {
			v, err := it.Value()
			if err != nil {
				t.Fatalf("Value: %v", err)
			}
			got = append(got, string(it.Key())+"="+string(v))
		}
		if err := it.Err(); err != nil {
			t.Fatalf("iterator: %v", err)
		}
		return got
	}
	equal := func(t *testing.T, what string, got, want []string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s = %q, want %q", what, got, want)
		}
	}
	newStorage := func(t *testing.T) storage.Storage {
		st := open(t, t.TempDir())
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	}

	t.Run("has-get-set-delete", func(t *testing.T) {
		st := newStorage(t)
		if has, err := st.Has("k"); err != nil || has {
			t.Fatalf("Has(missing) = %v, %v; want false, nil", has, err)
		}
		if v, err := st.Get("k"); err != nil || v != nil {
			t.Fatalf("Get(missing) = %q, %v; want nil, nil", v, err)
		}
		fill(t, st, "k", "v1")
		if has, err := st.Has("k"); err != nil || !has {
			t.Fatalf("Has = %v, %v; want true, nil", has, err)
		}
		fill(t, st, "k", "v2")
		if v, err := st.Get("k"); err != nil || string(v) != "v2" {
			t.Fatalf("Get = %q, %v; want v2", v, err)
		}
		if err := st.Delete("k"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := st.Delete("never-there"); err != nil {
			t.Fatalf("Delete(missing): %v", err)
		}
		if v, err := st.Get("k"); err != nil || v != nil {
			t.Fatalf("Get(deleted) = %q, %v; want nil, nil", v, err)
		}
	})

	t.Run("offset", func(t *testing.T) {
		st := newStorage(t)
		if off, err := st.GetOffset(-2); err != nil || off != -2 {
			t.Fatalf("GetOffset(-2) on empty storage = %d, %v; want the default", off, err)
		}
		for _, want := range []int64{7, 1 << 40, 8} { // goka's LevelDB storage cannot store 0
			if err := st.SetOffset(want); err != nil {
				t.Fatalf("SetOffset: %v", err)
			}
			if off, err := st.GetOffset(-2); err != nil || off != want {
				t.Fatalf("GetOffset = %d, %v; want %d", off, err, want)
			}
		}
	})

	t.Run("iterator", func(t *testing.T) {
		st := newStorage(t)
		fill(t, st, "key-3", "c", "key-1", "a", "key-2", "b", "other", "o")
		if err := st.SetOffset(3); err != nil {
			t.Fatal(err)
		}
		it, err := st.Iterator()
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "Iterator", collect(t, it), []string{"key-1=a", "key-2=b", "key-3=c", "other=o"})

		it, err = st.Iterator()
		if err != nil {
			t.Fatal(err)
		}
		it.Release()
		if it.Next() || it.Seek([]byte("key-2")) {
			t.Fatal("released iterator still moves")
		}
	})

	t.Run("iterator-with-range", func(t *testing.T) {
		st := newStorage(t)
		fill(t, st, "a1", "1", "b1", "2", "b2", "3", "b3", "4", "c1", "5")
		for _, tc := range []struct {
			name         string
			start, limit string
			want         []string
		}{
			{"half-open", "b1", "b25", []string{"b1=2", "b2=3"}},
			{"nil limit is a prefix", "b", "", []string{"b1=2", "b2=3", "b3=4"}},
			{"nothing", "d", "", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var limit []byte
				if tc.limit != "" {
					limit = []byte(tc.limit)
				}
				it, err := st.IteratorWithRange([]byte(tc.start), limit)
				if err != nil {
					t.Fatal(err)
				}
				equal(t, "IteratorWithRange", collect(t, it), tc.want)
			})
		}
	})

	t.Run("seek", func(t *testing.T) {
		st := newStorage(t)
		fill(t, st, "key-1", "a", "key-2", "b", "key-3", "c")
		it, err := st.Iterator()
		if err != nil {
			t.Fatal(err)
		}
		defer it.Release()
		if !it.Seek([]byte("key-2")) {
			t.Fatal("Seek(key-2) = false")
		}
		if v, err := it.Value(); string(it.Key()) != "key-2" || string(v) != "b" || err != nil {
			t.Fatalf("after Seek: %q=%q, %v; want key-2=b", it.Key(), v, err)
		}
		if !it.Next() || string(it.Key()) != "key-3" {
			t.Fatalf("Next after Seek: %q, want key-3", it.Key())
		}
		if it.Seek([]byte("key-4")) || it.Key() != nil {
			t.Fatalf("Seek past the end: key %q, want none", it.Key())
		}
	})

	t.Run("get-returns-copy", func(t *testing.T) {
		if !f.copies {
			t.Skip("this storage shares value memory")
		}
		st := newStorage(t)
		in := []byte("value")
		if err := st.Set("k", in); err != nil {
			t.Fatal(err)
		}
		in[0] = 'X'
		v, err := st.Get("k")
		if err != nil || string(v) != "value" {
			t.Fatalf("Get after changing Set's argument = %q, %v", v, err)
		}
		v[0] = 'Y'
		if v2, err := st.Get("k"); err != nil || string(v2) != "value" {
			t.Fatalf("Get after changing a returned value = %q, %v", v2, err)
		}
		fill(t, st, "k2", "other") // a later write must not change v2 either
		if !bytes.Equal(v, []byte("Yalue")) {
			t.Fatalf("returned value changed under the caller: %q", v)
		}
	})

	t.Run("close-open", func(t *testing.T) {
		if !f.persistent {
			t.Skip("not persistent")
		}
		dir := t.TempDir()
		st := open(t, dir)
		fill(t, st, "a", "1", "b", "2")
		if err := st.Delete("a"); err != nil {
			t.Fatal(err)
		}
		if err := st.SetOffset(41); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkRecovered(); err != nil {
			t.Fatal(err)
		}
		fill(t, st, "c", "3")
		if err := st.SetOffset(42); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		st = open(t, dir)
		defer func() {
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		if off, err := st.GetOffset(-1); err != nil || off != 42 {
			t.Fatalf("GetOffset after reopen = %d, %v; want 42", off, err)
		}
		it, err := st.Iterator()
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "rows after reopen", collect(t, it), []string{"b=2", "c=3"})
	})
}

func TestStorageSuite(t *testing.T) {
	pebbleStore := func(opts Options, recovered bool) constructor {
		return func(t *testing.T, dir string) storage.Storage {
			t.Helper()
			opts.Logger = testLogger(t)
			st, err := New(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Open(); err != nil {
				t.Fatal(err)
			}
			if recovered {
				if err := st.MarkRecovered(); err != nil {
					t.Fatal(err)
				}
			}
			return st
		}
	}
	indexed := Options{Indexes: map[string]Indexer{
		// Index every row by its value's first byte, so the suite runs
		// the index maintenance code on every write.
		"first": func(_ string, v []byte) ([]string, error) {
			if len(v) == 0 {
				return nil, nil
			}
			return []string{string(v[:1])}, nil
		},
	}}
	for _, tc := range []struct {
		name string
		open constructor
		f    features
	}{
		{"goka-memory", func(*testing.T, string) storage.Storage { return storage.NewMemory() }, features{}},
		{"goka-leveldb", func(t *testing.T, dir string) storage.Storage {
			db, err := leveldb.OpenFile(filepath.Join(dir, "ldb"), nil)
			if err != nil {
				t.Fatal(err)
			}
			st, err := storage.New(db)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Open(); err != nil {
				t.Fatal(err)
			}
			return st
		}, features{persistent: true, copies: true}},
		{"pebble-recovering", pebbleStore(Options{}, false), features{persistent: true, copies: true}},
		{"pebble-recovered", pebbleStore(Options{}, true), features{persistent: true, copies: true}},
		{"pebble-indexed-recovering", pebbleStore(indexed, false), features{persistent: true, copies: true}},
		{"pebble-indexed-recovered", pebbleStore(indexed, true), features{persistent: true, copies: true}},
		{"pebble-tiny-batches", pebbleStore(Options{RecoveryBatchBytes: 1}, false), features{persistent: true, copies: true}},
	} {
		t.Run(tc.name, func(t *testing.T) { runStorageSuite(t, tc.open, tc.f) })
	}
}

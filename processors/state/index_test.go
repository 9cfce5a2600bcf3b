package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// op is one write in an index test: a Set, or a Delete when del is true.
type op struct {
	key, value string
	del        bool
}

func set(k, v string) op { return op{key: k, value: v} }
func del(k string) op    { return op{key: k, del: true} }

func apply(t testing.TB, st *Store, ops []op) {
	t.Helper()
	for i, o := range ops {
		if o.del {
			must(t, st.Delete(o.key))
		} else {
			must(t, st.Set(o.key, []byte(o.value)))
		}
		must(t, st.SetOffset(int64(i)))
	}
}

// recoveryModes are the three ways writes reach the store; index
// maintenance differs in each, the results must not.
var recoveryModes = []struct {
	name string
	// run opens a store in dir, applies ops the mode's way and returns it
	// recovered.
	run func(t *testing.T, dir string, opts Options, ops []op) *Store
}{
	{"after-recovery", func(t *testing.T, dir string, opts Options, ops []op) *Store {
		st := openStore(t, dir, opts)
		must(t, st.MarkRecovered())
		apply(t, st, ops)
		return st
	}},
	{"fresh-recovery", func(t *testing.T, dir string, opts Options, ops []op) *Store {
		// Empty store: index entries are built once, in MarkRecovered.
		st := openStore(t, dir, opts)
		if !st.deferIndex {
			t.Fatal("fresh store with indexes does not defer index building")
		}
		apply(t, st, ops)
		must(t, st.MarkRecovered())
		return st
	}},
	{"catch-up-recovery", func(t *testing.T, dir string, opts Options, ops []op) *Store {
		// Reopened store: index entries are maintained per write through
		// the indexed recovery batch, which sees its own pending writes.
		st := openStore(t, dir, opts)
		must(t, st.MarkRecovered())
		must(t, st.Set("base", []byte("fav=a,z")))
		must(t, st.Delete("base"))
		must(t, st.Close())
		st = openStore(t, dir, opts)
		if st.deferIndex {
			t.Fatal("reopened store defers index building")
		}
		apply(t, st, ops)
		checkIndexes(t, st) // readable mid-recovery: pending batch committed first
		must(t, st.MarkRecovered())
		return st
	}},
}

func TestIndexMaintenance(t *testing.T) {
	type want map[string][]string // favourite item -> members
	for _, tc := range []struct {
		name string
		ops  []op
		want want
	}{
		{"insert", []op{set("m1", "fav=a,b")}, want{"a": {"m1"}, "b": {"m1"}, "c": {}}},
		{"update adds and removes keys",
			[]op{set("m1", "fav=a,b"), set("m1", "fav=b,c")},
			want{"a": {}, "b": {"m1"}, "c": {"m1"}}},
		{"same value again", []op{set("m1", "fav=a"), set("m1", "fav=a")}, want{"a": {"m1"}}},
		{"delete removes all entries",
			[]op{set("m1", "fav=a,b;due=0001"), set("m2", "fav=a"), del("m1")},
			want{"a": {"m2"}, "b": {}}},
		{"delete then insert", []op{set("m1", "fav=a"), del("m1"), set("m1", "fav=b")}, want{"a": {}, "b": {"m1"}}},
		{"delete of a missing row", []op{del("m9"), set("m1", "fav=a")}, want{"a": {"m1"}}},
		{"duplicate index keys", []op{set("m1", "fav=a,a,b,a")}, want{"a": {"m1"}, "b": {"m1"}}},
		{"no index keys", []op{set("m1", "fav=a"), set("m1", "other=1")}, want{"a": {}}},
		{"many members, one item",
			[]op{set("m3", "fav=x"), set("m1", "fav=x"), set("m2", "fav=x,y"), set("m2", "fav=y")},
			want{"x": {"m1", "m3"}, "y": {"m2"}}},
	} {
		for _, mode := range recoveryModes {
			for _, indexOnly := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/index-only=%t", tc.name, mode.name, indexOnly), func(t *testing.T) {
					opts := testOptions(t)
					opts.IndexOnly = indexOnly
					st := mode.run(t, t.TempDir(), opts, tc.ops)
					checkIndexes(t, st)
					for item, members := range tc.want {
						if got := lookup(t, st, "fav", item); !slices.Equal(got, members) {
							t.Errorf("Lookup(fav, %q) = %q, want %q", item, got, members)
						}
					}
				})
			}
		}
	}
}

// TestIndexManyKeys runs random writes over many keys against a model.
func TestIndexManyKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ops []op
	model := map[string]string{}
	for range 5000 {
		k := fmt.Sprintf("m%03d", rng.IntN(500))
		if rng.IntN(5) == 0 {
			ops = append(ops, del(k))
			delete(model, k)
			continue
		}
		v := fmt.Sprintf("fav=i%d,i%d;due=%010d", rng.IntN(20), rng.IntN(20), rng.IntN(1000))
		ops = append(ops, set(k, v))
		model[k] = v
	}
	for _, mode := range recoveryModes {
		for _, indexOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/index-only=%t", mode.name, indexOnly), func(t *testing.T) {
				opts := testOptions(t)
				opts.IndexOnly = indexOnly
				st := mode.run(t, t.TempDir(), opts, ops)
				checkIndexes(t, st)
				for i := range 20 {
					item := fmt.Sprintf("i%d", i)
					want := []string{}
					for k, v := range model {
						if slices.Contains(field([]byte(v), "fav"), item) {
							want = append(want, k)
						}
					}
					slices.Sort(want)
					if got := lookup(t, st, "fav", item); !slices.Equal(got, want) {
						t.Fatalf("Lookup(fav, %s) = %q, want %q", item, got, want)
					}
				}
				// Every member with a due time is in the due index once.
				due := 0
				must(t, st.ScanIndexRange("due", "", "", func(string, string) error { due++; return nil }))
				if want := len(model); due != want {
					t.Fatalf("due index has %d entries, want %d", due, want)
				}
			})
		}
	}
}

// TestKeyspacesDoNotMix: rows whose keys look like index entries or
// metadata stay rows; iterators see only rows, scans only index entries.
func TestKeyspacesDoNotMix(t *testing.T) {
	st := openStore(t, t.TempDir(), testOptions(t))
	must(t, st.MarkRecovered())
	rows := []op{
		set("ifav\x00a\x00evil", "fav=b"),
		set("moffset", "x"),
		set("m1", "fav=a"),
		set("", "fav=c"),
		set("\xff\xff", "fav=a"),
	}
	apply(t, st, rows)
	it, err := st.Iterator()
	must(t, err)
	var keys []string
	for it.Next() {
		keys = append(keys, string(it.Key()))
	}
	it.Release()
	want := []string{"", "ifav\x00a\x00evil", "m1", "moffset", "\xff\xff"}
	if !slices.Equal(keys, want) {
		t.Fatalf("Iterator keys = %q, want %q", keys, want)
	}
	var all []string
	must(t, st.ScanIndex("fav", "", func(pk string) error {
		all = append(all, pk)
		return nil
	}))
	// a: m1, \xff\xff; b: the evil row; c: the empty key. Nothing else.
	if want := []string{"m1", "\xff\xff", "ifav\x00a\x00evil", ""}; !slices.Equal(all, want) {
		t.Fatalf("ScanIndex(fav, \"\") = %q, want %q", all, want)
	}
	if got := lookup(t, st, "due", ""); len(got) != 0 {
		t.Fatalf("due index has entries %q", got)
	}
	checkIndexes(t, st)
}

func TestScanIndexPrefixAndLookup(t *testing.T) {
	st := openStore(t, t.TempDir(), testOptions(t))
	must(t, st.MarkRecovered())
	apply(t, st, []op{set("m1", "fav=item-1"), set("m2", "fav=item-10"), set("m3", "fav=item-2")})
	var prefixed []string
	must(t, st.ScanIndex("fav", "item-1", func(pk string) error {
		prefixed = append(prefixed, pk)
		return nil
	}))
	if want := []string{"m1", "m2"}; !slices.Equal(prefixed, want) {
		t.Errorf("ScanIndex(item-1) = %q, want %q (prefix match)", prefixed, want)
	}
	if got := lookup(t, st, "fav", "item-1"); !slices.Equal(got, []string{"m1"}) {
		t.Errorf("Lookup(item-1) = %q, want [m1] (exact match)", got)
	}
}

func TestScanIndexRangeDueTimes(t *testing.T) {
	st := openStore(t, t.TempDir(), testOptions(t))
	must(t, st.MarkRecovered())
	due := func(n int) string { return fmt.Sprintf("%010d", n) }
	apply(t, st, []op{
		set("m1", "due="+due(5)), set("m2", "due="+due(100)), set("m3", "due="+due(9)),
		set("m4", "due="+due(10)), set("m5", "fav=a"),
	})
	for _, tc := range []struct {
		name       string
		start, end string
		want       []string
	}{
		{"due by 9", "", due(10), []string{due(5) + "|m1", due(9) + "|m3"}},
		{"due by 10", "", due(11), []string{due(5) + "|m1", due(9) + "|m3", due(10) + "|m4"}},
		{"from 10 on", due(10), "", []string{due(10) + "|m4", due(100) + "|m2"}},
		{"nothing due", "", due(5), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			must(t, st.ScanIndexRange("due", tc.start, tc.end, func(ik, pk string) error {
				got = append(got, ik+"|"+pk)
				return nil
			}))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestScanCallbacks(t *testing.T) {
	st := openStore(t, t.TempDir(), testOptions(t))
	must(t, st.MarkRecovered())
	apply(t, st, []op{set("m1", "fav=a"), set("m2", "fav=a"), set("m3", "fav=a")})

	t.Run("StopScan ends early without error", func(t *testing.T) {
		n := 0
		err := st.ScanIndex("fav", "a", func(string) error { n++; return StopScan })
		if err != nil || n != 1 {
			t.Fatalf("err %v after %d calls; want nil after 1", err, n)
		}
	})
	t.Run("callback error is returned", func(t *testing.T) {
		boom := errors.New("boom")
		if err := st.ScanIndex("fav", "a", func(string) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want boom", err)
		}
	})
	t.Run("unknown index", func(t *testing.T) {
		if err := st.ScanIndex("nope", "", func(string) error { return nil }); !errors.Is(err, ErrUnknownIndex) {
			t.Fatalf("err = %v, want ErrUnknownIndex", err)
		}
	})
	t.Run("callback may write to the store", func(t *testing.T) {
		// Timer release: delete what is due while scanning it.
		var seen []string
		must(t, st.ScanIndex("fav", "a", func(pk string) error {
			seen = append(seen, pk)
			return st.Delete(pk)
		}))
		if len(seen) != 3 {
			t.Fatalf("scan saw %q, want the snapshot of 3 rows", seen)
		}
		if got := lookup(t, st, "fav", "a"); len(got) != 0 {
			t.Fatalf("after deleting in the callback: %q", got)
		}
		checkIndexes(t, st)
	})
}

func TestInvalidIndexKeyFailsTheWrite(t *testing.T) {
	opts := testOptions(t)
	opts.Indexes["bad"] = func(k string, _ []byte) ([]string, error) {
		if k == "bad" {
			return []string{"a\x00b"}, nil
		}
		return nil, nil
	}
	st := openStore(t, t.TempDir(), opts)
	must(t, st.MarkRecovered())
	if err := st.Set("bad", []byte("fav=a")); !errors.Is(err, ErrInvalidIndexKey) {
		t.Fatalf("Set = %v, want ErrInvalidIndexKey", err)
	}
	if has, err := st.Has("bad"); err != nil || has {
		t.Fatalf("row of a failed write exists: %v, %v", has, err)
	}
	if got := lookup(t, st, "fav", "a"); len(got) != 0 {
		t.Fatalf("index entries of a failed write: %q", got)
	}
	must(t, st.Set("good", []byte("fav=a")))
	checkIndexes(t, st)
}

func TestIndexSetChangeRebuilds(t *testing.T) {
	dir := t.TempDir()
	favOnly := testOptions(t)
	delete(favOnly.Indexes, "due")
	st := openStore(t, dir, favOnly)
	must(t, st.MarkRecovered())
	apply(t, st, []op{set("m1", "fav=a;due=0001"), set("m2", "fav=b;due=0002")})
	must(t, st.Close())

	t.Run("same set: no rebuild, scans work during recovery", func(t *testing.T) {
		st := openStore(t, dir, favOnly)
		if got := lookup(t, st, "fav", "a"); !slices.Equal(got, []string{"m1"}) {
			t.Fatalf("Lookup during recovery = %q", got)
		}
		must(t, st.MarkRecovered())
		if n := st.Stats().Rebuilds; n != 0 {
			t.Fatalf("Rebuilds = %d, want 0", n)
		}
		must(t, st.Close())
	})
	t.Run("added index: rebuilt when recovery ends", func(t *testing.T) {
		st := openStore(t, dir, testOptions(t))
		err := st.ScanIndex("due", "", func(string) error { return nil })
		if !errors.Is(err, ErrIndexNotReady) {
			t.Fatalf("scan during rebuild recovery = %v, want ErrIndexNotReady", err)
		}
		must(t, st.MarkRecovered())
		if n := st.Stats().Rebuilds; n != 1 {
			t.Fatalf("Rebuilds = %d, want 1", n)
		}
		if got := lookup(t, st, "due", "0002"); !slices.Equal(got, []string{"m2"}) {
			t.Fatalf("Lookup(due) = %q", got)
		}
		checkIndexes(t, st)
		must(t, st.Close())
	})
	t.Run("removed index: its entries are dropped", func(t *testing.T) {
		st := openStore(t, dir, favOnly)
		must(t, st.MarkRecovered())
		must(t, st.Close())
		// Reopen with both: the due entries must come from a new rebuild,
		// not survive from before.
		st = openStore(t, dir, testOptions(t))
		if !st.deferIndex {
			t.Fatal("index set changed back, but no rebuild")
		}
		must(t, st.MarkRecovered())
		checkIndexes(t, st)
	})
}

// TestInterruptedRebuild: a store closed (cleanly) before its deferred index
// build still rebuilds on the next recovery.
func TestInterruptedRebuild(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, testOptions(t))
	apply(t, st, []op{set("m1", "fav=a"), set("m2", "fav=a")})
	must(t, st.Close()) // rebalanced away mid-recovery
	st = openStore(t, dir, testOptions(t))
	if !st.deferIndex {
		t.Fatal("incomplete index not detected on reopen")
	}
	apply(t, st, []op{set("m3", "fav=a")})
	must(t, st.MarkRecovered())
	if got := lookup(t, st, "fav", "a"); !slices.Equal(got, []string{"m1", "m2", "m3"}) {
		t.Fatalf("Lookup = %q", got)
	}
	checkIndexes(t, st)
}

func TestCleanMarker(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, markerName)
	st := openStore(t, dir, testOptions(t))
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker present while open: %v", err)
	}
	must(t, st.SetOffset(0))
	must(t, st.Close())
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("marker missing after Close: %v", err)
	}
	st = openStore(t, dir, testOptions(t))
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker not removed by Open: %v", err)
	}
	if off, err := st.GetOffset(-1); err != nil || off != 0 {
		t.Fatalf("offset 0 after reopen = %d, %v", off, err)
	}
	if st.Stats().Discards != 0 {
		t.Fatal("clean store was discarded")
	}
	must(t, st.Close())
	if _, err := st.Get("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if err := st.Set("x", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close = %v, want ErrClosed", err)
	}
}

func TestOptionsValidateReportsEveryProblem(t *testing.T) {
	err := Options{
		Indexes:            map[string]Indexer{"": favIndexer, "a\x00b": favIndexer, "nil": nil},
		CacheSize:          -1,
		RecoveryBatchBytes: -1,
	}.Validate()
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("err = %v, want ErrInvalidOptions", err)
	}
	want := `invalid state options: index name must not be empty; ` +
		`index name "a\x00b" must not contain a zero byte; index "nil" has no Indexer; ` +
		`CacheSize -1 must not be negative; RecoveryBatchBytes -1 must not be negative`
	if err.Error() != want {
		t.Fatalf("err =\n %q\nwant\n %q", err, want)
	}
	if _, err := Builder(t.TempDir(), Options{CacheSize: -1}, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Builder accepted invalid options: %v", err)
	}
}

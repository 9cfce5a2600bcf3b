package state

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBulkRecoveryIngests replays a changelog with overwrites and deletes
// into stores whose recovery batches are ingested as sstables (see
// ingest.go), in two sessions: the first is closed cleanly in the middle
// of its recovery (Goka stopped), the second reopens it and replays the
// rest. Rows, offset and index entries must equal the model, exactly as
// with batches committed through the memtable.
func TestBulkRecoveryIngests(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var ops []op
	for range 4000 {
		k := fmt.Sprintf("m%03d", rng.IntN(400))
		if rng.IntN(6) == 0 {
			ops = append(ops, del(k))
			continue
		}
		ops = append(ops, set(k, fmt.Sprintf("fav=i%d,i%d;due=%010d;pad=%0*d", rng.IntN(20), rng.IntN(20),
			rng.IntN(1000), rng.IntN(200), 0)))
	}
	half := len(ops) / 2
	for _, tc := range []struct {
		name        string
		indexed     bool
		batch       int  // RecoveryBatchBytes
		wantIngests bool // the first session ingested
	}{
		{"plain, 1 KiB batches", false, 1 << 10, true},
		{"plain, 4 KiB batches", false, 4 << 10, true},
		{"plain, default batches (commits through the memtable)", false, 0, false},
		{"indexed, 1 KiB batches", true, 1 << 10, true},
		{"indexed, 4 KiB batches", true, 4 << 10, true},
		{"indexed, default batches", true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t)
			if !tc.indexed {
				opts.Indexes = nil
			}
			opts.RecoveryBatchBytes = tc.batch

			st := openStore(t, dir, opts)
			applyFrom(t, st, ops[:half], 0)
			if got := st.Stats().Ingests > 0; got != tc.wantIngests {
				t.Fatalf("first session: Ingests = %d, want some: %v", st.Stats().Ingests, tc.wantIngests)
			}
			must(t, st.Close()) // mid-recovery, cleanly

			st = openStore(t, dir, opts)
			if off, err := st.GetOffset(-1); err != nil || off != int64(half-1) {
				t.Fatalf("reopened mid-recovery: GetOffset = %d, %v; want %d", off, err, half-1)
			}
			if tc.indexed && !st.deferIndex {
				t.Fatal("a store closed before its first index build does not defer it")
			}
			applyFrom(t, st, ops[half:], half)
			must(t, st.MarkRecovered())
			checkRows(t, st, model(ops))
			checkIndexes(t, st)
			if off, err := st.GetOffset(-1); err != nil || off != int64(len(ops)-1) {
				t.Fatalf("GetOffset = %d, %v; want %d", off, err, len(ops)-1)
			}

			// A third session catches up on a recovered store: an indexed
			// one maintains its entries per write (no ingestion), a plain
			// one ingests again.
			must(t, st.Close())
			st = openStore(t, dir, opts)
			more := append(slices.Clone(ops[:500]), del("m001"), set("m002", "fav=new"))
			applyFrom(t, st, more, len(ops))
			must(t, st.MarkRecovered())
			checkRows(t, st, model(append(slices.Clone(ops), more...)))
			checkIndexes(t, st)
		})
	}
}

// applyFrom is apply with offsets starting at first.
func applyFrom(t testing.TB, st *Store, ops []op, first int) {
	t.Helper()
	for i, o := range ops {
		if o.del {
			must(t, st.Delete(o.key))
		} else {
			must(t, st.Set(o.key, []byte(o.value)))
		}
		must(t, st.SetOffset(int64(first+i)))
	}
}

// model is the table ops leave: the last write of each key.
func model(ops []op) map[string]string {
	m := map[string]string{}
	for _, o := range ops {
		if o.del {
			delete(m, o.key)
		} else {
			m[o.key] = o.value
		}
	}
	return m
}

// checkRows asserts the store holds exactly the rows of want.
func checkRows(t testing.TB, st *Store, want map[string]string) {
	t.Helper()
	it, err := st.Iterator()
	must(t, err)
	got := map[string]string{}
	for it.Next() {
		v, err := it.Value()
		must(t, err)
		got[string(it.Key())] = string(v)
	}
	must(t, it.Err())
	it.Release()
	if !maps.Equal(got, want) {
		t.Fatalf("%d rows, want %d; differing: %q", len(got), len(want), diffKeys(got, want))
	}
	for k, v := range want { // and point reads agree with the iterator
		g, err := st.Get(k)
		must(t, err)
		if string(g) != v {
			t.Fatalf("Get(%q) = %q, want %q", k, g, v)
		}
	}
}

func diffKeys(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

package state

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestMemtablesLeaveTheBlockCacheItsSize opens more stores on one shared
// cache than their memtables fit in and checks the cache still holds a
// table's blocks: Pebble charges memtables to the cache, and without the
// room each store brings (cacheroom.go) the memtables left it none, so
// every read of the second pass below missed.
func TestMemtablesLeaveTheBlockCacheItsSize(t *testing.T) {
	const (
		cacheSize = 4 << 20
		memtable  = 1 << 20
		stores    = 8 // their memtables, up to 2 MiB each, reserve 4x the cache
		rows      = 12_000
	)
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref()
	// Values that do not compress, so the sstables are as large as the rows.
	random := rand.NewChaCha8([32]byte{1})
	value := make([]byte, 256)
	var all []*Store
	for i := range stores {
		opts := Options{Logger: testLogger(t), Cache: cache, MemTableSize: memtable}
		st := openStore(t, filepath.Join(t.TempDir(), fmt.Sprint(i)), opts)
		must(t, st.MarkRecovered())
		// About 3 MiB: the memtable grows to its full size, is flushed
		// and kept for reuse, so each store reserves two.
		for k := range rows {
			_, _ = random.Read(value)
			must(t, st.Set(fmt.Sprintf("k%06d", k), value))
		}
		all = append(all, st)
	}
	// The first store's early rows are in sstables now: read them twice.
	read := func() (misses int64) {
		before := cache.Metrics().Misses
		for k := range rows / 2 {
			if _, err := all[0].Get(fmt.Sprintf("k%06d", k)); err != nil {
				t.Fatal(err)
			}
		}
		return cache.Metrics().Misses - before
	}
	first := read()

	if first == 0 {
		t.Fatal("the first pass read no block from disk: the rows are not in sstables, the test proves nothing")
	}
	if second := read(); second > first/10 {
		t.Errorf("second pass over the same rows: %d block misses (first pass %d); the memtables of %d stores left the cache no room",
			second, first, stores)
	}
}

package state

import "github.com/cockroachdb/pebble/v2"

// Pebble charges every memtable it allocates to the DB's block cache
// (Cache.Reserve): a DB's memtables shrink the room its cache has for
// blocks, so that one number bounds a DB's memory. That fits one DB per
// process. RTM's stores share one cache, and a process opens a store per
// partition of each table it keeps: in the delivery benchmark 112 stores'
// memtables took 236 MiB of the 256 MiB cache, and 65-74% of block reads
// missed (2-3% once the memtables were given room of their own).
//
// So an open store brings its memtables' room with it: it grows the
// shared cache by memtableRoom while it is open, and the cache keeps at
// least the size it was configured with (state_cache_bytes) for data,
// index and filter blocks. Room a store's memtables do not take (a store
// that writes little keeps a small one) is left to blocks. Pebble's memory
// in a process is then at most the configured cache plus memtableRoom per
// open store, more only while flushes fall behind (up to
// MemTableStopWritesThreshold memtables). The room is fixed rather than
// following each store's memtables: Pebble reports them only through
// DB.Metrics, which its flush events cannot call (they hold the DB's
// mutex).

// memtableRoom is the cache capacity a store adds while it is open: the
// memtable being written and the flushed one Pebble keeps to reuse for
// the next (each reserved at the full MemTableSize once the store has
// written that much).
func memtableRoom(o Options) int64 { return 2 * int64(o.MemTableSize) }

// growCache adds n bytes to the cache's capacity until release is called.
// It is the inverse of Pebble's own reservation: a negative reservation
// raises the cache's target size by n (Pebble v2's shard.targetSize is
// its maximum size minus what is reserved). The room holds a reference to
// the cache, so release may come after the last DB using it has closed.
func growCache(c *pebble.Cache, n int64) (release func()) {
	c.Ref()
	unreserve := c.Reserve(-int(n))
	return func() {
		unreserve()
		c.Unref()
	}
}

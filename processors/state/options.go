package state

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Indexer derives the index keys of one row. It is called with the row's key
// and its new value on every Set (during processing and during changelog
// recovery) and with the old value when the row changes or is deleted, so it
// must be deterministic: the same (key, value) must always give the same
// index keys, or stale entries can no longer be found and removed.
//
// Index keys are compared as bytes, so they must be orderable byte strings:
// encode times and numbers fixed-width big-endian or zero-padded decimal
// (e.g. fmt.Sprintf("%020d", unixNanos)), never plain decimal. An index key
// must not contain a zero byte (it separates index key and primary key).
// Duplicates are ignored. Returning an error fails the write (and thereby
// the Goka processor); for a value the indexer cannot understand, prefer
// returning no keys.
type Indexer func(key string, value []byte) ([]string, error)

// Default tuning. Each value is explained where it is used in pebbleOptions
// and in the write path.
const (
	defaultMemTableSize       = 4 << 20
	defaultCacheSize          = 256 << 20
	defaultRecoveryBatchBytes = 4 << 20
	defaultCloseTimeout       = 5 * time.Second
)

// Options configures the stores a Builder opens. The zero value is usable:
// no indexes and the defaults above.
type Options struct {
	// Indexes maps an index name to the function that derives its keys.
	// Names must be non-empty and must not contain a zero byte. Renaming an
	// index (e.g. "fav" to "fav.v2") is how to roll out a changed Indexer:
	// a store whose set of index names changed rebuilds all its indexes.
	Indexes map[string]Indexer

	// IndexOnly makes the store keep, of each row, only its index keys:
	// what Lookup and the scans read, and what a write compares to find
	// the entries that change. A row without index keys takes no space,
	// and a write that leaves a row's index keys as they were writes
	// nothing. It suits a copy of a table that is only ever searched by
	// index: the audience stage's copy of the member table, where most
	// members favourite nothing and most profile updates (a delivery's
	// result) change no favourite. Get, Has and the iterators of such a
	// store return ErrIndexOnly.
	//
	// Its rows are in a layout of their own, recorded in the directory
	// (see layout.go): a directory written with values, or with another
	// index set, is discarded and the table restored from its changelog.
	IndexOnly bool

	// Logger receives the store's events (discarded stores, index
	// rebuilds) and Pebble's own log at debug level. Default slog.Default().
	Logger *slog.Logger

	// MemTableSize is Pebble's memtable size in bytes: what one partition
	// buffers of the writes made while processing before a flush, and
	// with up to three more waiting to be flushed, what it may hold at
	// most. Changelog recovery does not use memtables (its batches are
	// ingested as sstables, see ingest.go), so it only has to suit the
	// processing write rate; every partition of every table keeps at least
	// one resident, which is why it is small. Default 4 MiB.
	MemTableSize uint64

	// CacheSize is the Pebble block cache in bytes, shared by all the
	// partitions a Builder opens (the busy ones get the room). Point reads
	// (joins, Goka Get) miss it on every table larger than it. Default 256 MiB
	// (it fills only as blocks are read). It is room for blocks only:
	// Pebble charges memtables to the cache, so each open store adds room
	// for two of its memtables to it (see cacheroom.go).
	CacheSize int64

	// Cache, when set, is used instead of a new cache of CacheSize: one
	// cache shared by every store of the process (the caller owns it).
	// Builders made again and again (a supervised stage restarting) must
	// share one, or each would strand a cache.
	Cache *pebble.Cache

	// RecoveryBatchBytes is how large the write batch grows while the
	// table is recovered from its changelog before it is committed (as an
	// ingested sstable, see ingest.go). It is most of what a recovering
	// partition holds in memory; larger batches recover faster (fewer,
	// larger L0 files to compact). Default 4 MiB.
	RecoveryBatchBytes int

	// RecoveryMemory, when set, bounds the recovery batches of every store
	// that shares it: each gets its share of it, at most RecoveryBatchBytes
	// (see RecoveryMemory). One per process, like Cache.
	RecoveryMemory *RecoveryMemory

	// OnFailure, when set, is called once per opened store, on its own
	// goroutine, when the store fails: a write or flush failed (disk full,
	// read-only, directory removed, I/O error). From then on every method
	// of that store returns err (it wraps ErrFailed and the cause), so Goka
	// will fail too, but only at the partition's next write; this callback
	// lets the owner stop the stage and report it not ready at once. It may
	// call the store's Close. Failed stores are restored from the changelog
	// on the next start.
	OnFailure func(topic string, partition int32, err error)

	// OnRecovered, when set, is told how many changelog records (row
	// writes and deletes) each committed recovery batch restored: the
	// owner's recovery-progress metric. It is called with the store's
	// lock held and must be quick.
	OnRecovered func(topic string, records int)

	// CloseTimeout bounds Close of a failed store: how long Pebble's own
	// Close gets once the store has failed. It normally needs about
	// 100 ms, but waits for any file operation in progress, which a dead
	// disk may never finish; Close then returns an error and leaves Pebble
	// closing in the background (with the directory's LOCK) until the
	// process exits. A healthy Close is not bounded. Default 5 s.
	CloseTimeout time.Duration

	// FS is the file system the store directories live on. Default
	// vfs.Default. Tests and chaos runs pass a FaultFS (or Pebble's
	// vfs/errorfs) to make writes fail on demand.
	FS vfs.FS
}

// ErrInvalidOptions is wrapped by the error Validate returns.
var ErrInvalidOptions = errors.New("invalid state options")

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(o.Indexes)) {
		fn := o.Indexes[name]
		switch {
		case name == "":
			problems = append(problems, "index name must not be empty")
		case strings.IndexByte(name, 0) >= 0:
			problems = append(problems, fmt.Sprintf("index name %q must not contain a zero byte", name))
		}
		if fn == nil {
			problems = append(problems, fmt.Sprintf("index %q has no Indexer", name))
		}
	}
	if o.IndexOnly && len(o.Indexes) == 0 {
		problems = append(problems, "IndexOnly needs at least one index")
	}
	if o.CacheSize < 0 {
		problems = append(problems, fmt.Sprintf("CacheSize %d must not be negative", o.CacheSize))
	}
	if o.RecoveryBatchBytes < 0 {
		problems = append(problems, fmt.Sprintf("RecoveryBatchBytes %d must not be negative", o.RecoveryBatchBytes))
	}
	if o.CloseTimeout < 0 {
		problems = append(problems, fmt.Sprintf("CloseTimeout %v must not be negative", o.CloseTimeout))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
	}
	return nil
}

// blockCache is the block cache of the stores opened with o: the
// caller's (Cache), or a new one of CacheSize whose reference lives as
// long as the process.
func (o Options) blockCache() *pebble.Cache {
	if o.Cache != nil {
		return o.Cache
	}
	return pebble.NewCache(o.CacheSize)
}

// withDefaults fills in every unset field; it is the one place defaults live.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = defaultMemTableSize
	}
	if o.CacheSize == 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.RecoveryBatchBytes == 0 {
		o.RecoveryBatchBytes = defaultRecoveryBatchBytes
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = defaultCloseTimeout
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	return o
}

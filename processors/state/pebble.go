package state

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// pebbleOptions tunes Pebble for a table partition that is bulk-loaded from
// its changelog and then updated key by key.
func (s *Store) pebbleOptions(cache *pebble.Cache, f *failure) *pebble.Options {
	o := &pebble.Options{
		// Every file operation goes through the fail-stop guard, which
		// fails the store on the first write error and keeps Pebble's
		// retries of failed flushes from spinning (see failGuard).
		FS: s.fs,
		EventListener: &pebble.EventListener{
			BackgroundError: s.backgroundError(f),
			DataCorruption:  s.dataCorruption(f),
			WriteStallBegin: func(pebble.WriteStallBeginInfo) { s.stats.writeStalls.Add(1) },
		},
		// The WAL is off for the whole life of the store, not only during
		// recovery. Its only use would be to replay writes after a crash,
		// and after a crash this store is discarded anyway (the local
		// state may be ahead of the changelog; see doc.go). Close flushes
		// the memtables before it writes the clean-shutdown marker. This
		// is what Kafka Streams does with RocksDB.
		DisableWAL: true,
		// Memtables take only the writes made while processing (recovery
		// ingests sstables, see ingest.go), so they are small: each
		// partition of each table keeps one resident, and a process holds
		// many (64 stores in bench/audience, where 16 MiB memtables were
		// 700 MiB of its 2.2 GB). Pebble starts a DB's memtable at 256 KiB
		// and doubles it up to this size. The stop threshold lets more
		// fill while one is flushed instead of stalling the writer.
		MemTableSize:                s.opts.MemTableSize,
		MemTableStopWritesThreshold: 4,
		// A changelog replay ingests sstables that each span the whole
		// key range, so L0 fills quickly; tolerate a deep L0 rather than
		// stall writes while compactions (with 2 cores, one at a time)
		// catch up. (Ingestion itself is never stalled by L0 depth.)
		L0CompactionThreshold: 4,
		L0StopWritesThreshold: 64,
		Cache:                 cache,
		FormatMajorVersion:    pebble.FormatNewest,
		Logger:                pebbleLogger{s.log, f},
	}
	o.EnsureDefaults()
	for i := range o.Levels {
		// Point reads (Goka's Get, the old value read by index
		// maintenance) right after a recovery meet a deep L0 whose files
		// all span the whole key range: a bloom filter per table (about
		// 1.25 bytes per key) lets them skip almost every one.
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

// pebbleLogger sends Pebble's log to slog: informational chatter (flushes,
// compactions) at debug level.
type pebbleLogger struct {
	log  *slog.Logger
	fail *failure
}

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble for states it cannot continue from:
// corruption, and a failed MANIFEST write (a flush whose sstable was
// written but whose MANIFEST edit failed, e.g. on a full disk). On a
// healthy store it keeps Pebble's contract: the process exits. On a failed
// store it returns (Pebble then returns the error it had): that store is
// never written again nor reused, its directory is discarded at the next
// Open, so nothing Pebble could get wrong from here reaches any data, and
// the failure reaches the owner as an error instead of taking every other
// stage of the process down with it. The guard marks the store failed at
// the failed write itself, before Pebble gets here.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
	if l.fail.get() != nil {
		return
	}
	pebble.DefaultLogger.Fatalf(format, args...)
}

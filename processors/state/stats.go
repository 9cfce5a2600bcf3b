package state

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Stats counts what one store has done since it was created.
type Stats struct {
	Sets, Deletes           uint64 // row writes
	IndexPuts, IndexDeletes uint64 // index entries written and removed per write
	Commits                 uint64 // Pebble batches committed (ingested or not)
	// Ingests are the bulk-load batches written as sstables and
	// ingested instead of going through a memtable (see ingest.go).
	Ingests     uint64
	Scans       uint64 // index scans
	Discards    uint64 // stores discarded because they were not closed cleanly
	Rebuilds    uint64 // full index rebuilds
	WriteStalls uint64 // writes Pebble held until a flush or compaction caught up
	// OldRowReads are the point reads index maintenance made for a row's
	// old value because it was not the row Get had just read.
	OldRowReads uint64
}

type counters struct {
	sets, deletes, indexPuts, indexDeletes, commits, ingests, scans, discards, rebuilds, writeStalls, oldRowReads atomic.Uint64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Sets: c.sets.Load(), Deletes: c.deletes.Load(),
		IndexPuts: c.indexPuts.Load(), IndexDeletes: c.indexDeletes.Load(),
		Commits: c.commits.Load(), Ingests: c.ingests.Load(), Scans: c.scans.Load(),
		Discards: c.discards.Load(), Rebuilds: c.rebuilds.Load(),
		WriteStalls: c.writeStalls.Load(), OldRowReads: c.oldRowReads.Load(),
	}
}

// PebbleMetrics returns Pebble's own metrics of the store (disk usage,
// compactions, the shared block cache), or nil when it is not open. It
// is cheap enough to call at every scrape.
func (s *Store) PebbleMetrics() *pebble.Metrics {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil
	}
	return s.db.Metrics()
}

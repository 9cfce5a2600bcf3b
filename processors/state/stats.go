package state

import "sync/atomic"

// Stats counts what one store has done since it was created.
type Stats struct {
	Sets, Deletes           uint64 // row writes
	IndexPuts, IndexDeletes uint64 // index entries written and removed per write
	Commits                 uint64 // Pebble batches committed
	Scans                   uint64 // index scans
	Discards                uint64 // stores discarded because they were not closed cleanly
	Rebuilds                uint64 // full index rebuilds
	WriteStalls             uint64 // writes Pebble held until a flush or compaction caught up
}

type counters struct {
	sets, deletes, indexPuts, indexDeletes, commits, scans, discards, rebuilds, writeStalls atomic.Uint64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Sets: c.sets.Load(), Deletes: c.deletes.Load(),
		IndexPuts: c.indexPuts.Load(), IndexDeletes: c.indexDeletes.Load(),
		Commits: c.commits.Load(), Scans: c.scans.Load(),
		Discards: c.discards.Load(), Rebuilds: c.rebuilds.Load(),
		WriteStalls: c.writeStalls.Load(),
	}
}

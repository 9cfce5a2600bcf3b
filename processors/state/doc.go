// Package state is the Goka table storage of RTM: one Pebble DB per table
// partition, with partition-local secondary indexes.
//
// # Use
//
//	reg := state.NewRegistry()
//	builder, err := state.Builder(dataDir, state.Options{
//		Indexes: map[string]state.Indexer{"fav": favouriteItems},
//	}, reg)
//	p, err := goka.NewProcessor(brokers, graph, goka.WithStorageBuilder(builder))
//
// and in a callback, to answer "who on my partition favourited item X":
//
//	st := reg.Store(string(goka.GroupTable(group)), ctx.Partition())
//	err := st.Lookup("fav", itemID, func(member string) error { ... })
//
// Each partition lives in <root>/<topic>/<partition>. Inside, keys carry a
// keyspace byte: 'd' rows, 'i' index entries, 'm' metadata such as the
// offset (see keys.go). Goka's Get, Has, Iterator and IteratorWithRange see
// only rows, with their original keys.
//
// # Indexes
//
// An Indexer maps a row to index keys. On every Set the store reads the
// old value, and in the same Pebble batch as the row writes the index
// entries only the new value has and deletes those only the old value had;
// Delete removes them all. Recovery from the changelog goes through the
// same Set and Delete, so indexes come back with the table. Scans
// (ScanIndex, Lookup, ScanIndexRange) read the index of one partition only:
// item-wide questions are broadcast to every partition and each answers for
// its own members. Index keys are compared as bytes: encode times and
// numbers fixed-width big-endian or zero-padded.
//
// A store with Options.IndexOnly keeps, under a row's key, only the row's
// index keys (layout.go): rows without any take no space, writes that
// leave them unchanged write nothing, and the rows cannot be read back
// (ErrIndexOnly). For a copy of a table that is only searched by index.
//
// # Recovery
//
// Until Goka calls MarkRecovered, writes go into one large batch that is
// committed, unsynced, every Options.RecoveryBatchBytes (or the store's
// share of Options.RecoveryMemory); reads commit it first, so they see
// every write. A full batch of a store that keeps no index per write is
// committed by sorting it into an sstable and ingesting that, bypassing
// the memtables (see ingest.go). When the store was empty at Open (a new
// instance, or a discarded store), index entries are not maintained per
// write at all: MarkRecovered builds them in one pass over the rows, so
// recovery never reads old values. A store reopened after a clean Close
// catches up on the changelog tail with per-write index maintenance.
//
// # What is atomic
//
// A row and its index entries are always written in one batch, so they
// never disagree. The Goka offset is stored in the same DB:
//
//   - During recovery Goka calls Set/Delete and then SetOffset(o) for each
//     changelog message, on one goroutine. The offset goes into the pending
//     batch right before it is committed, so each committed batch holds
//     exactly the changelog up to the offset it records. (A read in the
//     middle of a message commits that message's write with the previous
//     offset; replaying the message is harmless.)
//   - After recovery Goka calls Set in the callback and SetOffset later,
//     from the producer goroutine, when the changelog write is
//     acknowledged. So a row is stored before its offset: rows can be
//     ahead of the stored offset, never behind. The offset is written with
//     the next row's batch, or by Close. On restart Goka replays the
//     changelog after the offset, which rewrites the rows that were ahead
//     with the same values.
//
// # Crashes
//
// Goka writes local state before the changelog write is acknowledged and
// commits input offsets after that, so after a kill the local store can be
// ahead of Kafka, and re-delivered input would be applied a second time to
// state that already has it. The store therefore does what Kafka Streams
// does under exactly-once: Close flushes everything, closes the DB and
// then writes a CLEAN marker (synced); Open removes it before the first
// write. A non-empty store directory without the marker is discarded (and
// logged with slog) and the table is restored from the changelog: GetOffset
// returns the default, so Goka recovers from the oldest offset.
//
// Because a crashed store is never reused, Pebble's write-ahead log would
// protect nothing: it is disabled, and Close flushes the memtables instead.
// Writes are never synced; the changelog is the durable copy.
//
// The guarantee: after any restart, local state (rows, indexes, offset)
// equals the changelog; processing is at-least-once. A message whose
// effects reached the changelog but whose input offset was not committed
// is processed again, against state that already contains its effects.
// Stages must therefore make updates idempotent: deduplicate by event or
// offer ID (deterministic IDs, see DESIGN.md), or apply a change only if
// its version is newer than the one stored in the row.
//
// One gap remains: if a changelog write fails, Goka stops the processor
// and closes the store cleanly although it holds a row the changelog does
// not. Such a row survives until the key is written again.
//
// # Failures
//
// A store whose writes or flushes fail (disk full, read-only, directory
// removed, I/O error, or an sstable found corrupt or missing) is fail-stop.
// Pebble itself only retries: a failed flush is retried at once and
// forever, every write stalled behind it waits forever, and Close waits
// for them. Measured before this: with the data directory removed, 471k
// "background error" log lines, a whole core busy after SIGTERM, a Set
// that never returned, a Close that never returned. So the store watches
// for the first failure itself, in three places: its FS (Options.FS
// behind a guard, see failGuard) sees every failed write-side operation
// before Pebble does, and Pebble's BackgroundError and DataCorruption
// events report the rest. From then on:
//
//   - every method returns an error wrapping ErrFailed and the cause,
//     without touching Pebble; Failed returns it too, and
//     Options.OnFailure is called once, so the owner can stop the stage;
//   - writes already inside Pebble when it fails return then as well: all
//     Pebble writes run on a worker goroutine the caller can stop waiting
//     for (runCalls);
//   - nothing reaches the disk any more: write-side operations are skipped
//     (reported done), which ends Pebble's retries and stalls, and creates
//     and opens wait 100 ms each, so no retry loop can spin. A failed store
//     uses no CPU;
//   - Close does not flush, never writes the CLEAN marker (so the next
//     Open discards the directory and Goka restores the table from the
//     changelog) and gives Pebble's own Close at most
//     Options.CloseTimeout before it returns, leaving Pebble closing on a
//     leaked goroutine until the process exits.
//
// Not bounded: a write that Pebble stalls while the store is healthy
// (flushes slower than writes) waits as before, and a file operation that
// hangs without failing (a dead disk or NFS server) fails nothing, so
// nothing is detected. A healthy Close is not bounded either.
package state

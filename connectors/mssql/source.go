package mssql

import "context"

// NoCheckpoint is the since-version of a table the bridge has never
// written: Poll answers it with a full snapshot.
const NoCheckpoint int64 = -1

// Source is what the bridge polls. One Poll must read the current version,
// the minimum valid version and the changes in one consistent snapshot (on
// SQL Server: one SNAPSHOT-isolation transaction), so the version written as
// checkpoint covers exactly the rows returned.
type Source interface {
	// Poll returns the net changes to t after version since, at most limit
	// rows (plus rows sharing the last row's version, so that a version is
	// never split across batches). When since is NoCheckpoint or older than
	// the table's minimum valid version, it returns a full snapshot instead
	// (Batch.Resync) with every row as an insert at the current version.
	Poll(ctx context.Context, t TableConfig, since int64, limit int) (Batch, error)
}

// Batch is one consistent read of a table's changes.
type Batch struct {
	// CurrentVersion is CHANGE_TRACKING_CURRENT_VERSION() in the snapshot.
	CurrentVersion int64
	// MinValidVersion is CHANGE_TRACKING_MIN_VALID_VERSION for the table.
	MinValidVersion int64
	// Resync is set when Changes is a full snapshot rather than net changes.
	Resync bool
	// Through is the checkpoint after this batch: every change with a
	// version <= Through is in this batch or an earlier one. It is
	// CurrentVersion unless the batch was cut at limit.
	Through int64
	// Changes are ordered by version.
	Changes []Change
}

// Change is one net change of one row.
type Change struct {
	// Version is SYS_CHANGE_VERSION: the last version that changed the row.
	Version int64
	// Op is topics.OpInsert, OpUpdate or OpDelete.
	Op string
	// Key holds the primary-key columns.
	Key map[string]any
	// Row holds every tracked column; nil for deletes.
	Row map[string]any
}

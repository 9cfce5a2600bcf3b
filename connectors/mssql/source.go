package mssql

import "context"

// NoCheckpoint is the version of a table the bridge has never written: the
// bridge starts it with a resync (the initial load).
const NoCheckpoint int64 = -1

// Source is what the bridge reads. Every method reads one consistent
// snapshot (on SQL Server: one SNAPSHOT-isolation transaction), so the
// identity and versions it reports describe exactly the rows it returns.
type Source interface {
	// Poll reads, in one snapshot spanning every table of the group, the
	// database identity, the current version and, per table, the minimum
	// valid version and the net changes after since[i]: at most limit rows
	// per table plus the rows sharing the last row's version, so a version
	// is never split. A table whose since is NoCheckpoint, below its minimum
	// valid version or above the current version gets no changes (the
	// bridge resynchronises it).
	Poll(ctx context.Context, tables []TableConfig, since []int64, limit int) (Snapshot, error)
	// Page reads up to limit rows of t whose primary key follows after (nil:
	// from the first row), in primary-key order: one chunk of a resync.
	Page(ctx context.Context, t TableConfig, after map[string]any, limit int) (Page, error)
	// Missing returns which of keys have no row in t: the sweep at the end
	// of a resync emits deletes for them.
	Missing(ctx context.Context, t TableConfig, keys []map[string]any) (Missing, error)
}

// Snapshot is one consistent read of a group's changes.
type Snapshot struct {
	// Database identifies the database: its recovery fork GUID, which a
	// restore changes.
	Database string
	// CurrentVersion is CHANGE_TRACKING_CURRENT_VERSION() in the snapshot.
	CurrentVersion int64
	// Tables holds one entry per table polled, in the order asked.
	Tables []TableChanges
}

// TableChanges are one table's changes in a Snapshot.
type TableChanges struct {
	// MinValidVersion is CHANGE_TRACKING_MIN_VALID_VERSION for the table.
	MinValidVersion int64
	// Through is the table's checkpoint after these changes: every change
	// with a version <= Through is here or was before. It is the snapshot's
	// CurrentVersion unless the changes were cut at limit.
	Through int64
	// Changes are ordered by version.
	Changes []Change
}

// Page is one chunk of a table read in primary-key order.
type Page struct {
	Database       string
	CurrentVersion int64
	// Rows are the chunk's rows as inserts at CurrentVersion, in
	// primary-key order.
	Rows []Change
}

// Missing answers which keys are gone, as of CurrentVersion.
type Missing struct {
	Database       string
	CurrentVersion int64
	// Keys are the asked keys that have no row, in the order asked.
	Keys []map[string]any
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

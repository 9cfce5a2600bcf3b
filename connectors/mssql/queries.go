package mssql

import (
	"fmt"
	"strings"
)

// All T-SQL the bridge sends lives in this file. Table and column names are
// spliced in from TableConfig, which Validate restricts to plain
// identifiers; every value travels as a parameter.

// qSetSnapshot starts each poll's transaction: the current version, the
// minimum valid version and the change rows are then read from one
// snapshot, so the checkpoint written covers exactly the rows returned.
// Snapshot isolation must be allowed on the database (schema.sql).
const qSetSnapshot = `SET TRANSACTION ISOLATION LEVEL SNAPSHOT`

// qVersions reads the database's current version and the table's minimum
// valid version. @p1 is the two-part table name, e.g. 'dbo.items'.
const qVersions = `SELECT CHANGE_TRACKING_CURRENT_VERSION(), CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1))`

// qChanges returns the net changes after @p1 (the checkpoint), at most @p2
// rows plus ties on the last version, up to @p3 (the snapshot's current
// version). Key columns come from CT (they survive a delete); the other
// columns come from the joined live row. row_present is 0 when the live row
// is gone: a row deleted after an insert or update still shows op I or U,
// and the bridge treats it as a delete.
func qChanges(t TableConfig) string {
	var cols, join []string
	cols = append(cols, "CT.SYS_CHANGE_VERSION", "CT.SYS_CHANGE_OPERATION",
		fmt.Sprintf("CASE WHEN T.[%s] IS NULL THEN 0 ELSE 1 END AS row_present", t.PrimaryKey[0]))
	for _, k := range t.PrimaryKey {
		cols = append(cols, fmt.Sprintf("CT.[%s]", k))
		join = append(join, fmt.Sprintf("T.[%s] = CT.[%s]", k, k))
	}
	for _, c := range nonKey(t) {
		cols = append(cols, fmt.Sprintf("T.[%s]", c))
	}
	return fmt.Sprintf(`SELECT TOP (@p2) WITH TIES %s
FROM CHANGETABLE(CHANGES dbo.[%s], @p1) AS CT
LEFT OUTER JOIN dbo.[%s] AS T ON %s
WHERE CT.SYS_CHANGE_VERSION <= @p3
ORDER BY CT.SYS_CHANGE_VERSION`, strings.Join(cols, ", "), t.Name, t.Name, strings.Join(join, " AND "))
}

// qSnapshot reads the whole table for a resync, primary-key columns first.
func qSnapshot(t TableConfig) string {
	var cols []string
	for _, c := range append(append([]string{}, t.PrimaryKey...), nonKey(t)...) {
		cols = append(cols, fmt.Sprintf("[%s]", c))
	}
	var order []string
	for _, k := range t.PrimaryKey {
		order = append(order, fmt.Sprintf("[%s]", k))
	}
	return fmt.Sprintf(`SELECT %s FROM dbo.[%s] ORDER BY %s`, strings.Join(cols, ", "), t.Name, strings.Join(order, ", "))
}

// nonKey returns the tracked columns that are not primary-key columns.
func nonKey(t TableConfig) []string {
	var out []string
	for _, c := range t.Columns {
		isKey := false
		for _, k := range t.PrimaryKey {
			isKey = isKey || k == c
		}
		if !isKey {
			out = append(out, c)
		}
	}
	return out
}

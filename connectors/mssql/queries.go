package mssql

import (
	"fmt"
	"strings"
)

// All T-SQL the bridge sends lives in this file. Table and column names are
// spliced in from TableConfig, which Validate restricts to plain
// identifiers; every value travels as a parameter.

// qSetSnapshot starts each read's transaction: the identity, the versions
// and the rows are then read from one snapshot, so the checkpoint written
// covers exactly the rows returned, and a group's tables are read at the
// same point. Snapshot isolation must be allowed on the database
// (schema.sql).
const qSetSnapshot = `SET TRANSACTION ISOLATION LEVEL SNAPSHOT`

// qVersions reads the database's current Change Tracking version and its
// identity: the recovery fork GUID, which every RESTORE changes, so a
// checkpoint taken on the database before a restore is recognised as
// belonging to another history even when the restored database's versions
// have since grown past it. Seeing the row of sys.database_recovery_status
// needs the database's owner or VIEW ANY DATABASE; without it the GUID
// reads NULL.
const qVersions = `SELECT CHANGE_TRACKING_CURRENT_VERSION(),
(SELECT CONVERT(NVARCHAR(36), recovery_fork_guid) FROM sys.database_recovery_status WHERE database_id = DB_ID())`

// qMinValid reads a table's minimum valid version. @p1 is the two-part
// table name, e.g. 'dbo.items'.
const qMinValid = `SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1))`

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

// qPage reads one chunk of a resync: at most @p1 rows, primary-key columns
// first, in primary-key order. With after, only rows whose key follows the
// key in @p2.. (one parameter per primary-key column, in key order) are
// read: keyset pagination, so every chunk is an index seek and no chunk
// depends on an offset that concurrent writes would shift.
func qPage(t TableConfig, after bool) string {
	var cols, order []string
	for _, c := range append(append([]string{}, t.PrimaryKey...), nonKey(t)...) {
		cols = append(cols, fmt.Sprintf("[%s]", c))
	}
	for _, k := range t.PrimaryKey {
		order = append(order, fmt.Sprintf("[%s]", k))
	}
	where := ""
	if after {
		// (k1 > @p2) OR (k1 = @p2 AND k2 > @p3) OR ...
		var ors []string
		for i := range t.PrimaryKey {
			var ands []string
			for j := 0; j < i; j++ {
				ands = append(ands, fmt.Sprintf("[%s] = @p%d", t.PrimaryKey[j], j+2))
			}
			ands = append(ands, fmt.Sprintf("[%s] > @p%d", t.PrimaryKey[i], i+2))
			ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		}
		where = "\nWHERE " + strings.Join(ors, " OR ")
	}
	return fmt.Sprintf(`SELECT TOP (@p1) %s FROM dbo.[%s]%s
ORDER BY %s`, strings.Join(cols, ", "), t.Name, where, strings.Join(order, ", "))
}

// qMissing returns the ordinals (1..n) of the n keys given as parameters
// (one per primary-key column, key by key) that have no row in the table.
// The ordinals are literals generated here, not values.
func qMissing(t TableConfig, n int) string {
	var values, cols, match []string
	p := 1
	for i := 1; i <= n; i++ {
		vs := []string{fmt.Sprint(i)}
		for range t.PrimaryKey {
			vs = append(vs, fmt.Sprintf("@p%d", p))
			p++
		}
		values = append(values, "("+strings.Join(vs, ", ")+")")
	}
	for _, k := range t.PrimaryKey {
		cols = append(cols, fmt.Sprintf("[%s]", k))
		match = append(match, fmt.Sprintf("T.[%s] = K.[%s]", k, k))
	}
	return fmt.Sprintf(`SELECT K.n FROM (VALUES %s) AS K(n, %s)
WHERE NOT EXISTS (SELECT 1 FROM dbo.[%s] AS T WHERE %s)
ORDER BY K.n`, strings.Join(values, ", "), strings.Join(cols, ", "), t.Name, strings.Join(match, " AND "))
}

// maxMissingKeys bounds the keys of one qMissing: SQL Server takes at most
// 2,100 parameters in a request.
func maxMissingKeys(t TableConfig) int { return 2000 / len(t.PrimaryKey) }

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

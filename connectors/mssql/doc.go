// Package mssql is the SQL Server Change Tracking bridge: it polls
// CHANGETABLE(CHANGES ...) for each configured table and writes every change
// to cdc.<table> as a topics.CDCRecord, together with the table's new
// checkpoint on cdc.checkpoints, in one Kafka transaction. A crash at any
// point neither loses nor duplicates a change version for read_committed
// consumers: the rows and the checkpoint commit or abort together, and a
// restart resumes from the last committed checkpoint.
//
// The bridge reads through the small Source interface. SQLSource implements
// it on a real database (go-mssqldb); MemCT is an in-memory Change Tracking
// table set with the same semantics, used by tests, benchmarks and the shop
// simulator.
package mssql

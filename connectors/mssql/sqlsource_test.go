package mssql

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/testkit"
)

// TestSQLSource runs against a real SQL Server when RTM_MSSQL_DSN is set
// (e.g. sqlserver://sa:Passw0rd!@localhost:1433?database=shop). The
// database must have Change Tracking and snapshot isolation enabled
// (schema.sql's ALTER DATABASE statements); the test creates and drops its
// own table.
func TestSQLSource(t *testing.T) {
	dsn := os.Getenv("RTM_MSSQL_DSN")
	if dsn == "" {
		t.Skip("RTM_MSSQL_DSN is not set")
	}
	ctx := testkit.Context(t)
	src, err := OpenSQL(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	name := fmt.Sprintf("rtm_it_%d", time.Now().UnixNano()%1e9)
	tc := TableConfig{Name: name, PrimaryKey: []string{"member_id", "item_id"}, PartitionColumn: "member_id",
		Columns: []string{"member_id", "item_id", "quantity", "price"}}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := src.db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(fmt.Sprintf(`CREATE TABLE dbo.%s (member_id NVARCHAR(64) NOT NULL, item_id NVARCHAR(64) NOT NULL,
		quantity INT NOT NULL, price DECIMAL(12,2) NULL, PRIMARY KEY (member_id, item_id))`, name))
	t.Cleanup(func() { src.db.ExecContext(context.Background(), "DROP TABLE dbo."+name) })
	exec(fmt.Sprintf(`ALTER TABLE dbo.%s ENABLE CHANGE_TRACKING`, name))

	poll := func(since int64) (Snapshot, TableChanges) {
		t.Helper()
		s, err := src.Poll(ctx, []TableConfig{tc}, []int64{since}, 100)
		if err != nil {
			t.Fatal(err)
		}
		return s, s.Tables[0]
	}
	s, b := poll(NoCheckpoint)
	if len(b.Changes) != 0 || s.Database == "" || len(s.Database) != 36 {
		t.Fatalf("first poll: %+v, want no changes and the recovery fork GUID", s)
	}
	since := s.CurrentVersion
	ins := fmt.Sprintf(`INSERT INTO dbo.%s VALUES (@p1, @p2, @p3, @p4)`, name)
	exec(ins, "M1", "I1", 1, "9.50")
	exec(ins, "M1", "I2", 2, nil)
	exec(ins, "M2", "I1", 3, "1.00")
	exec(fmt.Sprintf(`UPDATE dbo.%s SET quantity = 5 WHERE member_id = 'M1' AND item_id = 'I1'`, name))
	s2, b := poll(since)
	if len(b.Changes) != 3 || b.Through != s2.CurrentVersion || s2.Database != s.Database {
		t.Fatalf("inserts: %+v, want 3 changes through the current version of the same database", s2)
	}
	for _, c := range b.Changes {
		if c.Op != "i" || c.Row == nil {
			t.Errorf("change %+v, want an insert with a row", c)
		}
	}

	// Keyset pages of two rows: M1/I1, M1/I2, then M2/I1.
	p1, err := src.Page(ctx, tc, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p1.Rows) != 2 || p1.Rows[1].Key["item_id"] != "I2" || p1.Database != s.Database {
		t.Fatalf("first page: %+v", p1)
	}
	// The resume key goes through a checkpoint: JSON text, as decoded.
	p2, err := src.Page(ctx, tc, map[string]any{"member_id": "M1", "item_id": "I2"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Rows) != 1 || p2.Rows[0].Key["member_id"] != "M2" || p2.Rows[0].Row["price"] != json.Number("1.00") {
		t.Fatalf("second page: %+v", p2)
	}
	gone, err := src.Missing(ctx, tc, []map[string]any{{"member_id": "M1", "item_id": "I1"}, {"member_id": "M9", "item_id": "I1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(gone.Keys) != 1 || gone.Keys[0]["member_id"] != "M9" {
		t.Fatalf("missing: %+v, want only M9/I1", gone)
	}

	since = b.Through
	// Update then delete within the window: d. A row whose last change is
	// an update but which is gone from the join would also be d.
	exec(fmt.Sprintf(`UPDATE dbo.%s SET quantity = 9 WHERE member_id = 'M2'`, name))
	exec(fmt.Sprintf(`DELETE FROM dbo.%s WHERE member_id = 'M2'`, name))
	_, b = poll(since)
	if len(b.Changes) != 1 || b.Changes[0].Op != "d" || b.Changes[0].Row != nil || b.Changes[0].Key["item_id"] != "I1" {
		t.Fatalf("delete: %+v, want one d for M2/I1", b.Changes)
	}
}

package mssql

import (
	"context"
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

	b, err := src.Poll(ctx, tc, NoCheckpoint, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Resync || len(b.Changes) != 0 {
		t.Fatalf("first poll: %+v, want an empty resync", b)
	}
	since := b.Through
	ins := fmt.Sprintf(`INSERT INTO dbo.%s VALUES (@p1, @p2, @p3, @p4)`, name)
	exec(ins, "M1", "I1", 1, "9.50")
	exec(ins, "M1", "I2", 2, nil)
	exec(ins, "M2", "I1", 3, "1.00")
	exec(fmt.Sprintf(`UPDATE dbo.%s SET quantity = 5 WHERE member_id = 'M1' AND item_id = 'I1'`, name))
	b, err = src.Poll(ctx, tc, since, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Changes) != 3 || b.Through != b.CurrentVersion {
		t.Fatalf("inserts: %+v, want 3 changes through the current version", b)
	}
	for _, c := range b.Changes {
		if c.Op != "i" || c.Row == nil {
			t.Errorf("change %+v, want an insert with a row", c)
		}
	}
	since = b.Through
	// Update then delete within the window: d. A row whose last change is
	// an update but which is gone from the join would also be d.
	exec(fmt.Sprintf(`UPDATE dbo.%s SET quantity = 9 WHERE member_id = 'M2'`, name))
	exec(fmt.Sprintf(`DELETE FROM dbo.%s WHERE member_id = 'M2'`, name))
	b, err = src.Poll(ctx, tc, since, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Changes) != 1 || b.Changes[0].Op != "d" || b.Changes[0].Row != nil || b.Changes[0].Key["item_id"] != "I1" {
		t.Fatalf("delete: %+v, want one d for M2/I1", b.Changes)
	}
}

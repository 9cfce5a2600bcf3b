package mssql

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func testTables() []TableConfig {
	return []TableConfig{
		{Name: "items", PrimaryKey: []string{"item_id"}, PartitionColumn: "item_id", Columns: []string{"item_id", "price"}},
		{Name: "favorites", PrimaryKey: []string{"member_id", "item_id"}, PartitionColumn: "member_id",
			Columns: []string{"member_id", "item_id", "created_at"}},
	}
}

func item(id string, price int) map[string]any { return map[string]any{"item_id": id, "price": price} }

// pollOne polls one table of m.
func pollOne(t testing.TB, m *MemCT, cfg TableConfig, since int64, limit int) (Snapshot, TableChanges) {
	t.Helper()
	s, err := m.Poll(context.Background(), []TableConfig{cfg}, []int64{since}, limit)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.Tables[0]
}

// TestMemCTNetChanges checks the CHANGETABLE(CHANGES) collapse rules: the
// net operation between the since-version and now.
func TestMemCTNetChanges(t *testing.T) {
	items := testTables()[0]
	tests := []struct {
		name   string
		writes func(m *MemCT) error
		since  int64 // version to poll from, after setup writes
		setup  func(m *MemCT) error
		want   []Change
	}{
		{name: "insert then update is i",
			writes: func(m *MemCT) error {
				return errors.Join(m.Insert("items", item("I1", 100)), m.Update("items", item("I1", 90)))
			},
			want: []Change{{Version: 2, Op: "i", Key: map[string]any{"item_id": "I1"}, Row: item("I1", 90)}}},
		{name: "insert then delete is not returned",
			writes: func(m *MemCT) error {
				return errors.Join(m.Insert("items", item("I1", 100)), m.Delete("items", map[string]any{"item_id": "I1"}))
			}},
		{name: "update then delete is d",
			setup: func(m *MemCT) error { return m.Insert("items", item("I1", 100)) }, since: 1,
			writes: func(m *MemCT) error {
				return errors.Join(m.Update("items", item("I1", 90)), m.Delete("items", map[string]any{"item_id": "I1"}))
			},
			want: []Change{{Version: 3, Op: "d", Key: map[string]any{"item_id": "I1"}}}},
		{name: "delete then reinsert of an existing row is u",
			setup: func(m *MemCT) error { return m.Insert("items", item("I1", 100)) }, since: 1,
			writes: func(m *MemCT) error {
				return errors.Join(m.Delete("items", map[string]any{"item_id": "I1"}), m.Insert("items", item("I1", 80)))
			},
			want: []Change{{Version: 3, Op: "u", Key: map[string]any{"item_id": "I1"}, Row: item("I1", 80)}}},
		{name: "changes before since are not returned",
			setup: func(m *MemCT) error { return m.Insert("items", item("I1", 100)) }, since: 1,
			writes: func(m *MemCT) error { return m.Insert("items", item("I2", 5)) },
			want:   []Change{{Version: 2, Op: "i", Key: map[string]any{"item_id": "I2"}, Row: item("I2", 5)}}},
		{name: "one transaction is one version",
			writes: func(m *MemCT) error {
				return m.Txn(func(w Writer) error {
					return errors.Join(w.Insert("items", item("I2", 2)), w.Insert("items", item("I1", 1)))
				})
			},
			want: []Change{
				{Version: 1, Op: "i", Key: map[string]any{"item_id": "I1"}, Row: item("I1", 1)},
				{Version: 1, Op: "i", Key: map[string]any{"item_id": "I2"}, Row: item("I2", 2)},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMemCT(testTables()...)
			if err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				if err := tt.setup(m); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.writes(m); err != nil {
				t.Fatal(err)
			}
			_, b := pollOne(t, m, items, tt.since, 0)
			if b.Through != m.CurrentVersion() {
				t.Fatalf("batch through=%d, want %d", b.Through, m.CurrentVersion())
			}
			assertChanges(t, b.Changes, tt.want)
		})
	}
}

func assertChanges(t *testing.T, got, want []Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d changes %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Version != w.Version || g.Op != w.Op || encodeKey([]string{"item_id"}, g.Key) != encodeKey([]string{"item_id"}, w.Key) ||
			encodeKey([]string{"item_id", "price"}, g.Row) != encodeKey([]string{"item_id", "price"}, w.Row) || (g.Row == nil) != (w.Row == nil) {
			t.Errorf("change %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestMemCTWriteErrors(t *testing.T) {
	m, err := NewMemCT(testTables()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Insert("items", item("I1", 1)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"duplicate insert", func() error { return m.Insert("items", item("I1", 2)) }, ErrDuplicateKey},
		{"update missing", func() error { return m.Update("items", item("I9", 2)) }, ErrNoRow},
		{"delete missing", func() error { return m.Delete("items", map[string]any{"item_id": "I9"}) }, ErrNoRow},
	}
	for _, tt := range tests {
		if err := tt.do(); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := m.Insert("favorites", map[string]any{"member_id": "M1"}); err == nil {
		t.Error("insert without item_id: want an error")
	}
	if err := m.Insert("nope", item("I1", 1)); err == nil {
		t.Error("insert into unknown table: want an error")
	}
	// A failed transaction applies nothing and uses no version.
	v := m.CurrentVersion()
	err = m.Txn(func(w Writer) error {
		return errors.Join(w.Insert("items", item("I5", 5)), w.Insert("items", item("I1", 1)))
	})
	if !errors.Is(err, ErrDuplicateKey) || m.CurrentVersion() != v {
		t.Errorf("failed txn: err=%v version %d→%d", err, v, m.CurrentVersion())
	}
}

func TestMemCTCleanupAndLimit(t *testing.T) {
	items := testTables()[0]
	m, err := NewMemCT(testTables()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"I1", "I2", "I3"} {
		if err := m.Insert("items", item(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Txn(func(w Writer) error {
		return errors.Join(w.Update("items", item("I1", 2)), w.Update("items", item("I2", 2)))
	}); err != nil {
		t.Fatal(err)
	}
	// limit 1 cuts after I3 (version 3); limit 2 takes I3 and the tie pair.
	_, b := pollOne(t, m, items, 0, 1)
	if len(b.Changes) != 1 || b.Through != 3 {
		t.Errorf("limit 1: %d changes through %d, want 1 through 3", len(b.Changes), b.Through)
	}
	_, b = pollOne(t, m, items, 0, 2)
	if len(b.Changes) != 3 || b.Through != 4 {
		t.Errorf("limit 2 with ties: %d changes through %d, want 3 through 4", len(b.Changes), b.Through)
	}
	if err := m.Delete("items", map[string]any{"item_id": "I3"}); err != nil {
		t.Fatal(err)
	}
	m.Cleanup(4)
	_, b = pollOne(t, m, items, 3, 0)
	if b.MinValidVersion != 4 || len(b.Changes) != 0 {
		t.Errorf("poll below min valid: %+v, want min valid 4 and no changes", b)
	}
	_, b = pollOne(t, m, items, 4, 0)
	assertChanges(t, b.Changes, []Change{{Version: 5, Op: "d", Key: map[string]any{"item_id": "I3"}}})
}

func TestStartAt(t *testing.T) {
	m, err := NewMemCT(DefaultTables()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.StartAt(100); err != nil {
		t.Fatal(err)
	}
	if err := m.Insert("items", map[string]any{"item_id": "I1", "price": 10.0}); err != nil {
		t.Fatal(err)
	}
	_, b := pollOne(t, m, DefaultTables()[1], 100, 10)
	if m.CurrentVersion() != 101 || len(b.Changes) != 1 || b.Changes[0].Version != 101 {
		t.Fatalf("version %d, batch %+v", m.CurrentVersion(), b)
	}
	if err := m.StartAt(5); err == nil {
		t.Fatal("StartAt after writes succeeded")
	}
}

// TestMemCTRestore: a restore takes rows, history and version back to the
// backup and changes the recovery fork; later writes reuse versions.
func TestMemCTRestore(t *testing.T) {
	items := testTables()[0]
	m, err := NewMemCT(testTables()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(m.Insert("items", item("I1", 1)), m.Insert("items", item("I2", 2))); err != nil {
		t.Fatal(err)
	}
	before := m.Database()
	b := m.Backup()
	if err := errors.Join(m.Delete("items", map[string]any{"item_id": "I1"}), m.Insert("items", item("I3", 3))); err != nil {
		t.Fatal(err)
	}
	m.Restore(b)
	if m.CurrentVersion() != 2 || m.Database() == before {
		t.Fatalf("after restore: version %d database %s (was %s), want 2 and a new fork", m.CurrentVersion(), m.Database(), before)
	}
	if err := m.Insert("items", item("I4", 4)); err != nil { // v3 again, another change
		t.Fatal(err)
	}
	s, tc := pollOne(t, m, items, 1, 0)
	if s.Database != m.Database() {
		t.Errorf("poll database %s, want %s", s.Database, m.Database())
	}
	assertChanges(t, tc.Changes, []Change{
		{Version: 2, Op: "i", Key: map[string]any{"item_id": "I2"}, Row: item("I2", 2)},
		{Version: 3, Op: "i", Key: map[string]any{"item_id": "I4"}, Row: item("I4", 4)},
	})
	// The backup is a copy: writing after the restore does not change it.
	m.Restore(b)
	if _, tc := pollOne(t, m, items, 2, 0); len(tc.Changes) != 0 {
		t.Errorf("second restore of the same backup has changes %+v", tc.Changes)
	}
}

// TestMemCTPageAndMissing: keyset pages cover every live row once, in key
// order, whatever the page size; Missing names exactly the gone keys.
func TestMemCTPageAndMissing(t *testing.T) {
	favs := testTables()[1]
	m, err := NewMemCT(testTables()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range [][2]string{{"M2", "I1"}, {"M1", "I2"}, {"M1", "I1"}, {"M3", "I9"}} {
		if err := m.Insert("favorites", fav(k[0], k[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Delete("favorites", map[string]any{"member_id": "M3", "item_id": "I9"}); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1, 2, 3, 10} {
		var got []string
		var after map[string]any
		pages := 0
		for {
			p, err := m.Page(context.Background(), favs, after, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Rows) > size {
				t.Fatalf("page of %d rows, limit %d", len(p.Rows), size)
			}
			pages++
			for _, r := range p.Rows {
				if r.Op != "i" || r.Version != m.CurrentVersion() {
					t.Errorf("page row %+v, want an insert at the current version", r)
				}
				got = append(got, encodeKey(favs.PrimaryKey, r.Key))
			}
			if len(p.Rows) < size {
				break
			}
			after = p.Rows[len(p.Rows)-1].Key
		}
		want := []string{"M1\x00I1", "M1\x00I2", "M2\x00I1"}
		if fmt.Sprint(got) != fmt.Sprint(want) || pages != len(want)/size+1 {
			t.Errorf("size %d: keys %q in %d pages, want %q in %d", size, got, pages, want, len(want)/size+1)
		}
	}
	gone, err := m.Missing(context.Background(), favs, []map[string]any{
		{"member_id": "M1", "item_id": "I2"}, {"member_id": "M3", "item_id": "I9"}, {"member_id": "M4", "item_id": "I1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(gone.Keys) != 2 || gone.Keys[0]["member_id"] != "M3" || gone.Keys[1]["member_id"] != "M4" {
		t.Errorf("missing %+v, want M3/I9 and M4/I1", gone.Keys)
	}
}

// TestMemCTSnapshotAcrossTables: one Poll of two tables sees a transaction
// spanning them wholly, at one version.
func TestMemCTSnapshotAcrossTables(t *testing.T) {
	m, err := NewMemCT(testTables()...)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := m.Txn(func(w Writer) error {
				id := fmt.Sprintf("I%d", i)
				return errors.Join(w.Insert("items", item(id, i)), w.Insert("favorites", fav("M1", id)))
			}); err != nil {
				done <- err
				return
			}
		}
	}()
	for n := 0; n < 50; n++ {
		s, err := m.Poll(context.Background(), testTables(), []int64{0, 0}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := len(s.Tables[0].Changes), len(s.Tables[1].Changes); a != b || int64(a) != s.CurrentVersion {
			t.Fatalf("snapshot at version %d has %d item and %d favourite changes, want the same count", s.CurrentVersion, a, b)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

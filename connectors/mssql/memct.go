package mssql

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/rtm-project/rtm/topics"
)

// MemCT is an in-memory set of tables with SQL Server Change Tracking
// semantics, for tests, benchmarks and the shop simulator:
//   - one global version, incremented once per committed transaction
//     (every single-row write is its own transaction; Txn groups writes);
//   - per primary key, the last change version and the net operation since
//     any earlier version, as CHANGETABLE(CHANGES t, @v) reports it: insert
//     then update is i, insert then delete is not returned, update then
//     delete is d;
//   - a minimum valid version advanced by Cleanup, below which a reader must
//     resynchronise;
//   - a database identity (the recovery fork GUID) that Restore changes
//     while taking the tables, their change history and the version back to
//     a Backup, as RESTORE DATABASE does;
//   - every read (Poll, Page, Missing) under one lock: one snapshot, also
//     across the tables of one Poll.
//
// It is safe for concurrent use.
type MemCT struct {
	mu       sync.Mutex
	version  int64
	minValid int64
	database string
	forks    int
	tables   map[string]*memTable
}

type memTable struct {
	cfg  TableConfig
	rows map[string]*memRow // by encoded primary key
}

// memRow is one primary key's current value and its existence history.
type memRow struct {
	key  map[string]any
	row  map[string]any // nil when deleted
	hist []existence    // ascending versions; trimmed by Cleanup
}

// existence records that from version v on, the row existed (or not).
type existence struct {
	v      int64
	exists bool
}

// ErrNoRow is returned by Update and Delete for a key that has no row.
var ErrNoRow = errors.New("no such row")

// ErrDuplicateKey is returned by Insert for a key that already has a row.
var ErrDuplicateKey = errors.New("duplicate primary key")

// NewMemCT returns empty tables at version 0. Every new MemCT has the same
// identity (a restarted simulator is the same database); Restore gives it
// a new one.
func NewMemCT(tables ...TableConfig) (*MemCT, error) {
	if err := ValidateTables(tables); err != nil {
		return nil, fmt.Errorf("in-memory change tracking: %w", err)
	}
	m := &MemCT{tables: map[string]*memTable{}, database: forkGUID(0)}
	for _, t := range tables {
		m.tables[t.Name] = &memTable{cfg: t, rows: map[string]*memRow{}}
	}
	return m, nil
}

// forkGUID is the n-th recovery fork's GUID.
func forkGUID(n int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", n+1) }

// Writer is the write API of one transaction.
type Writer interface {
	Insert(table string, row map[string]any) error
	Update(table string, row map[string]any) error
	Upsert(table string, row map[string]any) error
	Delete(table string, key map[string]any) error
}

// Txn runs fn as one transaction: all its writes get the same new version,
// and none is applied if fn returns an error.
func (m *MemCT) Txn(fn func(w Writer) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	tx := &memTx{m: m, version: m.version + 1}
	if err := fn(tx); err != nil {
		return err
	}
	if len(tx.ops) == 0 {
		return nil
	}
	for _, op := range tx.ops {
		op()
	}
	m.version = tx.version
	return nil
}

// Insert adds a row; the key columns are read from row.
func (m *MemCT) Insert(table string, row map[string]any) error {
	return m.Txn(func(w Writer) error { return w.Insert(table, row) })
}

// Update replaces an existing row (every tracked column is taken from row;
// missing columns become NULL).
func (m *MemCT) Update(table string, row map[string]any) error {
	return m.Txn(func(w Writer) error { return w.Update(table, row) })
}

// Upsert inserts or updates.
func (m *MemCT) Upsert(table string, row map[string]any) error {
	return m.Txn(func(w Writer) error { return w.Upsert(table, row) })
}

// Delete removes the row with the given primary key.
func (m *MemCT) Delete(table string, key map[string]any) error {
	return m.Txn(func(w Writer) error { return w.Delete(table, key) })
}

// CurrentVersion is CHANGE_TRACKING_CURRENT_VERSION().
func (m *MemCT) CurrentVersion() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version
}

// Database is the current recovery fork GUID.
func (m *MemCT) Database() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.database
}

// Backup is a copy of a MemCT's tables, change history and versions, as a
// database backup holds them.
type Backup struct {
	version, minValid int64
	tables            map[string]*memTable
}

// Backup copies the current state.
func (m *MemCT) Backup() *Backup {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &Backup{version: m.version, minValid: m.minValid, tables: cloneTables(m.tables)}
}

// Restore replaces the state with the backup's, as RESTORE DATABASE does:
// the version goes back to the backup's (the next write reuses versions
// already handed out before the restore), the change history is the
// backup's, and the database gets a new recovery fork GUID.
func (m *MemCT) Restore(b *Backup) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version, m.minValid, m.tables = b.version, b.minValid, cloneTables(b.tables)
	m.forks++
	m.database = forkGUID(m.forks)
}

func cloneTables(in map[string]*memTable) map[string]*memTable {
	out := make(map[string]*memTable, len(in))
	for name, t := range in {
		c := &memTable{cfg: t.cfg, rows: make(map[string]*memRow, len(t.rows))}
		for k, r := range t.rows {
			c.rows[k] = &memRow{key: maps.Clone(r.key), row: maps.Clone(r.row), hist: slices.Clone(r.hist)}
		}
		out[name] = c
	}
	return out
}

// Cleanup forgets change history up to retainAfter, as SQL Server's
// retention cleanup does: the minimum valid version becomes retainAfter
// (never lower than before, never above the current version), and readers
// whose checkpoint is older must resynchronise.
func (m *MemCT) Cleanup(retainAfter int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	retainAfter = min(retainAfter, m.version)
	if retainAfter <= m.minValid {
		return
	}
	m.minValid = retainAfter
	for _, t := range m.tables {
		for k, r := range t.rows {
			// Keep the last entry at or before minValid: it says whether the
			// row existed at any valid since-version.
			i := 0
			for i+1 < len(r.hist) && r.hist[i+1].v <= retainAfter {
				i++
			}
			r.hist = r.hist[i:]
			if r.row == nil && len(r.hist) == 1 && r.hist[0].v <= retainAfter {
				delete(t.rows, k)
			}
		}
	}
}

func (m *MemCT) table(cfg TableConfig) (*memTable, error) {
	t, ok := m.tables[cfg.Name]
	if !ok {
		return nil, fmt.Errorf("in-memory change tracking: unknown table %s", cfg.Name)
	}
	return t, nil
}

// Poll implements Source: every table of the group is read under one lock,
// so a transaction spanning them is either wholly in the snapshot or not.
func (m *MemCT) Poll(ctx context.Context, cfgs []TableConfig, since []int64, limit int) (Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	if len(since) != len(cfgs) {
		return Snapshot{}, fmt.Errorf("in-memory change tracking: %d tables, %d checkpoints", len(cfgs), len(since))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{Database: m.database, CurrentVersion: m.version}
	for i, cfg := range cfgs {
		t, err := m.table(cfg)
		if err != nil {
			return Snapshot{}, err
		}
		tc := TableChanges{MinValidVersion: m.minValid, Through: m.version}
		if since[i] != NoCheckpoint && since[i] >= m.minValid && since[i] <= m.version {
			tc.Changes, tc.Through = m.changes(t, cfg, since[i], limit)
		}
		s.Tables = append(s.Tables, tc)
	}
	return s, nil
}

// changes is CHANGETABLE(CHANGES t, since) joined to the live rows.
func (m *MemCT) changes(t *memTable, cfg TableConfig, since int64, limit int) ([]Change, int64) {
	type keyed struct {
		k string
		r *memRow
	}
	var hits []keyed
	for k, r := range t.rows {
		if r.hist[len(r.hist)-1].v > since {
			hits = append(hits, keyed{k, r})
		}
	}
	// Order by version, then key, so batches are deterministic; the encoded
	// key is the map key, computed once per write.
	slices.SortFunc(hits, func(x, y keyed) int {
		if c := cmp.Compare(x.r.hist[len(x.r.hist)-1].v, y.r.hist[len(y.r.hist)-1].v); c != 0 {
			return c
		}
		return strings.Compare(x.k, y.k)
	})
	var out []Change
	for _, h := range hits {
		r := h.r
		last := r.hist[len(r.hist)-1]
		before := false
		for _, e := range r.hist {
			if e.v > since {
				break
			}
			before = e.exists
		}
		c := Change{Version: last.v, Key: maps.Clone(r.key)}
		switch {
		case !before && !last.exists:
			continue // inserted and deleted within the window
		case !before:
			c.Op, c.Row = topics.OpInsert, project(r.row, cfg.Columns)
		case last.exists:
			c.Op, c.Row = topics.OpUpdate, project(r.row, cfg.Columns)
		default:
			c.Op = topics.OpDelete
		}
		out = append(out, c)
		if limit > 0 && len(out) > limit && c.Version != out[limit-1].Version {
			// One past the cut: enough for cut to see where it ends.
			break
		}
	}
	return cut(out, limit, m.version)
}

// Page implements Source. Primary-key order is the order of the encoded
// keys, the same order every page uses.
func (m *MemCT) Page(ctx context.Context, cfg TableConfig, after map[string]any, limit int) (Page, error) {
	if err := ctx.Err(); err != nil {
		return Page{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(cfg)
	if err != nil {
		return Page{}, err
	}
	p := Page{Database: m.database, CurrentVersion: m.version}
	var keys []string
	from := ""
	if after != nil {
		from = encodeKey(cfg.PrimaryKey, after)
	}
	for k, r := range t.rows {
		if r.row != nil && (after == nil || k > from) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if limit > 0 && len(p.Rows) == limit {
			break
		}
		r := t.rows[k]
		p.Rows = append(p.Rows, Change{Version: m.version, Op: topics.OpInsert, Key: maps.Clone(r.key),
			Row: project(r.row, cfg.Columns)})
	}
	return p, nil
}

// Missing implements Source.
func (m *MemCT) Missing(ctx context.Context, cfg TableConfig, keys []map[string]any) (Missing, error) {
	if err := ctx.Err(); err != nil {
		return Missing{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, err := m.table(cfg)
	if err != nil {
		return Missing{}, err
	}
	out := Missing{Database: m.database, CurrentVersion: m.version}
	for _, k := range keys {
		if r, ok := t.rows[encodeKey(cfg.PrimaryKey, k)]; !ok || r.row == nil {
			out.Keys = append(out.Keys, k)
		}
	}
	return out, nil
}

// cut keeps at most limit changes plus those sharing the last kept version
// (TOP (@limit) WITH TIES), and returns the checkpoint the kept ones reach.
func cut(cs []Change, limit int, current int64) ([]Change, int64) {
	if limit <= 0 || len(cs) <= limit {
		return cs, current
	}
	n := limit
	for n < len(cs) && cs[n].Version == cs[limit-1].Version {
		n++
	}
	if n == len(cs) {
		return cs, current
	}
	return cs[:n], cs[n-1].Version
}

// project returns a copy of row with exactly the tracked columns.
func project(row map[string]any, cols []string) map[string]any {
	out := make(map[string]any, len(cols))
	for _, c := range cols {
		out[c] = row[c]
	}
	return out
}

// encodeKey joins key values in primary-key order; \x00 cannot occur in
// the shop's key text.
func encodeKey(pk []string, key map[string]any) string {
	parts := make([]string, len(pk))
	for i, c := range pk {
		parts[i] = keyText(key[c])
	}
	return strings.Join(parts, "\x00")
}

// memTx buffers a transaction's writes; they are applied on commit.
type memTx struct {
	m       *MemCT
	version int64
	ops     []func()
	// pending tracks rows written earlier in this transaction (nil = deleted).
	pending map[string]map[string]any
}

func (tx *memTx) table(name string) (*memTable, error) {
	t, ok := tx.m.tables[name]
	if !ok {
		return nil, fmt.Errorf("unknown table %s", name)
	}
	return t, nil
}

// current returns the row as this transaction sees it.
func (tx *memTx) current(t *memTable, k string) (map[string]any, bool) {
	if r, ok := tx.pending[t.cfg.Name+"\x01"+k]; ok {
		return r, r != nil
	}
	r, ok := t.rows[k]
	if !ok || r.row == nil {
		return nil, false
	}
	return r.row, true
}

func (tx *memTx) keyOf(t *memTable, row map[string]any) (string, map[string]any, error) {
	key := make(map[string]any, len(t.cfg.PrimaryKey))
	for _, c := range t.cfg.PrimaryKey {
		v, ok := row[c]
		if !ok || v == nil {
			return "", nil, fmt.Errorf("table %s: primary-key column %s is missing", t.cfg.Name, c)
		}
		key[c] = v
	}
	return encodeKey(t.cfg.PrimaryKey, key), key, nil
}

func (tx *memTx) write(table string, row map[string]any, mode string) error {
	t, err := tx.table(table)
	if err != nil {
		return err
	}
	k, key, err := tx.keyOf(t, row)
	if err != nil {
		return err
	}
	_, exists := tx.current(t, k)
	switch {
	case mode == "insert" && exists:
		return fmt.Errorf("inserting into %s %v: %w", table, key, ErrDuplicateKey)
	case mode == "update" && !exists:
		return fmt.Errorf("updating %s %v: %w", table, key, ErrNoRow)
	case mode == "delete" && !exists:
		return fmt.Errorf("deleting from %s %v: %w", table, key, ErrNoRow)
	}
	var val map[string]any
	if mode != "delete" {
		val = project(row, t.cfg.Columns)
	}
	if tx.pending == nil {
		tx.pending = map[string]map[string]any{}
	}
	tx.pending[table+"\x01"+k] = val
	v := tx.version
	tx.ops = append(tx.ops, func() {
		r, ok := t.rows[k]
		if !ok {
			r = &memRow{key: key}
			t.rows[k] = r
		}
		r.row = val
		h := existence{v: v, exists: val != nil}
		if n := len(r.hist); n > 0 && r.hist[n-1].v == v {
			r.hist[n-1] = h
		} else {
			r.hist = append(r.hist, h)
		}
	})
	return nil
}

func (tx *memTx) Insert(table string, row map[string]any) error {
	return tx.write(table, row, "insert")
}

func (tx *memTx) Update(table string, row map[string]any) error {
	return tx.write(table, row, "update")
}

func (tx *memTx) Upsert(table string, row map[string]any) error {
	return tx.write(table, row, "upsert")
}

func (tx *memTx) Delete(table string, key map[string]any) error {
	return tx.write(table, key, "delete")
}

// StartAt moves an empty source's version (and minimum valid version) to v,
// as a database restored from a backup would be: a simulator restarted on
// an existing Kafka then writes versions above those already bridged, so
// downstream stages, which ignore versions they have seen, take its rows.
func (m *MemCT) StartAt(v int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.version != 0 {
		return fmt.Errorf("in-memory change tracking: StartAt(%d) after %d versions were written", v, m.version)
	}
	m.version, m.minValid = v, v
	return nil
}

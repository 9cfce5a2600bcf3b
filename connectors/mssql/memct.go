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
//     resynchronise from a snapshot.
//
// It is safe for concurrent use.
type MemCT struct {
	mu       sync.Mutex
	version  int64
	minValid int64
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

// NewMemCT returns empty tables at version 0.
func NewMemCT(tables ...TableConfig) (*MemCT, error) {
	if err := ValidateTables(tables); err != nil {
		return nil, fmt.Errorf("in-memory change tracking: %w", err)
	}
	m := &MemCT{tables: map[string]*memTable{}}
	for _, t := range tables {
		m.tables[t.Name] = &memTable{cfg: t, rows: map[string]*memRow{}}
	}
	return m, nil
}

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

// Poll implements Source.
func (m *MemCT) Poll(ctx context.Context, cfg TableConfig, since int64, limit int) (Batch, error) {
	if err := ctx.Err(); err != nil {
		return Batch{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tables[cfg.Name]
	if !ok {
		return Batch{}, fmt.Errorf("in-memory change tracking: unknown table %s", cfg.Name)
	}
	b := Batch{CurrentVersion: m.version, MinValidVersion: m.minValid, Through: m.version}
	if since == NoCheckpoint || since < m.minValid {
		b.Resync = true
		for _, k := range slices.Sorted(maps.Keys(t.rows)) {
			r := t.rows[k]
			if r.row != nil {
				b.Changes = append(b.Changes, Change{Version: m.version, Op: topics.OpInsert,
					Key: maps.Clone(r.key), Row: project(r.row, cfg.Columns)})
			}
		}
		return b, nil
	}
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
		b.Changes = append(b.Changes, c)
		if limit > 0 && len(b.Changes) > limit && c.Version != b.Changes[limit-1].Version {
			// One past the cut: enough for cut to see where it ends.
			break
		}
	}
	b.Changes, b.Through = cut(b.Changes, limit, b.Through)
	return b, nil
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

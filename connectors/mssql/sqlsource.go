package mssql

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rtm-project/rtm/topics"

	// Registers the "sqlserver" driver.
	_ "github.com/microsoft/go-mssqldb"
)

// SQLSource reads Change Tracking from SQL Server.
type SQLSource struct {
	db *sql.DB
}

// OpenSQL opens a SQL Server source; dsn is a go-mssqldb URL such as
// sqlserver://user:pass@host:1433?database=shop.
func OpenSQL(ctx context.Context, dsn string) (*SQLSource, error) {
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening sql server: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to sql server: %w", err)
	}
	return &SQLSource{db: db}, nil
}

// NewSQLSource wraps an open database handle (the caller closes it).
func NewSQLSource(db *sql.DB) *SQLSource { return &SQLSource{db: db} }

// Close closes the database handle.
func (s *SQLSource) Close() error { return s.db.Close() }

// Poll implements Source in one snapshot-isolation transaction.
func (s *SQLSource) Poll(ctx context.Context, t TableConfig, since int64, limit int) (b Batch, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Batch{}, fmt.Errorf("beginning poll of %s: %w", t.Name, err)
	}
	// Read-only: rolling back is how the snapshot ends.
	defer func() { err = errors.Join(err, ignoreDone(tx.Rollback())) }()
	if _, err := tx.ExecContext(ctx, qSetSnapshot); err != nil {
		return Batch{}, fmt.Errorf("setting snapshot isolation for %s: %w", t.Name, err)
	}
	var minValid sql.NullInt64
	var current sql.NullInt64
	if err := tx.QueryRowContext(ctx, qVersions, "dbo."+t.Name).Scan(&current, &minValid); err != nil {
		return Batch{}, fmt.Errorf("reading change tracking versions of %s: %w", t.Name, err)
	}
	if !current.Valid || !minValid.Valid {
		return Batch{}, fmt.Errorf("change tracking is not enabled on the database or on dbo.%s (see schema.sql)", t.Name)
	}
	b = Batch{CurrentVersion: current.Int64, MinValidVersion: minValid.Int64, Through: current.Int64}
	if since == NoCheckpoint || since < minValid.Int64 {
		b.Resync = true
		b.Changes, err = s.snapshot(ctx, tx, t, current.Int64)
		return b, err
	}
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := tx.QueryContext(ctx, qChanges(t), since, limit, current.Int64)
	if err != nil {
		return Batch{}, fmt.Errorf("reading changes of %s since %d: %w", t.Name, since, err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return Batch{}, fmt.Errorf("reading change columns of %s: %w", t.Name, err)
	}
	keys, rest := t.PrimaryKey, nonKey(t)
	for rows.Next() {
		var version int64
		var op string
		var present int
		vals := make([]any, len(keys)+len(rest))
		dest := []any{&version, &op, &present}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return Batch{}, fmt.Errorf("scanning change of %s: %w", t.Name, err)
		}
		c := Change{Version: version, Op: strings.ToLower(op), Key: map[string]any{}}
		for i, k := range keys {
			c.Key[k] = sqlValue(vals[i], types, 3+i)
		}
		if c.Op != topics.OpDelete && present == 0 {
			c.Op = topics.OpDelete // deleted after the insert or update
		}
		if c.Op != topics.OpDelete {
			c.Row = make(map[string]any, len(t.Columns))
			for k, v := range c.Key {
				c.Row[k] = v
			}
			for i, col := range rest {
				c.Row[col] = sqlValue(vals[len(keys)+i], types, 3+len(keys)+i)
			}
		}
		b.Changes = append(b.Changes, c)
	}
	if err := rows.Err(); err != nil {
		return Batch{}, fmt.Errorf("reading changes of %s: %w", t.Name, err)
	}
	if len(b.Changes) >= limit {
		// TOP WITH TIES may have cut: versions up to the last row's are
		// complete (ties included), later ones may not be.
		b.Through = b.Changes[len(b.Changes)-1].Version
	}
	return b, nil
}

func (s *SQLSource) snapshot(ctx context.Context, tx *sql.Tx, t TableConfig, version int64) ([]Change, error) {
	rows, err := tx.QueryContext(ctx, qSnapshot(t))
	if err != nil {
		return nil, fmt.Errorf("reading snapshot of %s: %w", t.Name, err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("reading snapshot columns of %s: %w", t.Name, err)
	}
	cols := append(append([]string{}, t.PrimaryKey...), nonKey(t)...)
	var out []Change
	for rows.Next() {
		vals := make([]any, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("scanning snapshot row of %s: %w", t.Name, err)
		}
		c := Change{Version: version, Op: topics.OpInsert, Key: map[string]any{}, Row: map[string]any{}}
		for i, col := range cols {
			v := sqlValue(vals[i], types, i)
			c.Row[col] = v
			if i < len(t.PrimaryKey) {
				c.Key[col] = v
			}
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading snapshot of %s: %w", t.Name, err)
	}
	return out, nil
}

// sqlValue makes a driver value match the row contract (topics/rows.go):
// DECIMAL and MONEY arrive as text bytes and become JSON numbers, DATE
// becomes "YYYY-MM-DD", other byte strings become text.
func sqlValue(v any, types []*sql.ColumnType, i int) any {
	if t, ok := v.(time.Time); ok && i < len(types) && types[i].DatabaseTypeName() == "DATE" {
		return t.Format(time.DateOnly)
	}
	b, ok := v.([]byte)
	if !ok {
		return v
	}
	if i < len(types) {
		switch types[i].DatabaseTypeName() {
		case "DECIMAL", "NUMERIC", "MONEY", "SMALLMONEY":
			return json.Number(string(b))
		}
	}
	return string(b)
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

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

// SQLSource reads Change Tracking from SQL Server. Every read runs in one
// SNAPSHOT-isolation transaction (queries.go holds all the T-SQL).
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

// snapshot runs fn in a read-only snapshot transaction, after reading the
// database's identity and current version in it.
func (s *SQLSource) snapshot(ctx context.Context, what string, fn func(tx *sql.Tx, db string, current int64) error) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning %s: %w", what, err)
	}
	// Read-only: rolling back is how the snapshot ends.
	defer func() { err = errors.Join(err, ignoreDone(tx.Rollback())) }()
	if _, err := tx.ExecContext(ctx, qSetSnapshot); err != nil {
		return fmt.Errorf("setting snapshot isolation for %s: %w", what, err)
	}
	var current sql.NullInt64
	var fork sql.NullString
	if err := tx.QueryRowContext(ctx, qVersions).Scan(&current, &fork); err != nil {
		return fmt.Errorf("reading change tracking version for %s: %w", what, err)
	}
	if !current.Valid {
		return errors.New("change tracking is not enabled on the database (see schema.sql)")
	}
	if !fork.Valid || fork.String == "" {
		return errors.New("cannot read the database's recovery fork GUID from sys.database_recovery_status: " +
			"the bridge's login must own the database or have VIEW ANY DATABASE")
	}
	return fn(tx, strings.ToLower(fork.String), current.Int64)
}

// Poll implements Source: one snapshot for the whole group.
func (s *SQLSource) Poll(ctx context.Context, tables []TableConfig, since []int64, limit int) (out Snapshot, err error) {
	err = s.snapshot(ctx, "poll of "+names(tables), func(tx *sql.Tx, db string, current int64) error {
		out = Snapshot{Database: db, CurrentVersion: current, Tables: make([]TableChanges, len(tables))}
		for i, t := range tables {
			var minValid sql.NullInt64
			if err := tx.QueryRowContext(ctx, qMinValid, "dbo."+t.Name).Scan(&minValid); err != nil {
				return fmt.Errorf("reading the minimum valid version of %s: %w", t.Name, err)
			}
			if !minValid.Valid {
				return fmt.Errorf("change tracking is not enabled on dbo.%s (see schema.sql)", t.Name)
			}
			tc := TableChanges{MinValidVersion: minValid.Int64, Through: current}
			if since[i] != NoCheckpoint && since[i] >= minValid.Int64 && since[i] <= current {
				tc.Changes, tc.Through, err = s.changes(ctx, tx, t, since[i], limit, current)
				if err != nil {
					return err
				}
			}
			out.Tables[i] = tc
		}
		return nil
	})
	return out, err
}

func (s *SQLSource) changes(ctx context.Context, tx *sql.Tx, t TableConfig, since int64, limit int, current int64) ([]Change, int64, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := tx.QueryContext(ctx, qChanges(t), since, limit, current)
	if err != nil {
		return nil, 0, fmt.Errorf("reading changes of %s since %d: %w", t.Name, since, err)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, 0, fmt.Errorf("reading change columns of %s: %w", t.Name, err)
	}
	keys, rest := t.PrimaryKey, nonKey(t)
	var out []Change
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
			return nil, 0, fmt.Errorf("scanning change of %s: %w", t.Name, err)
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
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading changes of %s: %w", t.Name, err)
	}
	through := current
	if len(out) >= limit {
		// TOP WITH TIES may have cut: versions up to the last row's are
		// complete (ties included), later ones may not be.
		through = out[len(out)-1].Version
	}
	return out, through, nil
}

// Page implements Source.
func (s *SQLSource) Page(ctx context.Context, t TableConfig, after map[string]any, limit int) (out Page, err error) {
	err = s.snapshot(ctx, "resync chunk of "+t.Name, func(tx *sql.Tx, db string, current int64) error {
		out = Page{Database: db, CurrentVersion: current}
		args := []any{limit}
		if after != nil {
			for _, k := range t.PrimaryKey {
				args = append(args, sqlParam(after[k]))
			}
		}
		rows, err := tx.QueryContext(ctx, qPage(t, after != nil), args...)
		if err != nil {
			return fmt.Errorf("reading a resync chunk of %s: %w", t.Name, err)
		}
		defer rows.Close()
		types, err := rows.ColumnTypes()
		if err != nil {
			return fmt.Errorf("reading the columns of %s: %w", t.Name, err)
		}
		cols := append(append([]string{}, t.PrimaryKey...), nonKey(t)...)
		for rows.Next() {
			vals := make([]any, len(cols))
			dest := make([]any, len(cols))
			for i := range vals {
				dest[i] = &vals[i]
			}
			if err := rows.Scan(dest...); err != nil {
				return fmt.Errorf("scanning a row of %s: %w", t.Name, err)
			}
			c := Change{Version: current, Op: topics.OpInsert, Key: map[string]any{}, Row: map[string]any{}}
			for i, col := range cols {
				v := sqlValue(vals[i], types, i)
				c.Row[col] = v
				if i < len(t.PrimaryKey) {
					c.Key[col] = v
				}
			}
			out.Rows = append(out.Rows, c)
		}
		return rows.Err()
	})
	return out, err
}

// Missing implements Source, in requests of at most maxMissingKeys keys.
func (s *SQLSource) Missing(ctx context.Context, t TableConfig, keys []map[string]any) (out Missing, err error) {
	err = s.snapshot(ctx, "sweep of "+t.Name, func(tx *sql.Tx, db string, current int64) error {
		out = Missing{Database: db, CurrentVersion: current}
		for start := 0; start < len(keys); start += maxMissingKeys(t) {
			part := keys[start:min(len(keys), start+maxMissingKeys(t))]
			var args []any
			for _, k := range part {
				for _, c := range t.PrimaryKey {
					args = append(args, sqlParam(k[c]))
				}
			}
			rows, err := tx.QueryContext(ctx, qMissing(t, len(part)), args...)
			if err != nil {
				return fmt.Errorf("checking which keys of %s are gone: %w", t.Name, err)
			}
			for rows.Next() {
				var n int
				if err := rows.Scan(&n); err != nil {
					rows.Close()
					return fmt.Errorf("scanning a gone key of %s: %w", t.Name, err)
				}
				if n < 1 || n > len(part) {
					rows.Close()
					return fmt.Errorf("checking keys of %s: ordinal %d out of range", t.Name, n)
				}
				out.Keys = append(out.Keys, part[n-1])
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				return fmt.Errorf("checking which keys of %s are gone: %w", t.Name, err)
			}
		}
		return nil
	})
	return out, err
}

// sqlParam turns a key value that went through JSON (a checkpoint's resume
// key, a key-set record) back into a parameter: json.Number travels as
// text, which SQL Server converts to the column's numeric type.
func sqlParam(v any) any {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return v
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

// names joins table names for messages and test hooks.
func names(ts []TableConfig) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return strings.Join(out, "+")
}

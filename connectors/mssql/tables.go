package mssql

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// TableConfig says how one tracked table is read and keyed.
type TableConfig struct {
	// Name is the table name without schema (dbo is assumed); the topic is
	// "cdc." + Name.
	Name string
	// PrimaryKey lists the primary-key columns, in key order. Change
	// Tracking reports changes per primary key.
	PrimaryKey []string
	// PartitionColumn is the column whose text value is the record key, so
	// that the record lands on the same partition as the rest of that
	// member's (or item's) data.
	PartitionColumn string
	// Columns are the tracked columns written in the record's row. They must
	// include the primary key.
	Columns []string
}

// Topic is the table's Kafka topic.
func (t TableConfig) Topic() string { return "cdc." + t.Name }

// identifier is what may be spliced into T-SQL: table and column names come
// from configuration, never from data, but are still checked so a typo
// cannot become an injection.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem with the configuration.
func (t TableConfig) Validate() error {
	var errs []error
	if !identifier.MatchString(t.Name) {
		errs = append(errs, fmt.Errorf("table name %q is not a plain identifier", t.Name))
	}
	if len(t.PrimaryKey) == 0 {
		errs = append(errs, fmt.Errorf("table %s: no primary-key columns", t.Name))
	}
	for _, c := range append(append([]string{}, t.PrimaryKey...), t.Columns...) {
		if !identifier.MatchString(c) {
			errs = append(errs, fmt.Errorf("table %s: column %q is not a plain identifier", t.Name, c))
		}
	}
	for _, k := range t.PrimaryKey {
		if !slices.Contains(t.Columns, k) {
			errs = append(errs, fmt.Errorf("table %s: primary-key column %s is not among the tracked columns", t.Name, k))
		}
	}
	if !slices.Contains(t.PrimaryKey, t.PartitionColumn) {
		errs = append(errs, fmt.Errorf("table %s: partition column %q must be a primary-key column (a delete carries only the key)", t.Name, t.PartitionColumn))
	}
	return errors.Join(errs...)
}

// ValidateTables validates every table and rejects duplicates.
func ValidateTables(ts []TableConfig) error {
	var errs []error
	seen := map[string]bool{}
	if len(ts) == 0 {
		errs = append(errs, errors.New("no tables configured"))
	}
	for _, t := range ts {
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("table %s configured twice", t.Name))
		}
		seen[t.Name] = true
		errs = append(errs, t.Validate())
	}
	return errors.Join(errs...)
}

// DefaultTables are the shop's five tracked tables (schema.sql).
func DefaultTables() []TableConfig {
	return []TableConfig{
		{Name: "members", PrimaryKey: []string{"member_id"}, PartitionColumn: "member_id",
			Columns: []string{"member_id", "email", "line_user_id", "push_token", "mail_opt_in", "line_opt_in",
				"push_opt_in", "status", "is_debug", "gender", "birthday", "prefecture", "timezone", "registered_at", "segments"}},
		{Name: "items", PrimaryKey: []string{"item_id"}, PartitionColumn: "item_id",
			Columns: []string{"item_id", "name", "brand", "category", "price", "stock", "url", "image_url"}},
		{Name: "favorites", PrimaryKey: []string{"member_id", "item_id"}, PartitionColumn: "member_id",
			Columns: []string{"member_id", "item_id", "created_at"}},
		// orders is keyed (member_id, order_id), not order_id alone: Change
		// Tracking reports only primary-key columns for a delete, and the
		// delete must still reach the member's partition.
		{Name: "orders", PrimaryKey: []string{"member_id", "order_id"}, PartitionColumn: "member_id",
			Columns: []string{"order_id", "member_id", "item_id", "status", "total", "ordered_at"}},
		{Name: "cart_items", PrimaryKey: []string{"member_id", "item_id"}, PartitionColumn: "member_id",
			Columns: []string{"member_id", "item_id", "quantity", "added_at"}},
	}
}

// keyText renders a key column value as record-key text.
func keyText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case int:
		return strconv.Itoa(x)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

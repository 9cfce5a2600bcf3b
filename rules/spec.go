package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what a table decides and therefore which facts it may read and
// which outputs it may set.
type Kind string

const (
	KindCampaign Kind = "campaign"
	KindFilter   Kind = "filter"
	KindChannel  Kind = "channel"
	KindTiming   Kind = "timing"
	// KindTemplate is a content table: one message template per row.
	KindTemplate Kind = "template"
)

// Kinds lists every kind in pipeline order.
var Kinds = []Kind{KindCampaign, KindFilter, KindChannel, KindTiming, KindTemplate}

func (k Kind) valid() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// HitPolicy says how many matching rows fire.
type HitPolicy string

const (
	// HitFirst: the first matching row (top to bottom) wins. The default.
	HitFirst HitPolicy = "first"
	// HitCollect: every matching row fires, in row order.
	HitCollect HitPolicy = "collect"
)

// ColumnType is the type of a decision-table column, from the COLUMNS row.
type ColumnType string

const (
	ColCondition   ColumnType = "CONDITION"
	ColAction      ColumnType = "ACTION"
	ColName        ColumnType = "NAME"
	ColDescription ColumnType = "DESCRIPTION"
	// ColField is a column of a template table; Template holds the field
	// name (id, channel, subject, body, alt_text, url).
	ColField ColumnType = "FIELD"
)

// TableSpec is the serializable form of one table: what the loader reads
// from a sheet, what travels on the rules topic as JSON, and what Compile
// turns into an executable Table. It keeps cell references so that errors
// and decision traces point at the workbook even after a JSON round trip.
type TableSpec struct {
	Name        string    `json:"name"`
	Kind        Kind      `json:"kind"`
	HitPolicy   HitPolicy `json:"hit_policy"`
	Description string    `json:"description,omitempty"`
	// Sheet is the worksheet the table was read from.
	Sheet   string   `json:"sheet"`
	Columns []Column `json:"columns"`
	Rows    []Row    `json:"rows"`
	Meta    Meta     `json:"meta"`
}

// Column is one column of a table.
type Column struct {
	Type ColumnType `json:"type"`
	// Template is the condition expression with $param, the output name of
	// an ACTION column, or the field name of a template-table column.
	Template string `json:"template,omitempty"`
	Label    string `json:"label,omitempty"`
	// Ref is the cell holding the template (or the COLUMNS header for
	// template tables), e.g. "C8".
	Ref string `json:"ref"`
}

// Row is one rule (or one template of a template table).
type Row struct {
	// Row is the 1-based worksheet row number.
	Row int `json:"row"`
	// Cells holds one value per column; empty cells are null.
	Cells []Value `json:"cells"`
}

// Value is a typed cell value: a string, a float64 or a bool, or nil for
// an empty cell. JSON keeps the type: "20" and 20 are different values.
type Value struct {
	V any
}

// IsEmpty reports an empty cell.
func (v Value) IsEmpty() bool {
	if v.V == nil {
		return true
	}
	s, ok := v.V.(string)
	return ok && s == ""
}

// String renders the value for messages.
func (v Value) String() string {
	switch x := v.V.(type) {
	case nil:
		return "empty"
	case string:
		return fmt.Sprintf("text %q", x)
	case float64:
		return fmt.Sprintf("number %v", x)
	case bool:
		if x {
			return "TRUE"
		}
		return "FALSE"
	}
	return fmt.Sprintf("%v", v.V)
}

func (v Value) MarshalJSON() ([]byte, error) {
	switch v.V.(type) {
	case nil, string, float64, bool:
		return json.Marshal(v.V)
	}
	return nil, fmt.Errorf("rules: unsupported cell value type %T", v.V)
}

func (v *Value) UnmarshalJSON(b []byte) error {
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	switch x.(type) {
	case nil, string, float64, bool:
		v.V = x
		return nil
	}
	return fmt.Errorf("rules: cell value must be a string, number, bool or null, got %s", b)
}

// Meta is publication metadata. It is not part of the content hash.
type Meta struct {
	// Version is the content hash: hex sha256 of the canonical JSON of the
	// spec without Meta. Equal content means equal version.
	Version     string    `json:"version"`
	SourceFile  string    `json:"source_file,omitempty"`
	Author      string    `json:"author,omitempty"`
	PublishedAt time.Time `json:"published_at,omitzero"`
}

// ContentHash computes the version of the spec's content. The canonical
// JSON is encoding/json's output for the spec with Meta zeroed: struct
// fields in declaration order, no maps, so it is deterministic.
func (s *TableSpec) ContentHash() string {
	c := *s
	c.Meta = Meta{}
	b, err := MarshalSpec(&c)
	if err != nil {
		// Only an unsupported Value type can fail; hash its description so
		// that Compile, not hashing, reports it.
		b = fmt.Appendf(nil, "%#v", c)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MarshalSpec encodes a spec as the rules topic carries it: JSON without
// HTML escaping, so that templates such as "a < $param" stay readable in
// kcat.
func MarshalSpec(s *TableSpec) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encoding table %s: %w", s.Name, err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// UnmarshalSpec decodes a spec from the rules topic.
func UnmarshalSpec(b []byte) (TableSpec, error) {
	var s TableSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return TableSpec{}, fmt.Errorf("decoding table spec: %w", err)
	}
	return s, nil
}

// cellRef returns the reference of the cell at column index ci of row r,
// using the column's letter from its template ref.
func (s *TableSpec) cellRef(ci int, r *Row) string {
	if ci < len(s.Columns) {
		col := columnLetters(s.Columns[ci].Ref)
		if col != "" {
			return fmt.Sprintf("%s%d", col, r.Row)
		}
	}
	return fmt.Sprintf("row %d", r.Row)
}

func columnLetters(ref string) string {
	i := 0
	for i < len(ref) && ref[i] >= 'A' && ref[i] <= 'Z' {
		i++
	}
	return ref[:i]
}

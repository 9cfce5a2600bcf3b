package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors classify cell errors; test them with errors.Is on the
// error returned by LoadWorkbook, Compile or Publish.
var (
	ErrNotWorkbook      = errors.New("not an .xlsx workbook")
	ErrTooLarge         = errors.New("too large")
	ErrDuplicateTable   = errors.New("duplicate table name")
	ErrMissingColumns   = errors.New("missing COLUMNS row")
	ErrUnknownKind      = errors.New("unknown Kind")
	ErrUnknownHitPolicy = errors.New("unknown HitPolicy")
	ErrEmptyTable       = errors.New("empty rule table")
	ErrBadHeader        = errors.New("bad table header")
	ErrBadColumn        = errors.New("bad column")
	ErrSyntax           = errors.New("syntax error")
	ErrUnknownField     = errors.New("unknown field")
	ErrTypeMismatch     = errors.New("type mismatch")
	ErrParam            = errors.New("bad $param use")
	ErrUnknownOutput    = errors.New("unknown output")
	ErrInvalidOutput    = errors.New("invalid output value")
	ErrMissingOutput    = errors.New("missing required output")
	ErrTemplate         = errors.New("broken template")
	// ErrDuplicateTemplate: two rows define the same template id for the
	// same channel.
	ErrDuplicateTemplate = errors.New("duplicate template")
	// ErrUnknownTemplate: a campaign names a template id that no template
	// table defines for any channel (or names none).
	ErrUnknownTemplate  = errors.New("unknown template")
	ErrNotDecisionTable = errors.New("not a decision table")
)

// CellError is one problem, located at a workbook cell. Sheet and Cell are
// empty when the problem is about the whole file or sheet.
type CellError struct {
	File  string
	Sheet string
	Cell  string
	Msg   string
	// Err is the sentinel (or underlying) error; may be nil.
	Err error
}

func (e *CellError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Sheet != "" {
		b.WriteString(e.Sheet)
		if e.Cell != "" {
			b.WriteString("!")
			b.WriteString(e.Cell)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *CellError) Unwrap() error { return e.Err }

// Errors is every problem found in a workbook or spec, in sheet and cell
// order. It is returned as *Errors; errors.Is and errors.As see each
// CellError.
type Errors struct {
	List []*CellError
}

func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, c := range e.List {
		lines[i] = c.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes every CellError to errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.List))
	for i, c := range e.List {
		out[i] = c
	}
	return out
}

// errorList collects cell errors during loading and compiling.
type errorList struct {
	file string
	list []*CellError
}

func (l *errorList) add(sheet, cell string, kind error, format string, args ...any) {
	l.list = append(l.list, &CellError{File: l.file, Sheet: sheet, Cell: cell, Msg: fmt.Sprintf(format, args...), Err: kind})
}

func (l *errorList) err() error {
	if len(l.list) == 0 {
		return nil
	}
	return &Errors{List: l.list}
}

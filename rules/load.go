package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/xuri/excelize/v2"
)

// Workbook layout keywords (column A).
const (
	kwRuleTable   = "RuleTable"
	kwKind        = "Kind"
	kwHitPolicy   = "HitPolicy"
	kwDescription = "Description"
	kwColumns     = "COLUMNS"
)

// Size limits for a workbook file; see also MaxRules and MaxColumns.
const (
	MaxWorkbookBytes = 20 << 20
	// maxSheetRows bounds the rows read from one sheet: the rules plus a
	// generous header.
	maxSheetRows = MaxRules + 100
	// unzipLimit bounds the decompressed size (zip bombs).
	unzipLimit = 200 << 20
)

// LoadWorkbook reads, validates and compiles every rule table of an .xlsx
// file. Errors name the file by its base name.
func LoadWorkbook(path string) ([]TableSpec, error) {
	name := filepath.Base(path)
	if ext := strings.ToLower(filepath.Ext(path)); ext != ".xlsx" && ext != ".xlsm" {
		return nil, &Errors{List: []*CellError{{File: name, Msg: fmt.Sprintf("%s: want an .xlsx file, got %q", ErrNotWorkbook, ext), Err: ErrNotWorkbook}}}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening workbook: %w", err)
	}
	defer f.Close()
	return ReadWorkbook(f, name)
}

// ReadWorkbook is LoadWorkbook for a reader; name is used in errors and
// recorded as the source file.
func ReadWorkbook(r io.Reader, name string) ([]TableSpec, error) {
	errs := &errorList{file: name}
	b, err := io.ReadAll(io.LimitReader(r, MaxWorkbookBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading workbook %s: %w", name, err)
	}
	if len(b) > MaxWorkbookBytes {
		errs.add("", "", ErrTooLarge, "workbook is larger than %d MiB", MaxWorkbookBytes>>20)
		return nil, errs.err()
	}
	xf, err := excelize.OpenReader(bytes.NewReader(b), excelize.Options{
		RawCellValue:      true,
		UnzipSizeLimit:    unzipLimit,
		UnzipXMLSizeLimit: unzipLimit,
	})
	if err != nil {
		errs.add("", "", ErrNotWorkbook, "%s: %v", ErrNotWorkbook, err)
		return nil, errs.err()
	}
	defer xf.Close()

	var specs []TableSpec
	seen := map[string]string{} // table name → sheet
	for _, sheet := range xf.GetSheetList() {
		spec, ok := readSheet(xf, sheet, errs)
		if !ok {
			continue
		}
		if prev, dup := seen[spec.Name]; dup {
			errs.add(sheet, "B1", ErrDuplicateTable, "duplicate table name %s (also on sheet %s)", spec.Name, prev)
			continue
		}
		seen[spec.Name] = sheet
		spec.Meta.SourceFile = name
		spec.Meta.Version = spec.ContentHash()
		specs = append(specs, spec)
	}
	for _, s := range specs {
		compileSpec(s, errs)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return specs, nil
}

// sheetRows reads a sheet's raw cell strings, refusing oversized sheets
// before reading them whole. ok is false when the sheet is not a rule table.
func sheetRows(xf *excelize.File, sheet string, errs *errorList) (rows [][]string, ok bool) {
	it, err := xf.Rows(sheet)
	if err != nil {
		errs.add(sheet, "", ErrNotWorkbook, "reading sheet: %v", err)
		return nil, false
	}
	defer it.Close()
	for it.Next() {
		cols, err := it.Columns(excelize.Options{RawCellValue: true})
		if err != nil {
			errs.add(sheet, "", ErrNotWorkbook, "reading sheet: %v", err)
			return nil, false
		}
		if len(rows) == 0 && (len(cols) == 0 || strings.TrimSpace(cols[0]) != kwRuleTable) {
			return nil, false // notes, lookups: not a rule table
		}
		if len(rows) >= maxSheetRows {
			errs.add(sheet, "", ErrTooLarge, "sheet has more than %d rows (a table holds at most %d rules)", maxSheetRows, MaxRules)
			return nil, false
		}
		if len(cols) > MaxColumns+1 {
			trimmed := trimRight(cols)
			if len(trimmed) > MaxColumns+1 {
				ref, _ := excelize.CoordinatesToCellName(MaxColumns+2, len(rows)+1)
				errs.add(sheet, ref, ErrTooLarge, "row has more than %d columns", MaxColumns)
				return nil, false
			}
			cols = trimmed
		}
		rows = append(rows, cols)
	}
	if err := it.Error(); err != nil {
		errs.add(sheet, "", ErrNotWorkbook, "reading sheet: %v", err)
		return nil, false
	}
	return rows, len(rows) > 0
}

func trimRight(cols []string) []string {
	for len(cols) > 0 && strings.TrimSpace(cols[len(cols)-1]) == "" {
		cols = cols[:len(cols)-1]
	}
	return cols
}

// readSheet turns one sheet into a TableSpec. Header problems are reported
// here; rule contents are checked by Compile.
func readSheet(xf *excelize.File, sheet string, errs *errorList) (TableSpec, bool) {
	rows, ok := sheetRows(xf, sheet, errs)
	if !ok {
		return TableSpec{}, false
	}
	n := errs.len()
	cell := func(r, c int) string {
		if r < len(rows) && c < len(rows[r]) {
			return strings.TrimSpace(rows[r][c])
		}
		return ""
	}
	ref := func(r, c int) string {
		s, _ := excelize.CoordinatesToCellName(c+1, r+1)
		return s
	}
	spec := TableSpec{Name: cell(0, 1), Sheet: sheet}
	if spec.Name == "" {
		errs.add(sheet, "B1", ErrBadHeader, "RuleTable needs a table name in B1")
	}
	// Header rows until COLUMNS.
	colRow := -1
	var kindSeen bool
	for r := 1; r < len(rows) && colRow < 0; r++ {
		key, val := cell(r, 0), cell(r, 1)
		switch key {
		case "":
		case kwKind:
			kindSeen = true
			spec.Kind = Kind(strings.ToLower(val))
			if !spec.Kind.valid() {
				errs.add(sheet, ref(r, 1), ErrUnknownKind, "unknown Kind %q (want campaign, filter, channel, timing or template)", val)
			}
		case kwHitPolicy:
			spec.HitPolicy = HitPolicy(strings.ToLower(val))
			if spec.HitPolicy != HitFirst && spec.HitPolicy != HitCollect {
				errs.add(sheet, ref(r, 1), ErrUnknownHitPolicy, "unknown HitPolicy %q (want first or collect)", val)
			}
		case kwDescription:
			spec.Description = val
		case kwColumns:
			colRow = r
		case kwRuleTable:
			errs.add(sheet, ref(r, 0), ErrBadHeader, "second RuleTable on one sheet: put each table on its own sheet")
		default:
			errs.add(sheet, ref(r, 0), ErrBadHeader, "unknown header keyword %q (want Kind, HitPolicy, Description or COLUMNS)", key)
		}
	}
	if !kindSeen {
		errs.add(sheet, "A2", ErrUnknownKind, "missing Kind row (campaign, filter, channel, timing or template)")
	}
	if spec.HitPolicy == "" {
		spec.HitPolicy = HitFirst
	}
	if colRow < 0 {
		errs.add(sheet, "A1", ErrMissingColumns, "missing COLUMNS row: add a row whose A cell is COLUMNS, followed by the template and label rows")
		return TableSpec{}, false
	}
	if errs.len() > n {
		return TableSpec{}, false
	}
	last := len(trimRight(rows[colRow]))
	if last <= 1 {
		errs.add(sheet, ref(colRow, 1), ErrMissingColumns, "COLUMNS row lists no columns")
		return TableSpec{}, false
	}
	first := colRow + 1 // first rule row
	if spec.Kind == KindTemplate {
		for c := 1; c < last; c++ {
			spec.Columns = append(spec.Columns, Column{Type: ColField, Template: cell(colRow, c), Ref: ref(colRow, c)})
		}
	} else {
		if colRow+2 >= len(rows) {
			errs.add(sheet, ref(colRow, 0), ErrMissingColumns, "COLUMNS must be followed by a template row and a label row")
			return TableSpec{}, false
		}
		for c := 1; c < last; c++ {
			t := ColumnType(strings.ToUpper(cell(colRow, c)))
			switch t {
			case ColCondition, ColAction, ColName, ColDescription:
			case "":
				errs.add(sheet, ref(colRow, c), ErrBadColumn, "empty column type (want CONDITION, ACTION, NAME or DESCRIPTION)")
			default:
				errs.add(sheet, ref(colRow, c), ErrBadColumn, "unknown column type %q (want CONDITION, ACTION, NAME or DESCRIPTION)", cell(colRow, c))
			}
			spec.Columns = append(spec.Columns, Column{Type: t, Template: cell(colRow+1, c), Label: cell(colRow+2, c), Ref: ref(colRow+1, c)})
		}
		first = colRow + 3
	}
	if errs.len() > n {
		return TableSpec{}, false
	}
	for r := first; r < len(rows); r++ {
		empty := true
		for c := 0; c < len(rows[r]) && empty; c++ {
			empty = cell(r, c) == ""
		}
		if empty {
			break
		}
		row := Row{Row: r + 1, Cells: make([]Value, len(spec.Columns))}
		blank := true
		for c := 1; c <= len(spec.Columns); c++ {
			v, err := cellValue(xf, sheet, ref(r, c), cell(r, c))
			if err != nil {
				errs.add(sheet, ref(r, c), ErrTypeMismatch, "%s", err)
				continue
			}
			row.Cells[c-1] = v
			blank = blank && v.IsEmpty()
		}
		if blank {
			continue // only column A (notes) is filled
		}
		spec.Rows = append(spec.Rows, row)
	}
	if errs.len() > n {
		return TableSpec{}, false
	}
	return spec, true
}

// cellValue types a raw cell: numbers as float64, booleans (and the texts
// TRUE and FALSE) as bool, everything else as string.
func cellValue(xf *excelize.File, sheet, ref, raw string) (Value, error) {
	if raw == "" {
		return Value{}, nil
	}
	typ, err := xf.GetCellType(sheet, ref)
	if err != nil {
		return Value{}, fmt.Errorf("reading cell: %w", err)
	}
	switch typ {
	case excelize.CellTypeBool:
		return Value{V: raw == "1" || strings.EqualFold(raw, "TRUE")}, nil
	case excelize.CellTypeNumber, excelize.CellTypeUnset:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return Value{V: raw}, nil
		}
		return Value{V: f}, nil
	case excelize.CellTypeError:
		return Value{}, errors.New("cell holds an error value " + raw)
	}
	switch strings.ToUpper(raw) {
	case "TRUE":
		return Value{V: true}, nil
	case "FALSE":
		return Value{V: false}, nil
	}
	return Value{V: raw}, nil
}

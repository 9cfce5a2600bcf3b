package console

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"

	"github.com/xuri/excelize/v2"

	"github.com/rtm-project/rtm/rules"
)

// Bounds of a sheet drawn as a grid: a rule sheet is a few dozen rows
// and columns; an error beyond them is listed above the grid instead.
const (
	gridMaxRows = 600
	gridMaxCols = 40
)

// errorsData is an invalid workbook: each sheet with an error drawn as a
// grid with the offending cells marked and their messages in them, and
// the errors that have no cell listed above.
type errorsData struct {
	File    string
	Count   int
	General []string
	Sheets  []sheetGrid
}

type sheetGrid struct {
	Name string
	Cols []string
	Rows []gridRow
}

type gridRow struct {
	N      int
	Cells  []gridCell
	Errors []string // about the whole row ("row 12")
}

type gridCell struct {
	Ref, Value string
	Errors     []string
}

var rowRef = regexp.MustCompile(`^row (\d+)$`)

// workbookErrors lays errs out on the sheets of the workbook in data.
func workbookErrors(file string, data []byte, errs *rules.Errors) errorsData {
	d := errorsData{File: file, Count: len(errs.List)}
	type loc struct{ col, row int }
	bySheet := map[string]map[loc][]string{}
	var sheets []string
	for _, e := range errs.List {
		if e.Sheet == "" {
			d.General = append(d.General, e.Error())
			continue
		}
		l := loc{}
		if e.Cell != "" {
			if col, row, err := excelize.CellNameToCoordinates(e.Cell); err == nil {
				l = loc{col, row}
			} else if m := rowRef.FindStringSubmatch(e.Cell); m != nil {
				l.row, _ = strconv.Atoi(m[1])
			}
		}
		if l.row == 0 || l.row > gridMaxRows || l.col > gridMaxCols {
			d.General = append(d.General, e.Error())
			continue
		}
		if bySheet[e.Sheet] == nil {
			bySheet[e.Sheet] = map[loc][]string{}
			sheets = append(sheets, e.Sheet)
		}
		bySheet[e.Sheet][l] = append(bySheet[e.Sheet][l], e.Msg)
	}
	xf, err := excelize.OpenReader(bytes.NewReader(data))
	if err != nil {
		// Not readable at all: every error is general (the loader said
		// why), so there is no sheet to draw.
		return d
	}
	defer xf.Close()
	for _, sheet := range sheets {
		marks := bySheet[sheet]
		rows, err := xf.GetRows(sheet)
		if err != nil {
			for l, msgs := range marks {
				for _, m := range msgs {
					d.General = append(d.General, fmt.Sprintf("%s row %d column %d: %s", sheet, l.row, l.col, m))
				}
			}
			continue
		}
		if len(rows) > gridMaxRows {
			rows = rows[:gridMaxRows]
		}
		nrows, ncols := len(rows), 0
		for _, r := range rows {
			ncols = max(ncols, min(len(r), gridMaxCols))
		}
		for l := range marks {
			nrows, ncols = max(nrows, l.row), max(ncols, l.col)
		}
		g := sheetGrid{Name: sheet}
		for c := 1; c <= ncols; c++ {
			name, _ := excelize.ColumnNumberToName(c)
			g.Cols = append(g.Cols, name)
		}
		for r := 1; r <= nrows; r++ {
			gr := gridRow{N: r, Errors: marks[loc{0, r}]}
			for c := 1; c <= ncols; c++ {
				ref, _ := excelize.CoordinatesToCellName(c, r)
				cell := gridCell{Ref: ref, Errors: marks[loc{c, r}]}
				if r <= len(rows) && c <= len(rows[r-1]) {
					cell.Value = rows[r-1][c-1]
				}
				gr.Cells = append(gr.Cells, cell)
			}
			g.Rows = append(g.Rows, gr)
		}
		d.Sheets = append(d.Sheets, g)
	}
	return d
}

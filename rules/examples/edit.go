package examples

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/xuri/excelize/v2"
)

// Edited returns the example workbook with cells changed, each given as
// "Sheet!A1" → value: what a marketer's edit of it looks like, for tests
// of the upload paths (a broken cell, a changed rule). Values keep their
// Go type: 4 is written as a number, "4" as text.
func Edited(cells map[string]any) ([]byte, error) {
	f, err := excelize.OpenReader(bytes.NewReader(Workbook))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for ref, v := range cells {
		sheet, cell, ok := strings.Cut(ref, "!")
		if !ok {
			return nil, fmt.Errorf("cell %q: want Sheet!A1", ref)
		}
		if err := f.SetCellValue(sheet, cell, v); err != nil {
			return nil, fmt.Errorf("cell %s: %w", ref, err)
		}
	}
	buf, err := f.WriteToBuffer()
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

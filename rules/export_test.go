package rules

// Unindexed returns a copy of t that evaluates every row (no index), so
// tests can check that the index changes no decision.
func Unindexed(t *Table) *Table {
	u := *t
	u.index = nil
	return &u
}

// IndexedColumns returns the fields of t's indexed columns.
func IndexedColumns(t *Table) []string {
	var out []string
	for _, ix := range t.index {
		out = append(out, ix.field.name)
	}
	return out
}

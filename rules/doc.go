// Package rules turns marketers' Excel decision tables into type-checked
// expr programs and evaluates them against facts.
//
// The pipeline reads like expr's own: load (LoadWorkbook: .xlsx → TableSpec)
// → check and compile (Compile: TableSpec → *Table, every error located at
// a workbook cell) → evaluate (Table.Evaluate: first hit, with a Trace of
// the deciding rule). TableSpec is the JSON carried by the compacted rules
// topic; Publish writes it, Watcher hot-swaps the compiled Set in every
// stage. See README.md for the workbook format and the fact contract.
package rules

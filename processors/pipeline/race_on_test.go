//go:build race

package pipeline

// raceEnabled: the race detector makes the end-to-end tests several times
// slower; the largest of them shrink under it (make test runs them whole).
const raceEnabled = true

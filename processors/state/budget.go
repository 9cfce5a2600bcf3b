package state

import "sync/atomic"

// RecoveryMemory bounds the recovery batches of all the stores that share
// it (one per process). A recovering partition holds its batch, up to
// Options.RecoveryBatchBytes, in memory; a process whose stages restore
// many partitions at once (after a rebalance, or at the first start: 32 in
// bench/audience) held 32 of them, 160 MiB, plus the garbage collector's
// room for as much again. With a budget each recovering store's batch is
// at most its share: the budget divided by the stores recovering at that
// moment, never less than minRecoveryBatch and never more than
// RecoveryBatchBytes. A lone partition keeps full-size batches, which is
// what recovery speed needs (bench/recovery: 1 MiB batches recover about
// 1.7x LevelDB's rate, 4 MiB about 2.5-3x); many partitions recovering at
// once share the cores anyway.
type RecoveryMemory struct {
	bytes      int64
	recovering atomic.Int64
}

// minRecoveryBatch is the smallest share: below it, ingested files get too
// small and too many.
const minRecoveryBatch = 256 << 10

// NewRecoveryMemory returns a budget of bytes for the recovery batches of
// the stores given it in Options.RecoveryMemory.
func NewRecoveryMemory(bytes int64) *RecoveryMemory { return &RecoveryMemory{bytes: bytes} }

// Recovering is the number of stores recovering under the budget now.
func (m *RecoveryMemory) Recovering() int { return int(m.recovering.Load()) }

// join and leave count a store in and out of recovery.
func (m *RecoveryMemory) join() {
	if m != nil {
		m.recovering.Add(1)
	}
}

func (m *RecoveryMemory) leave() {
	if m != nil {
		m.recovering.Add(-1)
	}
}

// share is the batch size of a store recovering under m, at most max.
func (m *RecoveryMemory) share(max int) int {
	if m == nil {
		return max
	}
	n := m.recovering.Load()
	if n < 1 {
		n = 1
	}
	return min(max, int(max64(minRecoveryBatch, m.bytes/n)))
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

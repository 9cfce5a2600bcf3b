package state

import "testing"

func TestRecoveryMemoryShare(t *testing.T) {
	for _, tc := range []struct {
		name       string
		budget     int64
		recovering int64
		max, want  int
	}{
		{"no budget: the store's own limit", -1, 0, 4 << 20, 4 << 20},
		{"one store: capped by its own limit", 32 << 20, 1, 4 << 20, 4 << 20},
		{"eight stores share it", 32 << 20, 8, 4 << 20, 4 << 20},
		{"32 stores share it", 32 << 20, 32, 4 << 20, 1 << 20},
		{"never below the minimum", 1 << 20, 64, 4 << 20, minRecoveryBatch},
		{"counted before it joined", 32 << 20, 0, 4 << 20, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m *RecoveryMemory
			if tc.budget >= 0 {
				m = NewRecoveryMemory(tc.budget)
				m.recovering.Store(tc.recovering)
			}
			if got := m.share(tc.max); got != tc.want {
				t.Fatalf("share = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestRecoveryMemoryCountsRecoveringStores: a store counts from Open until
// MarkRecovered, or until Close if it never recovered, and its batches are
// its share.
func TestRecoveryMemoryCountsRecoveringStores(t *testing.T) {
	mem := NewRecoveryMemory(1 << 20)
	opts := testOptions(t)
	opts.RecoveryMemory = mem
	a := openStore(t, t.TempDir(), opts)
	b := openStore(t, t.TempDir(), opts)
	if n := mem.Recovering(); n != 2 {
		t.Fatalf("Recovering = %d after two Opens, want 2", n)
	}
	if got := a.batchLimit(); got != 512<<10 {
		t.Fatalf("batchLimit = %d with two stores recovering, want %d", got, 512<<10)
	}
	must(t, a.MarkRecovered())
	if n := mem.Recovering(); n != 1 {
		t.Fatalf("Recovering = %d after one MarkRecovered, want 1", n)
	}
	must(t, b.Close())
	if n := mem.Recovering(); n != 0 {
		t.Fatalf("Recovering = %d after the other closed mid-recovery, want 0", n)
	}
	must(t, a.Close())
	must(t, a.Open()) // reopened: recovering again
	if n := mem.Recovering(); n != 1 {
		t.Fatalf("Recovering = %d after a reopen, want 1", n)
	}
}

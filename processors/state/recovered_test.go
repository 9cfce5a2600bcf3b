package state

import (
	"fmt"
	"sync"
	"testing"
)

// TestOnRecoveredCountsRestoredRecords: every row write and delete made
// while recovering is reported once, as its batch commits; writes after
// recovery are not recovery. PebbleMetrics reads the open DB and is nil
// once it is closed.
func TestOnRecoveredCountsRestoredRecords(t *testing.T) {
	for _, indexOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("index-only=%t", indexOnly), func(t *testing.T) { testOnRecovered(t, indexOnly) })
	}
}

// testOnRecovered: with indexOnly, the rows have no index keys, so the
// store writes none of them; they are still restored records.
func testOnRecovered(t *testing.T, indexOnly bool) {
	var mu sync.Mutex
	got := map[string]int{}
	opts := testOptions(t)
	opts.IndexOnly = indexOnly
	opts.RecoveryBatchBytes = 1 << 10 // several batches
	opts.OnRecovered = func(topic string, n int) {
		mu.Lock()
		defer mu.Unlock()
		got[topic] += n
	}
	st := openStore(t, t.TempDir(), opts)
	for i := range 300 {
		must(t, st.Set(fmt.Sprintf("k%03d", i), []byte(`{"fav":["I1"]}`)))
		must(t, st.SetOffset(int64(i)))
	}
	must(t, st.Delete("k000"))
	must(t, st.MarkRecovered())
	must(t, st.Set("after", []byte(`{}`)))
	mu.Lock()
	if got[""] != 301 {
		t.Errorf("recovered %v, want 301 records (300 sets, 1 delete) and nothing after recovery", got)
	}
	mu.Unlock()
	if m := st.PebbleMetrics(); m == nil || m.DiskSpaceUsage() == 0 {
		t.Errorf("PebbleMetrics of an open store = %v", m)
	}
	must(t, st.Close())
	if m := st.PebbleMetrics(); m != nil {
		t.Error("PebbleMetrics of a closed store is not nil")
	}
}

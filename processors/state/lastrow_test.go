package state

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestWriteAfterGetReusesTheRowItRead: the write Goka makes after reading
// a row diffs its index entries against the row it read, without reading
// it again; any other write reads the old row. The entries stay exact
// under a random mix of reads, writes and deletes.
func TestWriteAfterGetReusesTheRowItRead(t *testing.T) {
	st := openStore(t, t.TempDir(), testOptions(t))
	must(t, st.MarkRecovered())
	reads := func() uint64 { return st.Stats().OldRowReads }

	must(t, st.Set("m1", []byte("fav=a"))) // absent before, not read by Get
	if reads() != 1 {
		t.Fatalf("%d old-row reads for a blind write, want 1", reads())
	}
	v, err := st.Get("m1")
	must(t, err)
	must(t, st.Set("m1", append(v, ",b"...)))
	must(t, st.Set("m1", []byte("fav=c")))  // the row it wrote is the old row
	if _, err := st.Get("m2"); err != nil { // absent: remembered as absent
		t.Fatal(err)
	}
	must(t, st.Set("m2", []byte("fav=c")))
	if reads() != 1 {
		t.Fatalf("%d old-row reads, want still 1: each write followed a read or a write of its row", reads())
	}
	if _, err := st.Get("m1"); err != nil {
		t.Fatal(err)
	}
	must(t, st.Set("m2", []byte("fav=d"))) // another row than the one read
	if reads() != 2 {
		t.Fatalf("%d old-row reads, want 2", reads())
	}
	checkIndexes(t, st)

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		key := fmt.Sprintf("k%d", rng.IntN(8))
		switch rng.IntN(4) {
		case 0:
			_, err := st.Get(key)
			must(t, err)
		case 1:
			must(t, st.Delete(key))
		default:
			must(t, st.Set(key, fmt.Appendf(nil, "fav=i%d,i%d;due=%010d", rng.IntN(5), rng.IntN(5), i)))
		}
	}
	checkIndexes(t, st)
}

package state

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
)

func benchOptions(indexed bool) Options {
	o := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if indexed {
		o.Indexes = map[string]Indexer{"fav": favIndexer}
	}
	return o
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("member-%08d", (i*7919)%n)
	}
	return keys
}

func BenchmarkSet(b *testing.B) {
	value := make([]byte, 200)
	copy(value, "fav=item-1,item-2;")
	for _, bc := range []struct {
		name      string
		indexed   bool
		recovered bool
	}{
		{"recovery", false, false},
		{"recovery-indexed", true, false}, // index built afterwards
		{"processing", false, true},
		{"processing-indexed", true, true}, // reads the old value per Set
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := openStore(b, b.TempDir(), benchOptions(bc.indexed))
			if bc.recovered {
				must(b, st.MarkRecovered())
			}
			keys := benchKeys(100_000)
			b.SetBytes(int64(len(value)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := st.Set(keys[i%len(keys)], value); err != nil {
					b.Fatal(err)
				}
				if err := st.SetOffset(int64(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if !bc.recovered {
				must(b, st.MarkRecovered()) // include the commit and index build
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	st := openStore(b, b.TempDir(), benchOptions(false))
	keys := benchKeys(100_000)
	value := make([]byte, 200)
	for i, k := range keys {
		must(b, st.Set(k, value))
		must(b, st.SetOffset(int64(i)))
	}
	must(b, st.MarkRecovered())
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v, err := st.Get(keys[(i*31)%len(keys)])
		if err != nil || len(v) != len(value) {
			b.Fatalf("Get: %d bytes, %v", len(v), err)
		}
		i++
	}
}

// BenchmarkScanIndex: 100,000 members with two favourites among 1,000
// items; each scan finds the ~200 members who favourited one item.
func BenchmarkScanIndex(b *testing.B) {
	st := openStore(b, b.TempDir(), benchOptions(true))
	keys := benchKeys(100_000)
	for i, k := range keys {
		must(b, st.Set(k, fmt.Appendf(nil, "fav=item-%03d,item-%03d", i%1000, (i*13)%1000)))
	}
	must(b, st.MarkRecovered())
	b.ReportAllocs()
	i, found := 0, 0
	for b.Loop() {
		must(b, st.Lookup("fav", fmt.Sprintf("item-%03d", i%1000), func(string) error {
			found++
			return nil
		}))
		i++
	}
	b.ReportMetric(float64(found)/float64(i), "rows/scan")
}

package topics

import (
	"strconv"
	"testing"
)

// Vectors from Apache Kafka's UtilsTest.testMurmur2.
func TestMurmur2KafkaVectors(t *testing.T) {
	cases := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, c := range cases {
		if got := int32(Murmur2([]byte(c.in))); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestHasherMatchesPartition(t *testing.T) {
	h := Hasher()
	for i := 0; i < 10000; i++ {
		key := []byte("M" + string(rune('a'+i%26)) + strconv.Itoa(i))
		hh := h()
		hh.Write(key)
		// Goka: abs(int32(sum)) % n.
		s := int32(hh.Sum32())
		if s < 0 {
			s = -s
		}
		for _, n := range []int32{1, 3, 16, 64} {
			if got, want := s%n, Partition(key, n); got != want {
				t.Fatalf("key %q n=%d: goka-style %d, kafka %d", key, n, got, want)
			}
		}
	}
}

func TestPartitionKeysCoverEveryPartition(t *testing.T) {
	for _, n := range []int32{1, 2, 16, 100} {
		keys := PartitionKeys("bcast-", n)
		for p, k := range keys {
			if got := Partition([]byte(k), n); got != int32(p) {
				t.Fatalf("n=%d: key %q lands on %d, want %d", n, k, got, p)
			}
		}
	}
}

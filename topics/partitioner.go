package topics

import (
	"hash"
	"strconv"
)

// Murmur2 is Kafka's default key hash (org.apache.kafka.common.utils.Utils.murmur2),
// as the Java client, librdkafka's murmur2 partitioners and franz-go's default
// partitioner compute it.
func Murmur2(data []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for len(data) >= 4 {
		k := uint32(data[0]) | uint32(data[1])<<8 | uint32(data[2])<<16 | uint32(data[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		data = data[4:]
	}
	switch len(data) {
	case 3:
		h ^= uint32(data[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// Partition returns the partition Kafka's default partitioner assigns to key
// among n partitions: toPositive(murmur2(key)) % n. Every producer and every
// stage in RTM must agree with it, or co-partitioned state silently splits.
func Partition(key []byte, n int32) int32 {
	return int32(Murmur2(key)&0x7fffffff) % n
}

// Hasher returns a hash.Hash32 constructor for goka.WithHasher,
// goka.WithViewHasher and goka.WithEmitterHasher, so that Goka (whose default
// is sarama's FNV-1a) places keys exactly where Kafka's default partitioner
// does.
//
// Goka computes abs(int32(Sum32())) % n and sarama's hash partitioner
// int32(Sum32()) % n (negated if negative) or (Sum32() & 0x7fffffff) % n;
// returning the murmur2 hash already masked to 31 bits makes all of them equal
// to Partition.
func Hasher() func() hash.Hash32 {
	return func() hash.Hash32 { return &murmur2Hash{} }
}

// murmur2Hash buffers the key: murmur2 is not a streaming hash (the length
// seeds it), and keys are short.
type murmur2Hash struct{ buf []byte }

func (h *murmur2Hash) Write(p []byte) (int, error) { h.buf = append(h.buf, p...); return len(p), nil }
func (h *murmur2Hash) Sum32() uint32               { return Murmur2(h.buf) & 0x7fffffff }
func (h *murmur2Hash) Reset()                      { h.buf = h.buf[:0] }
func (h *murmur2Hash) Size() int                   { return 4 }
func (h *murmur2Hash) BlockSize() int              { return 4 }
func (h *murmur2Hash) Sum(b []byte) []byte {
	s := h.Sum32()
	return append(b, byte(s>>24), byte(s>>16), byte(s>>8), byte(s))
}

// PartitionKeys returns, for each of n partitions, a key that Partition maps
// to it. Broadcasts (an audience request that every partition must answer
// from its own index) emit one record per partition under these keys, so they
// travel through ordinary keyed producers, including Goka's ctx.Emit.
func PartitionKeys(prefix string, n int32) []string {
	keys := make([]string, n)
	found := int32(0)
	for i := 0; found < n; i++ {
		k := prefix + strconv.Itoa(i)
		p := Partition([]byte(k), n)
		if keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	return keys
}

package state

import (
	"bytes"
	"encoding/binary"
	"sort"
	"strings"
)

// Key layout inside one partition's Pebble DB. Every key starts with a
// keyspace byte so that rows, index entries and metadata never interleave:
//
//	'd' key                                  a table row (what Goka sees)
//	'i' name 0x00 indexKey 0x00 primaryKey   an index entry, empty value
//	'm' name                                 metadata (offset, index state)
//
// Because index keys contain no zero byte, an index entry decodes
// unambiguously, and all entries of one index key are contiguous, sorted by
// primary key.
const (
	spaceData  byte = 'd'
	spaceIndex byte = 'i'
	spaceMeta  byte = 'm'
	sep        byte = 0x00
)

var (
	dataLower  = []byte{spaceData}
	dataUpper  = []byte{spaceData + 1}
	indexLower = []byte{spaceIndex}
	indexUpper = []byte{spaceIndex + 1}

	// metaOffset holds the Goka offset as 8 bytes big-endian.
	metaOffset = []byte{spaceMeta, 'o', 'f', 'f', 's', 'e', 't'}
	// metaIndexSet holds the sorted index names the entries were built for.
	metaIndexSet = []byte{spaceMeta, 'i', 'n', 'd', 'e', 'x', 'e', 's'}
	// metaIndexRebuild is present while the index entries are incomplete
	// and must be rebuilt from the rows when recovery ends.
	metaIndexRebuild = []byte{spaceMeta, 'r', 'e', 'b', 'u', 'i', 'l', 'd'}
)

// appendDataKey appends the Pebble key of row key to dst.
func appendDataKey(dst []byte, key string) []byte {
	dst = append(dst, spaceData)
	return append(dst, key...)
}

// indexPrefix returns 'i' name 0x00: the start of one index's keyspace.
func indexPrefix(name string) []byte {
	p := make([]byte, 0, len(name)+2)
	p = append(p, spaceIndex)
	p = append(p, name...)
	return append(p, sep)
}

// appendIndexKey appends the Pebble key of one index entry to dst.
func appendIndexKey(dst []byte, name, indexKey, primaryKey string) []byte {
	dst = append(dst, spaceIndex)
	dst = append(dst, name...)
	dst = append(dst, sep)
	dst = append(dst, indexKey...)
	dst = append(dst, sep)
	return append(dst, primaryKey...)
}

// splitIndexEntry splits the part of an index entry after its index prefix
// into index key and primary key.
func splitIndexEntry(rest []byte) (indexKey, primaryKey []byte, ok bool) {
	i := bytes.IndexByte(rest, sep)
	if i < 0 {
		return nil, nil, false
	}
	return rest[:i], rest[i+1:], true
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func encodeOffset(off int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(off))
}

func decodeOffset(b []byte) (int64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}

// indexSetFingerprint names the index set a store's entries belong to.
func indexSetFingerprint(indexes map[string]Indexer) []byte {
	names := make([]string, 0, len(indexes))
	for name := range indexes {
		names = append(names, name)
	}
	sort.Strings(names)
	return []byte(strings.Join(names, "\x00"))
}

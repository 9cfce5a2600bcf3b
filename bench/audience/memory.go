package main

import (
	"fmt"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"

	"github.com/rtm-project/rtm/processors/state"
)

// memory says where the process's memory is at one point of the run: the
// resident set, the Go heap (the broker's records, decoded rows, client
// buffers), and the Pebble memory of every open store of the stages
// measured (memtables, allocated outside the Go heap, and the one block
// cache they share).
func memory(regs []*state.Registry) string {
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(samples)
	var mem, cache, disk uint64
	var count, stores int64
	for _, r := range regs {
		for _, s := range r.Stores() {
			m := s.PebbleMetrics()
			if m == nil {
				continue
			}
			stores++
			mem += m.MemTable.Size
			count += m.MemTable.Count
			cache = uint64(m.BlockCache.Size) // shared: the same for every store
			disk += m.DiskSpaceUsage()
		}
	}
	return fmt.Sprintf("RSS %s (peak %s); Go heap objects %s, Go runtime total %s; %d stores: memtables %s (%d), block cache %s, on disk %s",
		mb(procStatus("VmRSS")), mb(procStatus("VmHWM")), mb(int64(samples[0].Value.Uint64())),
		mb(int64(samples[1].Value.Uint64()-samples[2].Value.Uint64())), stores, mb(int64(mem)), count, mb(int64(cache)), mb(int64(disk)))
}

func mb(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// procStatus reads a kB field of /proc/self/status in bytes (0 if unknown).
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// compactions says how far the stores are from settled: compactions
// running (the one each store starts when its recovery ends, see
// state.MarkRecovered) and the sstables in L0, which every point read
// consults.
func compactions(regs []*state.Registry) string {
	var running, l0 int64
	for _, r := range regs {
		for _, s := range r.Stores() {
			if m := s.PebbleMetrics(); m != nil {
				running += m.Compact.NumInProgress
				l0 += m.Levels[0].TablesCount
			}
		}
	}
	return fmt.Sprintf("%d compactions running, %d sstables in L0", running, l0)
}

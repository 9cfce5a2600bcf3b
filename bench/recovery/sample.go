package main

import (
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lovoo/goka/storage"

	"github.com/rtm-project/rtm/processors/state"
)

// breakdown is what the process held when its resident set was largest
// during recovery: where the peak goes.
type breakdown struct {
	RSS       int64 // VmRSS at the sample
	GoHeap    int64 // Go heap in use (objects and their spans' free room)
	GoTotal   int64 // all memory the Go runtime has mapped and not released
	MemTables int64 // Pebble memtables (allocated off the Go heap)
	MemCount  int64
	Cache     int64 // Pebble block cache
	Batch     int64 // the recovery batch not yet committed
}

// sampler polls the process every interval until stop, keeping the sample
// with the largest RSS.
type sampler struct {
	mu   sync.Mutex
	peak breakdown
	stop chan struct{}
	done chan struct{}
}

func startSampler(get func() storage.Storage, interval time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			rss := vmRSS()
			s.mu.Lock()
			if rss > s.peak.RSS {
				b := breakdown{RSS: rss}
				metrics.Read(samples)
				b.GoHeap = int64(samples[0].Value.Uint64() + samples[1].Value.Uint64())
				b.GoTotal = int64(samples[2].Value.Uint64() - samples[3].Value.Uint64())
				if st, ok := get().(*state.Store); ok {
					if m := st.PebbleMetrics(); m != nil {
						b.MemTables, b.MemCount = int64(m.MemTable.Size), m.MemTable.Count
						b.Cache = m.BlockCache.Size
					}
				}
				s.peak = b
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) finish() breakdown {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// vmRSS is the process's current resident set size, or 0 if unknown.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

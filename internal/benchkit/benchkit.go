// Package benchkit is what RTM's benchmark programs share: an embedded
// broker with the topic catalogue applied, waiting for a consumer group to
// catch up, CPU profiles and peak memory.
package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/broker"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/topics"
)

// Env is an in-process Kafka with RTM's topics and a client to it.
type Env struct {
	Dir       string // scratch directory for the stages' state
	Brokers   []string
	Catalogue topics.Catalogue
	Client    *kgo.Client
	Admin     *kadm.Client
	Log       *slog.Logger // discards: benchmarks print only results
	broker    *broker.Broker
}

// Start starts the embedded broker on a free port, applies the catalogue
// with parts partitions, and opens a client with clientOpts.
func Start(ctx context.Context, name string, parts int32, clientOpts ...kgo.Opt) (*Env, error) {
	e := &Env{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Catalogue: topics.New(parts, 1)}
	var err error
	if e.Dir, err = os.MkdirTemp("", "rtm-bench-"+name); err != nil {
		return nil, err
	}
	bc := broker.Defaults()
	bc.Addr = "127.0.0.1:0"
	if e.broker, err = broker.Start(bc, e.Log); err != nil {
		e.Close()
		return nil, err
	}
	e.Brokers = []string{e.broker.Addr()}
	if e.Client, err = kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.Brokers...)}, clientOpts...)...); err != nil {
		e.Close()
		return nil, err
	}
	e.Admin = kadm.NewClient(e.Client)
	if _, err := topics.Apply(ctx, e.Admin, e.Catalogue, false); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close stops everything and removes the scratch directory.
func (e *Env) Close() {
	if e.Client != nil {
		e.Client.Close()
	}
	if e.broker != nil {
		e.broker.Close()
	}
	os.RemoveAll(e.Dir)
}

// WaitLag waits until group has consumed everything produced so far.
func (e *Env) WaitLag(ctx context.Context, group string) error {
	for ctx.Err() == nil {
		time.Sleep(300 * time.Millisecond)
		lags, err := e.Admin.Lag(ctx, group)
		if err != nil {
			continue
		}
		l, ok := lags[group]
		if ok && l.FetchErr == nil && l.DescribeErr == nil && len(l.Lag) > 0 && l.Lag.Total() == 0 {
			return nil
		}
	}
	return ctx.Err()
}

// CPUProfile starts a CPU profile written to path; call the returned stop.
// An empty path profiles nothing.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// AllocProfile records what the measured phase allocates: a heap profile
// at path+".base" now and one at path when stop is called; the phase's
// allocations are the difference,
// go tool pprof -sample_index=alloc_space -diff_base path.base binary path.
func AllocProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	write := func(p string) error {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		runtime.GC() // a heap profile shows the state as of the last GC
		return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
	}
	if err := write(path + ".base"); err != nil {
		return nil, fmt.Errorf("alloc profile: %w", err)
	}
	return func() error { return write(path) }, nil
}

// Phase measures what a run costs besides its wall time: the CPU the
// whole process uses and the process's block cache hits and misses. A
// run's CPU per record is its cost; its wall time on a shared 2-core
// machine also counts whatever else the machine was doing.
type Phase struct {
	cpu   time.Duration
	cache pebble.CacheMetrics
}

// StartPhase starts measuring a run.
func StartPhase() Phase { return Phase{cpuTime(), stage.BlockCacheMetrics()} }

// Cost is the CPU the process used and the block cache's hits and misses
// since p started.
func (p Phase) Cost() (cpu time.Duration, hits, misses int64) {
	c := stage.BlockCacheMetrics()
	return cpuTime() - p.cpu, c.Hits - p.cache.Hits, c.Misses - p.cache.Misses
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// PeakRSS is the process's peak resident set size (VmHWM), as text.
func PeakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return "unknown"
}

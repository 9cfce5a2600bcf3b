package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"

	"github.com/rtm-project/rtm/processors/state"
)

// result is one storage's measurement, printed by the child as JSON.
type result struct {
	Storage  string
	Recovery time.Duration // view.Run until the view is running
	Records  int
	PeakRSS  int64 // VmHWM at the end (after the Gets), bytes
	// RecoveryRSS is VmHWM when recovery ended: the peak of recovery
	// alone, before the Gets fill the block cache.
	RecoveryRSS int64
	GetP50      time.Duration
	GetP99      time.Duration
	GetsFound   int // Gets that found their key (a check: all, except for discard)
	// Peak is the recovery sample with the largest RSS, broken down.
	Peak breakdown
}

// builders are the storages under comparison.
var builders = map[string]func(dir string, cfg config) (storage.Builder, error){
	"pebble": func(dir string, cfg config) (storage.Builder, error) {
		return state.Builder(dir, state.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
			RecoveryBatchBytes: cfg.BatchBytes, MemTableSize: cfg.MemTableBytes}, nil)
	},
	"leveldb": func(dir string, _ config) (storage.Builder, error) { return storage.DefaultBuilder(dir), nil },
	"discard": func(string, config) (storage.Builder, error) {
		return func(string, int32) (storage.Storage, error) { return storage.NewNull(), nil }, nil
	},
}

// runChild recovers the table into one storage with a goka.View, then
// times random point Gets on that storage directly.
func runChild(ctx context.Context, name, dir string, cfg config) error {
	build, err := builders[name](dir, cfg)
	if err != nil {
		return err
	}
	// Keep the storage the view builds, to read from it directly.
	var (
		mu sync.Mutex
		st storage.Storage
	)
	capture := func(topic string, partition int32) (storage.Storage, error) {
		s, err := build(topic, partition)
		mu.Lock()
		st = s
		mu.Unlock()
		return s, err
	}
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1 // one kfake broker
	tmc.Stream.Replication = 1
	view, err := goka.NewView(cfg.Brokers, goka.GroupTable(group), new(codec.Bytes),
		goka.WithViewStorageBuilder(capture),
		goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithTopicManagerConfig(tmc)),
		goka.WithViewLogger(log.New(io.Discard, "", 0)),
	)
	if err != nil {
		return fmt.Errorf("creating view: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	smp := startSampler(func() storage.Storage { mu.Lock(); defer mu.Unlock(); return st }, 10*time.Millisecond)
	start := time.Now()
	go func() { done <- view.Run(ctx) }()
	select {
	case <-view.WaitRunning():
	case err := <-done:
		smp.finish()
		return fmt.Errorf("view stopped before it recovered: %w", err)
	}
	r := result{Storage: name, Recovery: time.Since(start), Records: cfg.Records}
	r.Peak = smp.finish()
	if r.RecoveryRSS, err = peakRSS(); err != nil {
		return err
	}

	mu.Lock()
	s := st
	mu.Unlock()
	r.GetP50, r.GetP99, r.GetsFound, err = timeGets(s, cfg)
	if err != nil {
		return err
	}
	if r.PeakRSS, err = peakRSS(); err != nil {
		return err
	}
	cancel()
	if err := <-done; err != nil {
		return fmt.Errorf("stopping view: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// timeGets reads cfg.Gets random keys and returns latency percentiles.
func timeGets(st storage.Storage, cfg config) (p50, p99 time.Duration, found int, err error) {
	rng := rand.New(rand.NewPCG(2, 2))
	lat := make([]time.Duration, cfg.Gets)
	for i := range lat {
		k := key(rng.IntN(cfg.Records))
		t0 := time.Now()
		v, err := st.Get(k)
		lat[i] = time.Since(t0)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("getting %s: %w", k, err)
		}
		if v != nil {
			found++
		}
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return 0, 0, 0, nil
	}
	return lat[len(lat)/2], lat[len(lat)*99/100], found, nil
}

// peakRSS reads the process's peak resident set size (VmHWM).
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("reading peak RSS: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmHWM %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status: %v", sc.Err())
}

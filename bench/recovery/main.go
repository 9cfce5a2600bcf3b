// Command recovery measures how fast a Goka table is recovered from its
// changelog into each storage: RTM's Pebble storage (processors/state),
// Goka's default LevelDB storage, and a storage that discards every write
// (the ceiling: what Goka and the Kafka client cost on their own).
//
// It starts an in-process Kafka (kfake), fills the single-partition
// changelog topic bench-table, then recovers it once per storage, each in
// its own child process (this binary with -child) so peak RSS is per
// storage, and prints a table with ratios against LevelDB.
//
//	go run ./bench/recovery -records 1000000
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
)

// config is what the parent passes to each child.
type config struct {
	Records   int
	ValueSize int
	Gets      int
	Brokers   []string
	// BatchBytes and MemTableBytes are the Pebble store's
	// RecoveryBatchBytes and MemTableSize (0: its defaults).
	BatchBytes    int
	MemTableBytes uint64
}

const (
	group = "bench"
	table = group + "-table" // goka.GroupTable(group)
)

func main() {
	var (
		cfg      config
		storages = flag.String("storages", "pebble,leveldb,discard", "storages to measure, in order")
		child    = flag.String("child", "", "internal: measure one storage against -brokers and print JSON")
		brokers  = flag.String("brokers", "", "internal: kafka seed brokers of the parent's kfake")
		dir      = flag.String("dir", "", "directory for the stores (default: a temporary directory)")
		profile  = flag.String("cpuprofile", "", "write each child's CPU profile to this path prefix (+ storage name)")
	)
	flag.IntVar(&cfg.Records, "records", 1_000_000, "records in the changelog (all distinct keys)")
	flag.IntVar(&cfg.ValueSize, "value-size", 200, "value size in bytes")
	flag.IntVar(&cfg.Gets, "gets", 100_000, "random point Gets after recovery")
	flag.IntVar(&cfg.BatchBytes, "batch-bytes", 0, "pebble: RecoveryBatchBytes (0: the store's default)")
	flag.Uint64Var(&cfg.MemTableBytes, "memtable-bytes", 0, "pebble: MemTableSize (0: the store's default)")
	flag.Parse()

	var err error
	if *child != "" {
		cfg.Brokers = strings.Split(*brokers, ",")
		err = withProfile(*profile, *child, func() error { return runChild(context.Background(), *child, *dir, cfg) })
	} else {
		err = runParent(context.Background(), strings.Split(*storages, ","), *dir, cfg, *profile)
	}
	if err != nil {
		slog.Error("recovery benchmark failed", "err", err)
		os.Exit(1)
	}
}

// runParent fills the changelog once and measures every storage.
func runParent(ctx context.Context, storages []string, dir string, cfg config, profile string) error {
	for _, s := range storages {
		if _, ok := builders[s]; !ok {
			return fmt.Errorf("unknown storage %q (known: pebble, leveldb, discard)", s)
		}
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "rtm-recovery-bench-")
		if err != nil {
			return fmt.Errorf("creating work directory: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	k, err := startKafka(ctx)
	if err != nil {
		return err
	}
	defer k.close()
	fmt.Printf("producing %d records of %d bytes to %s ...\n", cfg.Records, cfg.ValueSize, table)
	took, err := k.fill(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("produced in %s\n\n", took.Round(1e6))

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	var results []result
	for _, s := range storages {
		fmt.Printf("recovering into %s ...\n", s)
		cmd := exec.CommandContext(ctx, exe, "-child", s, "-brokers", strings.Join(k.brokers, ","),
			"-dir", dir+"/"+s, "-records", fmt.Sprint(cfg.Records), "-value-size", fmt.Sprint(cfg.ValueSize),
			"-gets", fmt.Sprint(cfg.Gets), "-cpuprofile", profile,
			"-batch-bytes", fmt.Sprint(cfg.BatchBytes), "-memtable-bytes", fmt.Sprint(cfg.MemTableBytes))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("measuring %s: %w", s, err)
		}
		var r result
		if err := json.Unmarshal(out, &r); err != nil {
			return fmt.Errorf("reading %s's result %q: %w", s, out, err)
		}
		results = append(results, r)
	}
	fmt.Println()
	return printTable(os.Stdout, results, cfg)
}

var errNoRecords = errors.New("the changelog is empty")

// withProfile runs fn, writing a CPU profile to prefix+name if prefix is set.
func withProfile(prefix, name string, fn func() error) error {
	if prefix == "" {
		return fn()
	}
	f, err := os.Create(prefix + name)
	if err != nil {
		return fmt.Errorf("creating CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return errors.Join(fmt.Errorf("starting CPU profile: %w", err), f.Close())
	}
	err = fn()
	pprof.StopCPUProfile()
	return errors.Join(err, f.Close())
}

package stage

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lovoo/goka/storage"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/topics"
)

// EnvConfig is what NewEnv needs.
type EnvConfig struct {
	// Kafka is the cluster and its security; every Goka client of the
	// stage uses it.
	Kafka     kafka.Config
	Catalogue topics.Catalogue
	// DataDir is this instance's state directory; the stage keeps its
	// stores under DataDir/state/<group>.
	DataDir string
	Group   string
	// Indexes are the partition-local indexes of IndexedTable, the one
	// table (topic) of the stage that is scanned by index. The stage's
	// other tables (the joins it only reads by key) keep none: their
	// writes read no old row and their recovery derives no index key.
	Indexes      map[string]state.Indexer
	IndexedTable string
	// IndexOnly: the stage reads IndexedTable only through its indexes,
	// never a row by key (no Join lookups), so its stores keep each row's
	// index keys instead of its value (state.Options.IndexOnly).
	IndexOnly bool
	// InstanceID, when set, is the Kafka static group membership ID
	// (group.instance.id): a restart within the session timeout gets its
	// partitions back without rebalancing the other members.
	InstanceID string
	// OnStoreFailure is called (once per store) when a local store fails
	// its writes; the stage's runner stops the stage with the error.
	OnStoreFailure func(err error)
	// FS is the file system of the local stores (default: the OS's); the
	// chaos harness injects faults through a state.FaultFS.
	FS  vfs.FS
	Log *slog.Logger
}

// NewEnv returns the environment of one stage (consumer group): its local
// state lives in its own directory, DataDir/state/<group>, so several stages
// in one process (rtm dev, tests) never share a Pebble store, and its
// Registry finds the stores of its own partitions.
func NewEnv(c EnvConfig) (Env, error) {
	if len(c.Indexes) > 0 && c.IndexedTable == "" {
		return Env{}, fmt.Errorf("stage %s: indexes declared without the table they index", c.Group)
	}
	if c.IndexOnly && len(c.Indexes) == 0 {
		return Env{}, fmt.Errorf("stage %s: an index-only table needs indexes", c.Group)
	}
	reg := state.NewRegistry()
	opts := state.Options{Logger: c.Log, Cache: blockCache(), RecoveryMemory: recoveryMemory, FS: c.FS,
		OnRecovered: func(topic string, n int) { recovered.WithLabelValues(topic).Add(float64(n)) }}
	if c.OnStoreFailure != nil {
		opts.OnFailure = func(topic string, partition int32, err error) { c.OnStoreFailure(err) }
	}
	root := filepath.Join(c.DataDir, "state", c.Group)
	plain, err := state.Builder(root, opts, reg)
	if err != nil {
		return Env{}, err
	}
	indexed := plain
	if len(c.Indexes) > 0 {
		opts.Indexes, opts.IndexOnly = c.Indexes, c.IndexOnly
		if indexed, err = state.Builder(root, opts, reg); err != nil {
			return Env{}, err
		}
	}
	withSeries := func(topic string, partition int32) (storage.Storage, error) {
		// Serve rtm_recovery_records_total from the table's first store on,
		// at 0 until it restores anything: a dashboard and an alert's
		// rate() need the series before the first restore.
		recovered.WithLabelValues(topic)
		if topic == c.IndexedTable {
			return indexed(topic, partition)
		}
		return plain(topic, partition)
	}
	return Env{Brokers: c.Kafka.Brokers, Kafka: c.Kafka, Catalogue: c.Catalogue, InstanceID: c.InstanceID, Group: c.Group,
		Storage: withSeries, Registry: reg, Log: c.Log.With("stage", c.Group)}, nil
}

// RecoveryMemoryBytes bounds the recovery batches of all the process's
// stores together: a lone recovering partition gets full 4 MiB batches
// (recovery speed), but the 32 partitions two stages restore at once in
// one process get 1 MiB each instead of 160 MiB between them.
const RecoveryMemoryBytes = 32 << 20

var recoveryMemory = state.NewRecoveryMemory(RecoveryMemoryBytes)

// DefaultBlockCacheSize is the size of the process's block cache unless
// SetBlockCacheSize says otherwise.
const DefaultBlockCacheSize = 256 << 20

var cache struct {
	mu   sync.Mutex
	size int64
	c    *pebble.Cache
}

// SetBlockCacheSize sizes the process's block cache (state_cache_bytes).
// It must be called before the first stage environment is made: the cache
// is made once, and a later different size is an error, not ignored.
func SetBlockCacheSize(n int64) error {
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if n <= 0 {
		return fmt.Errorf("block cache size %d must be positive", n)
	}
	if cache.c != nil && n != cache.size {
		return fmt.Errorf("block cache already in use at %d bytes; cannot resize it to %d", cache.size, n)
	}
	cache.size = n
	return nil
}

// BlockCacheMetrics is the process's block cache: bytes in use, hits and
// misses so far (benchmarks; /metrics reads the same).
func BlockCacheMetrics() pebble.CacheMetrics { return blockCache().Metrics() }

// blockCache is the process's one Pebble block cache, shared by every
// stage: the busiest tables get the room, and a stage rebuilt by its
// supervisor reuses it instead of stranding another. Pebble keeps a
// table's index and bloom-filter blocks in it like data blocks, at high
// priority, so with room for them a point read of a missing key reads no
// file.
func blockCache() *pebble.Cache {
	cache.mu.Lock()
	defer cache.mu.Unlock()
	if cache.c == nil {
		if cache.size == 0 {
			cache.size = DefaultBlockCacheSize
		}
		cache.c = pebble.NewCache(cache.size)
	}
	return cache.c
}

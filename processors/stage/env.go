package stage

import (
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/topics"
)

// NewEnv returns the environment of one stage (consumer group): its local
// state lives in its own directory, dataDir/state/<group>, so several stages
// in one process (rtm dev, tests) never share a Pebble store, and its
// Registry finds the stores of its own partitions.
func NewEnv(brokers []string, cat topics.Catalogue, dataDir, group string, indexes map[string]state.Indexer, log *slog.Logger) (Env, error) {
	reg := state.NewRegistry()
	b, err := state.Builder(filepath.Join(dataDir, "state", group),
		state.Options{Indexes: indexes, Logger: log, Cache: blockCache()}, reg)
	if err != nil {
		return Env{}, err
	}
	return Env{Brokers: brokers, Catalogue: cat, Storage: b, Registry: reg, Log: log.With("stage", group)}, nil
}

// blockCache is the process's one Pebble block cache, shared by every
// stage: the busiest tables get the room, and a stage rebuilt by its
// supervisor reuses it instead of stranding another.
var blockCache = sync.OnceValue(func() *pebble.Cache { return pebble.NewCache(BlockCacheSize) })

// BlockCacheSize is the size of the process's block cache.
const BlockCacheSize = 256 << 20

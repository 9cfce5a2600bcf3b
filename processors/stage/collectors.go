package stage

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/processors/state"
)

// StoreCollector exports the local stores' Pebble statistics, read at
// scrape time from the stores open then (a store closed or moved away by
// a rebalance takes its series with it):
//
//	rtm_store_disk_usage_bytes{stage,table,partition}   files of the store on disk
//	rtm_store_compactions_total{stage,table,partition}  compactions since the store was opened
//	rtm_store_memtable_bytes{stage,table,partition}     memtables held in memory (beside the block cache)
//	rtm_store_block_cache_hits_total, _misses_total      the process's one block cache
//	rtm_store_block_cache_bytes                          (shared by every store, hence no labels)
//
// Hit ratio: rate(hits) / (rate(hits) + rate(misses)).
type StoreCollector struct {
	mu     sync.Mutex
	stages map[string]*state.Registry
}

// NewStoreCollector returns a collector that tracks no stage yet.
func NewStoreCollector() *StoreCollector {
	return &StoreCollector{stages: map[string]*state.Registry{}}
}

// Track makes the collector read the stores of stage's registry, in place
// of those of the stage's previous build.
func (c *StoreCollector) Track(stage string, reg *state.Registry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stages[stage] = reg
}

var (
	storeDiskDesc = prometheus.NewDesc("rtm_store_disk_usage_bytes",
		"Bytes on disk of a local Pebble store (one per stage, table and partition).", []string{"stage", "table", "partition"}, nil)
	storeCompactionsDesc = prometheus.NewDesc("rtm_store_compactions_total",
		"Pebble compactions of a local store since it was opened.", []string{"stage", "table", "partition"}, nil)
	storeMemtableDesc = prometheus.NewDesc("rtm_store_memtable_bytes",
		"Bytes of memtables a local Pebble store holds: the one being written, those waiting to be flushed and the flushed one kept for reuse. They are memory beside the block cache.", []string{"stage", "table", "partition"}, nil)
	cacheHitsDesc = prometheus.NewDesc("rtm_store_block_cache_hits_total",
		"Block reads served by the process's Pebble block cache (shared by every store).", nil, nil)
	cacheMissesDesc = prometheus.NewDesc("rtm_store_block_cache_misses_total",
		"Block reads the process's Pebble block cache missed (read from disk).", nil, nil)
	cacheBytesDesc = prometheus.NewDesc("rtm_store_block_cache_bytes",
		"Bytes held in the process's Pebble block cache.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{storeDiskDesc, storeCompactionsDesc, storeMemtableDesc, cacheHitsDesc, cacheMissesDesc, cacheBytesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	stages := make(map[string]*state.Registry, len(c.stages))
	for k, v := range c.stages {
		stages[k] = v
	}
	c.mu.Unlock()
	for stage, reg := range stages {
		for _, s := range reg.Stores() {
			m := s.PebbleMetrics()
			if m == nil {
				continue
			}
			labels := []string{stage, s.Topic(), strconv.Itoa(int(s.Partition()))}
			ch <- prometheus.MustNewConstMetric(storeDiskDesc, prometheus.GaugeValue, float64(m.DiskSpaceUsage()), labels...)
			ch <- prometheus.MustNewConstMetric(storeCompactionsDesc, prometheus.CounterValue, float64(m.Compact.Count), labels...)
			ch <- prometheus.MustNewConstMetric(storeMemtableDesc, prometheus.GaugeValue, float64(m.MemTable.Size+m.MemTable.ZombieSize), labels...)
		}
	}
	cm := BlockCacheMetrics()
	ch <- prometheus.MustNewConstMetric(cacheHitsDesc, prometheus.CounterValue, float64(cm.Hits))
	ch <- prometheus.MustNewConstMetric(cacheMissesDesc, prometheus.CounterValue, float64(cm.Misses))
	ch <- prometheus.MustNewConstMetric(cacheBytesDesc, prometheus.GaugeValue, float64(cm.Size))
}

// RulesCollector exports rtm_rules_version_info{table,version} = 1 for
// each rule table in force, read from Rules at scrape time. Only the
// versions in force have a series: a table's previous version vanishes
// when a new one is published, so the series stay as many as the tables.
type RulesCollector struct{ Rules Rules }

var rulesVersionDesc = prometheus.NewDesc("rtm_rules_version_info",
	"1 for the version of each rule table in force in this process (older versions have no series).", []string{"table", "version"}, nil)

// Describe implements prometheus.Collector.
func (c RulesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- rulesVersionDesc }

// Collect implements prometheus.Collector.
func (c RulesCollector) Collect(ch chan<- prometheus.Metric) {
	set := c.Rules.Current()
	if set == nil {
		return
	}
	for table, version := range set.Versions() {
		ch <- prometheus.MustNewConstMetric(rulesVersionDesc, prometheus.GaugeValue, 1, table, version)
	}
}

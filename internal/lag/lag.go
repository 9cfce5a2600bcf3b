// Package lag measures the consumer lag of the groups a process runs and
// exports it as rtm_consumer_lag_records{group,topic,partition}: for each
// partition a group consumes, the partition's high watermark minus the
// group's committed offset. Lag is what an SRE watches first — a stage
// that keeps up has a lag near zero; a growing one is falling behind or
// stuck — and neither Goka nor sarama exports it.
//
// A Poller asks the cluster every interval (one DescribeGroups, one
// OffsetFetch and two ListOffsets per round for all the process's groups,
// whatever the partition count), keeps the last answer, and Prometheus
// reads that at scrape time: scrapes cost the cluster nothing. Every
// instance of a stage reports the whole group's lag; aggregate with max by
// (group, topic, partition), not sum.
//
// Topics written in Kafka transactions (the cdc.* topics) end each
// transaction with a commit marker, which takes an offset but is never
// delivered, so consumers do not commit past it: expect a caught-up group
// to show a lag of 1 on a cdc partition whose last write was a transaction
// (reasoned from the protocol, not measured here; alert on lag growing,
// not on lag above 0).
package lag

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultInterval is how often a Poller asks the cluster when its
// configuration does not say.
const DefaultInterval = 15 * time.Second

// Poller polls the lag of a fixed set of consumer groups.
type Poller struct {
	adm      *kadm.Client
	groups   []string
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	last map[string][]point // by group: its last successful answer
	at   time.Time          // when last was read
}

type point struct {
	topic     string
	partition int32
	lag       int64
	// end and committed are the offsets lag is the difference of: two
	// polls' sums give the rates a group is written and read at.
	end, committed int64
}

// New returns a Poller of groups over cl (which it does not close).
// interval <= 0 takes DefaultInterval.
func New(cl *kgo.Client, groups []string, interval time.Duration, log *slog.Logger) *Poller {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A copy: kadm's Lag reuses the slice it is given, rewriting it in
	// map order, and the caller's slice is often the stage list it runs.
	return &Poller{adm: kadm.NewClient(cl), groups: slices.Clone(groups), interval: interval, timeout: min(interval, 10*time.Second),
		log: log, last: map[string][]point{}}
}

// Run polls at once and then every interval until ctx is done.
func (p *Poller) Run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, p.timeout)
		if err := p.Poll(pctx); err != nil && ctx.Err() == nil {
			p.log.Warn("polling consumer lag", "groups", p.groups, "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll asks the cluster once and replaces the exported lag. A group the
// cluster could not describe loses its series until a poll succeeds: an
// old number would look like a healthy, steady lag. Partitions whose
// commit or end offset could not be read are left out of that group's
// answer for the same reason.
func (p *Poller) Poll(ctx context.Context) error {
	lags, err := p.adm.Lag(ctx, p.groups...)
	if err != nil {
		p.mu.Lock()
		clear(p.last)
		p.mu.Unlock()
		return err
	}
	next := make(map[string][]point, len(p.groups))
	for _, g := range p.groups {
		l, ok := lags[g]
		if !ok || l.Error() != nil {
			if ok {
				p.log.Warn("polling consumer lag", "group", g, "err", l.Error())
			}
			continue
		}
		var pts []point
		for _, ml := range l.Lag.Sorted() {
			if ml.Err != nil || ml.Lag < 0 {
				continue
			}
			pts = append(pts, point{topic: ml.Topic, partition: ml.Partition, lag: ml.Lag, end: ml.End.Offset, committed: ml.Commit.At})
		}
		next[g] = pts
	}
	p.mu.Lock()
	p.last, p.at = next, time.Now()
	p.mu.Unlock()
	return nil
}

// Total is one group's lag and offsets summed over the partitions it
// consumes, as of a poll.
type Total struct {
	Lag, End, Committed int64
	Partitions          int
}

// Totals returns each group's totals as of the last poll, and when that
// poll was answered (zero before the first). A group missing from the map
// could not be read. The difference of two polls' End (or Committed)
// sums over the time between them is the rate the group's input is
// written (or read) at: `rtm console` shows both without a metrics
// server.
func (p *Poller) Totals() (time.Time, map[string]Total) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Total, len(p.last))
	for g, pts := range p.last {
		var t Total
		for _, pt := range pts {
			t.Lag += pt.lag
			t.End += pt.end
			t.Committed += pt.committed
			t.Partitions++
		}
		out[g] = t
	}
	return p.at, out
}

var lagDesc = prometheus.NewDesc("rtm_consumer_lag_records",
	"Records of a partition not yet committed by a consumer group (high watermark minus committed offset), as of the last poll.",
	[]string{"group", "topic", "partition"}, nil)

// Describe implements prometheus.Collector.
func (p *Poller) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

// Collect implements prometheus.Collector.
func (p *Poller) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for g, pts := range p.last {
		for _, pt := range pts {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(pt.lag), g, pt.topic, strconv.Itoa(int(pt.partition)))
		}
	}
}

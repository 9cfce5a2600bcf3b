package simulate

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/topics"
)

// partitionsOf returns a topic's partition count, or an error wrapping
// kerr.UnknownTopicOrPartition when it does not exist.
func partitionsOf(ctx context.Context, adm *kadm.Client, topic string) (int32, error) {
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describing %s: %w", topic, err)
	}
	d, ok := td[topic]
	if !ok {
		return 0, fmt.Errorf("describing %s: %w", topic, kerr.UnknownTopicOrPartition)
	}
	if d.Err != nil {
		return 0, fmt.Errorf("describing %s: %w", topic, d.Err)
	}
	return int32(len(d.Partitions)), nil
}

// span is the part of each partition of a topic to read: [start, end).
type span struct{ start, end map[int32]int64 }

// spanOf lists a topic's last stable offsets (what a read_committed
// reader can reach now) and its start offsets from starts: the partitions
// with something in between, and what to read of them.
func spanOf(ctx context.Context, adm *kadm.Client, topic string, starts func() (kadm.ListedOffsets, error)) (span, error) {
	sp := span{start: map[int32]int64{}, end: map[int32]int64{}}
	ends, err := kafka.ListOffsets(ctx, func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) })
	if err != nil {
		return sp, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	first, err := kafka.ListOffsets(ctx, starts)
	if err != nil {
		return sp, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		s, ok := first.Lookup(topic, o.Partition)
		// An offset after a time is -1 (or the end) when no record is as
		// recent: nothing to read there.
		if ok && s.Offset >= 0 && s.Offset < o.Offset {
			sp.start[o.Partition], sp.end[o.Partition] = s.Offset, o.Offset
		}
	})
	return sp, nil
}

// read reads every partition of sp with a client of its own, read
// committed, calling fn with each partition's new data records as they
// are fetched (in offset order within a partition) and whether the
// partition has now reached its end offset, until every partition has.
func read(ctx context.Context, base *kgo.Client, topic string, sp span, fn func(p int32, recs []*kgo.Record, end bool)) error {
	if len(sp.end) == 0 {
		return nil
	}
	assign := map[int32]kgo.Offset{}
	pos := map[int32]int64{}
	for p, s := range sp.start {
		assign[p] = kgo.NewOffset().At(s)
		pos[p] = s
	}
	cl, err := kgo.NewClient(append(kafka.ReaderOpts(base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records (transaction markers) are kept so a partition
		// whose last records are markers is seen to reach its end.
		kgo.KeepControlRecords(),
		kgo.FetchMaxPartitionBytes(8<<20))...)
	if err != nil {
		return fmt.Errorf("creating a reader of %s: %w", topic, err)
	}
	defer cl.Close()
	left := len(sp.end)
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = cmp.Or(ferr, fmt.Errorf("reading %s/%d: %w", t, p, err)) })
		if ferr != nil {
			return ferr
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			end := sp.end[fp.Partition]
			if pos[fp.Partition] >= end {
				return
			}
			data := fp.Records[:0:0]
			for _, r := range fp.Records {
				if r.Offset >= end {
					// Offsets below end that compaction removed are
					// never fetched: a record at or past end means
					// the partition is done.
					pos[fp.Partition] = end
					break
				}
				if !r.Attrs.IsControl() {
					data = append(data, r)
				}
				pos[fp.Partition] = r.Offset + 1
			}
			reached := pos[fp.Partition] >= end
			if len(data) > 0 || reached {
				fn(fp.Partition, data, reached)
			}
			if reached {
				left--
			}
		})
	}
	return nil
}

// readTable reads a compacted table topic from its start to its end now,
// calling put for every record (a later record of a key overrides an
// earlier one; nil values are deletions).
func readTable(ctx context.Context, base *kgo.Client, adm *kadm.Client, topic string, put func(p int32, key string, value []byte)) error {
	if _, err := partitionsOf(ctx, adm, topic); err != nil {
		return err
	}
	sp, err := spanOf(ctx, adm, topic, func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	if err != nil {
		return err
	}
	return read(ctx, base, topic, sp, func(p int32, recs []*kgo.Record, _ bool) {
		for _, r := range recs {
			put(p, string(r.Key), r.Value)
		}
	})
}

// readEvents reads the events topic from the first record at or after
// from to its end offsets as of the call, and hands the records to fn in
// one deterministic order: merged across partitions by record time, then
// partition, then offset (each partition's records are in offset order).
// It returns when the end offsets were listed.
func readEvents(ctx context.Context, base *kgo.Client, adm *kadm.Client, from time.Time, fn func(key []byte, p int32, value []byte)) (time.Time, error) {
	if _, err := partitionsOf(ctx, adm, topics.Events); err != nil {
		return time.Time{}, err
	}
	to := time.Now()
	sp, err := spanOf(ctx, adm, topics.Events, func() (kadm.ListedOffsets, error) {
		return adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topics.Events)
	})
	if err != nil {
		return to, err
	}
	m := newMerge(sp)
	err = read(ctx, base, topics.Events, sp, func(p int32, recs []*kgo.Record, end bool) {
		m.add(p, recs, end)
		m.drain(fn)
	})
	return to, err
}

// merge orders records of several partitions: a record is handed on only
// when every partition still being read has a record buffered, so the
// earliest of them is known.
type merge struct {
	buf map[int32][]*kgo.Record // every partition to read, with its records not yet handed on
	end map[int32]bool          // partitions read to their end
}

func newMerge(sp span) *merge {
	m := &merge{buf: map[int32][]*kgo.Record{}, end: map[int32]bool{}}
	for p := range sp.end {
		m.buf[p] = nil
	}
	return m
}

func (m *merge) add(p int32, recs []*kgo.Record, end bool) {
	m.buf[p] = append(m.buf[p], recs...)
	m.end[p] = m.end[p] || end
}

// drain hands on records while the earliest is known: a partition with
// nothing buffered that has not reached its end may yet have it.
func (m *merge) drain(fn func(key []byte, p int32, value []byte)) {
	for {
		var best *kgo.Record
		bp := int32(-1)
		for p, b := range m.buf {
			if len(b) == 0 {
				if m.end[p] {
					continue
				}
				return
			}
			r := b[0]
			if best == nil || r.Timestamp.Before(best.Timestamp) || (r.Timestamp.Equal(best.Timestamp) && p < bp) {
				best, bp = r, p
			}
		}
		if best == nil {
			return
		}
		m.buf[bp] = m.buf[bp][1:]
		fn(best.Key, bp, best.Value)
	}
}

package rules

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/kafka"
)

// stableEnds returns, per partition, the log start offset and the last
// stable offset of a topic: the range a read_committed consumer can read.
// Starting positions at the log start matters for a delete-policy topic
// whose records have all expired: there is nothing left to read.
func stableEnds(ctx context.Context, cl *kgo.Client, topic string) (starts, ends map[int32]int64, err error) {
	adm := kadm.NewClient(cl)
	listed, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing end offsets of %s: %w", topic, err)
	}
	first, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = first.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	starts, ends = map[int32]int64{}, map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	first.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	if len(ends) == 0 {
		return nil, nil, fmt.Errorf("listing end offsets of %s: topic has no partitions (does it exist?)", topic)
	}
	return starts, ends, nil
}

// consumerOpts reads every partition of topic from the start, committed
// records only, keeping control records so that the caller can tell when
// a partition's position has passed its last stable offset.
func consumerOpts(topic string, ends map[int32]int64) []kgo.Opt {
	parts := map[int32]kgo.Offset{}
	for p := range ends {
		parts[p] = kgo.NewOffset().AtStart()
	}
	return []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}
}

// readAll reads a topic from the start to its current stable end and calls
// fn for each data record in partition order.
func readAll(ctx context.Context, base *kgo.Client, topic string, fn func(*kgo.Record) error) error {
	pos, ends, err := stableEnds(ctx, base, topic)
	if err != nil {
		return err
	}
	done := func() bool {
		for p, end := range ends {
			if pos[p] < end {
				return false
			}
		}
		return true
	}
	if done() {
		return nil
	}
	cl, err := kgo.NewClient(append(kafka.ReaderOpts(base), consumerOpts(topic, ends)...)...)
	if err != nil {
		return fmt.Errorf("creating reader for %s: %w", topic, err)
	}
	defer cl.Close()
	for !done() {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("reading %s/%d: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		var cbErr error
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if cbErr != nil || r.Attrs.IsControl() || r.Offset >= ends[r.Partition] {
				return
			}
			cbErr = fn(r)
		})
		if cbErr != nil {
			return cbErr
		}
	}
	return nil
}

package mssql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// Checkpoint is the value on cdc.checkpoints (compacted, key = table name):
// every change of Table up to Version is on cdc.<table>. It is written in
// the same transaction as those changes.
type Checkpoint struct {
	Table   string `json:"table"`
	Version int64  `json:"version"`
}

// ReadCheckpoints returns the last committed checkpoint per table. It reads
// cdc.checkpoints with a read_committed consumer up to the last stable
// offset, so a checkpoint from an aborted (or still open) transaction is
// never used. Call it after the bridge's transactional producer has fenced
// earlier instances: that aborts their open transactions, and the last
// stable offset then reaches the end of the log.
func ReadCheckpoints(ctx context.Context, k kafka.Config, topic string) (map[string]int64, error) {
	adm, err := k.NewClient()
	if err != nil {
		return nil, fmt.Errorf("checkpoint admin client: %w", err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing stable offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("listing stable offsets of %s: %w", topic, err)
	}
	starts, err := kadm.NewClient(adm).ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	// remaining[partition] is the last offset still to be read.
	remaining := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		start, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset > start.Offset {
			remaining[o.Partition] = o.Offset - 1
			offsets[o.Partition] = kgo.NewOffset().At(start.Offset)
		}
	})
	out := map[string]int64{}
	if len(remaining) == 0 {
		return out, nil
	}
	cl, err := k.NewClient(
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records (commit and abort markers) are kept so that
		// reading can stop at the last stable offset even when the log ends
		// with a marker, as every transactional log does.
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		return nil, fmt.Errorf("checkpoint consumer: %w", err)
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading checkpoints: %w", err)
		}
		var errs []error
		fs.EachError(func(t string, p int32, err error) {
			errs = append(errs, fmt.Errorf("fetching %s/%d: %w", t, p, err))
		})
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			if last, ok := remaining[r.Partition]; ok && r.Offset >= last {
				delete(remaining, r.Partition)
			}
			if r.Attrs.IsControl() || r.Value == nil {
				return
			}
			var c Checkpoint
			if err := json.Unmarshal(r.Value, &c); err != nil || c.Table == "" || c.Table != string(r.Key) {
				return // not a checkpoint; ignore rather than stop the bridge
			}
			out[c.Table] = c.Version
		})
	}
	return out, nil
}

// checkpointRecord is the record that commits a table's progress.
func checkpointRecord(table string, version int64) *kgo.Record {
	v, _ := json.Marshal(Checkpoint{Table: table, Version: version}) // cannot fail
	return &kgo.Record{Topic: topics.CDCCheckpoints, Key: []byte(table), Value: v}
}

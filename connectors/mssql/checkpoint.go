package mssql

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// Checkpoint is the value on cdc.checkpoints (compacted, key = table name),
// written in the same transaction as the rows it covers.
//
// Outside a resync, every change of Table up to Version on the database
// identified by Database is on cdc.<table>. Database is the recovery fork
// GUID: a restore gives the database a new one, so a checkpoint from before
// the restore is recognised even when the restored database's versions
// have grown past it (Microsoft's case: restored to 70, written up to 130,
// checkpoint 100 — versions 71..100 now mean other changes).
//
// Epoch counts the table's resyncs. While Resync is set, a resync of epoch
// Epoch is under way: a restarted bridge resumes it from its last committed
// chunk, and key-set records (cdc.keys) carry the epoch that last saw them,
// so keys seen by an earlier epoch are never taken for keys seen by this
// one.
type Checkpoint struct {
	Table    string  `json:"table"`
	Version  int64   `json:"version"`
	Database string  `json:"database,omitempty"`
	Epoch    int64   `json:"epoch,omitempty"`
	Resync   *Resync `json:"resync,omitempty"`
}

// Resync is the progress of a resync in a Checkpoint.
type Resync struct {
	// Reason is why it started, for the logs.
	Reason string `json:"reason"`
	// Base is the current version when the epoch started. Every chunk is
	// read at Base or later, so once the resync ends the bridge continues
	// with the changes after Base: a row changed while the chunks were read
	// is sent again, never missed.
	Base int64 `json:"base"`
	// After is the primary key of the last row committed (nil: none yet).
	After map[string]any `json:"after,omitempty"`
	// Seen is the highest version a committed chunk of this epoch was
	// stamped with (chunks are stamped with the version they were read
	// at, which passes Base while the database takes writes). Consumers
	// have seen versions up to it: if the database is restored during the
	// resync, the new epoch waits until the database's version passes it.
	Seen int64 `json:"seen,omitempty"`
	// Sweep is set once every row has been copied: the bridge is sending
	// deletes for the keys of cdc.keys this epoch did not see.
	Sweep bool `json:"sweep,omitempty"`
	// SweepFrom is, per cdc.keys partition, the offset the sweep continues
	// from.
	SweepFrom map[int32]int64 `json:"sweep_from,omitempty"`
}

// maxDatabaseID bounds the identity text; a GUID is 36 characters.
const maxDatabaseID = 64

// decodeCheckpoint parses a cdc.checkpoints record. Anything it cannot
// vouch for is an error: the bridge then treats the table as never
// checkpointed and resynchronises it, which loses nothing.
func decodeCheckpoint(key, value []byte) (Checkpoint, error) {
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber() // resume keys keep their exact digits
	if err := dec.Decode(&c); err != nil {
		return Checkpoint{}, fmt.Errorf("not a checkpoint: %w", err)
	}
	if dec.More() {
		return Checkpoint{}, errors.New("not a checkpoint: trailing data")
	}
	var errs []error
	if c.Table == "" || c.Table != string(key) {
		errs = append(errs, fmt.Errorf("table %q does not match the record key %q", c.Table, key))
	}
	if c.Version < NoCheckpoint {
		errs = append(errs, fmt.Errorf("version %d is negative", c.Version))
	}
	if len(c.Database) > maxDatabaseID {
		errs = append(errs, fmt.Errorf("database identity of %d bytes", len(c.Database)))
	}
	if c.Epoch < 0 {
		errs = append(errs, fmt.Errorf("epoch %d is negative", c.Epoch))
	}
	if r := c.Resync; r != nil {
		if c.Epoch == 0 {
			errs = append(errs, errors.New("a resync without an epoch"))
		}
		if r.Base < 0 {
			errs = append(errs, fmt.Errorf("resync base version %d is negative", r.Base))
		}
		if err := scalarKey(r.After); err != nil {
			errs = append(errs, fmt.Errorf("resync resume key: %w", err))
		}
		for p, o := range r.SweepFrom {
			if p < 0 || o < 0 {
				errs = append(errs, fmt.Errorf("sweep position %d@%d is negative", p, o))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint of %q: %w", key, err)
	}
	return c, nil
}

// scalarKey checks that a key read back from Kafka holds only scalar
// column values (text or numbers), as primary keys do.
func scalarKey(k map[string]any) error {
	for col, v := range k {
		if col == "" {
			return errors.New("empty column name")
		}
		switch v.(type) {
		case string, json.Number, bool:
		default:
			return fmt.Errorf("column %s has a %T value", col, v)
		}
	}
	return nil
}

// ReadCheckpoints returns the last committed checkpoint version per table
// (see ReadCheckpointRecords).
func ReadCheckpoints(ctx context.Context, k kafka.Config, topic string) (map[string]int64, error) {
	cps, err := ReadCheckpointRecords(ctx, k, topic, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(cps))
	for t, c := range cps {
		out[t] = c.Version
	}
	return out, nil
}

// ReadCheckpointRecords returns the last committed checkpoint per table. It
// reads cdc.checkpoints with a read_committed consumer up to the last
// stable offset, so a checkpoint from an aborted (or still open)
// transaction is never used. Call it after the bridge's transactional
// producer has fenced earlier instances: that aborts their open
// transactions, and the last stable offset then reaches the end of the
// log. A record that is not a valid checkpoint is reported to bad (when not
// nil) and forgets the table's earlier checkpoint, so the table is
// resynchronised rather than resumed from a stale position.
func ReadCheckpointRecords(ctx context.Context, k kafka.Config, topic string, bad func(key []byte, err error)) (map[string]Checkpoint, error) {
	out := map[string]Checkpoint{}
	err := scanLog(ctx, k, topic, nil, func(r *kgo.Record) bool {
		if r.Value == nil {
			delete(out, string(r.Key))
			return false
		}
		c, err := decodeCheckpoint(r.Key, r.Value)
		if err != nil {
			delete(out, string(r.Key))
			if bad != nil {
				bad(r.Key, err)
			}
			return false
		}
		out[c.Table] = c
		return false
	}, nil)
	return out, err
}

// scanLog reads every partition of topic with a read_committed consumer,
// from the offsets in from (default: the start) up to the last stable
// offsets as they are when it starts, calling fn for each data record in
// offset order per partition. When fn returns true, scanning stops; next
// (when not nil) then receives, per partition, the offset to continue from.
func scanLog(ctx context.Context, k kafka.Config, topic string, from map[int32]int64, fn func(*kgo.Record) bool, next map[int32]int64) error {
	adm, err := k.NewClient()
	if err != nil {
		return fmt.Errorf("admin client for %s: %w", topic, err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("listing stable offsets of %s: %w", topic, err)
	}
	starts, err := kadm.NewClient(adm).ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("listing start offsets of %s: %w", topic, err)
	}
	// remaining[partition] is the last offset still to be read.
	remaining := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		start, _ := starts.Lookup(o.Topic, o.Partition)
		at := max(start.Offset, from[o.Partition])
		if next != nil {
			next[o.Partition] = max(at, o.Offset)
		}
		if o.Offset > at {
			remaining[o.Partition] = o.Offset - 1
			offsets[o.Partition] = kgo.NewOffset().At(at)
		}
	})
	if len(remaining) == 0 {
		return nil
	}
	cl, err := k.NewClient(
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records (commit and abort markers) are kept so that
		// reading can stop at the last stable offset even when the log ends
		// with a marker, as every transactional log does.
		kgo.KeepControlRecords(),
		// Bounded fetches: a sweep holds one fetch, not the key set.
		kgo.FetchMaxBytes(4<<20), kgo.FetchMaxPartitionBytes(1<<20),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		return fmt.Errorf("consumer of %s: %w", topic, err)
	}
	defer cl.Close()
	// pos[partition] is the offset of the next record not yet handed to fn.
	pos := map[int32]int64{}
	for p, o := range offsets {
		pos[p] = o.EpochOffset().Offset
	}
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		var errs []error
		fs.EachError(func(t string, p int32, err error) {
			errs = append(errs, fmt.Errorf("fetching %s/%d: %w", t, p, err))
		})
		if err := errors.Join(errs...); err != nil {
			return err
		}
		stopped := false
		fs.EachRecord(func(r *kgo.Record) {
			last, ok := remaining[r.Partition]
			if stopped || !ok || r.Offset > last || r.Offset < pos[r.Partition] {
				return
			}
			pos[r.Partition] = r.Offset + 1
			if r.Offset >= last {
				delete(remaining, r.Partition)
			}
			if !r.Attrs.IsControl() && fn(r) {
				stopped = true
			}
		})
		if stopped {
			if next != nil {
				for p, o := range pos {
					next[p] = o
				}
			}
			return nil
		}
	}
	return nil
}

// checkpointRecord is the record that commits a table's progress.
func checkpointRecord(c Checkpoint) *kgo.Record {
	v, _ := json.Marshal(c) // cannot fail: scalar fields and scalar keys
	return &kgo.Record{Topic: topics.CDCCheckpoints, Key: []byte(c.Table), Value: v}
}

// KeyRecord is the value on cdc.keys: the primary key Key of Table is live
// on cdc.<table>, last seen by resync epoch Epoch. A delete writes a
// tombstone instead. The record key is keySetKey(table, key), so
// compaction keeps one record per row.
type KeyRecord struct {
	Table string         `json:"table"`
	Key   map[string]any `json:"key"`
	Epoch int64          `json:"epoch"`
}

// keySetKey is the cdc.keys record key of a row.
func keySetKey(t TableConfig, key map[string]any) []byte {
	return []byte(t.Name + "\x00" + encodeKey(t.PrimaryKey, key))
}

// keySetRecord records a change in the key set: live for inserts and
// updates, a tombstone for deletes.
func keySetRecord(t TableConfig, c Change, epoch int64) *kgo.Record {
	r := &kgo.Record{Topic: topics.CDCKeys, Key: keySetKey(t, c.Key)}
	if c.Op != topics.OpDelete {
		r.Value, _ = json.Marshal(KeyRecord{Table: t.Name, Key: c.Key, Epoch: epoch}) // cannot fail: scalar keys
	}
	return r
}

// decodeKeyRecord parses a live cdc.keys record of table t: the key must
// hold exactly t's primary-key columns and match the record key.
func decodeKeyRecord(t TableConfig, key, value []byte) (KeyRecord, error) {
	var kr KeyRecord
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&kr); err != nil {
		return KeyRecord{}, fmt.Errorf("not a key record: %w", err)
	}
	if kr.Table != t.Name || kr.Epoch < 0 || len(kr.Key) != len(t.PrimaryKey) {
		return KeyRecord{}, fmt.Errorf("key record of %q: table %q, epoch %d, %d key columns", key, kr.Table, kr.Epoch, len(kr.Key))
	}
	if err := scalarKey(kr.Key); err != nil {
		return KeyRecord{}, fmt.Errorf("key record of %q: %w", key, err)
	}
	for _, c := range t.PrimaryKey {
		if _, ok := kr.Key[c]; !ok {
			return KeyRecord{}, fmt.Errorf("key record of %q: no column %s", key, c)
		}
	}
	if !bytes.Equal(keySetKey(t, kr.Key), key) {
		return KeyRecord{}, fmt.Errorf("key record of %q does not match its key", key)
	}
	return kr, nil
}

// keySetTable returns the table a cdc.keys record key belongs to.
func keySetTable(key []byte) string {
	name, _, _ := strings.Cut(string(key), "\x00")
	return name
}

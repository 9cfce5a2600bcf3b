package mssql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// Config configures the bridge. Zero values take the documented defaults
// (Defaults fills them in one place).
type Config struct {
	// Kafka is the cluster (bootstrap addresses, TLS, SASL).
	Kafka kafka.Config
	// Tables to bridge; default DefaultTables().
	Tables []TableConfig
	// TransactionalID identifies the bridge to Kafka; a restarted bridge must
	// reuse it so it fences its predecessor. Default "rtm-cdc". Run one bridge
	// per ID.
	TransactionalID string
	// PollInterval is the wait between polls once a table has no more
	// changes. Default 1s.
	PollInterval time.Duration
	// MaxRows caps the rows of one table in one poll and one Kafka
	// transaction (a version is never split, so a transaction may exceed it
	// by the rows sharing the last version). Default 5000.
	MaxRows int
	// ResyncChunkRows caps the rows of one resync chunk, which is one Kafka
	// transaction, and of one sweep transaction. Default MaxRows.
	ResyncChunkRows int
	// Groups name tables that one SQL transaction can span (a checkout
	// writes orders and cart_items): each group is read in one snapshot and
	// its changes are committed in one Kafka transaction, so a transaction
	// spanning its tables arrives whole. Every table is in at most one group.
	Groups [][]string
	// MinBackoff and MaxBackoff bound the exponential backoff after a
	// database or Kafka error. Defaults 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// TransactionTimeout is how long Kafka keeps an abandoned transaction
	// open (until a restarted bridge fences it sooner). Default 30s.
	TransactionTimeout time.Duration
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{Tables: DefaultTables(), TransactionalID: "rtm-cdc", PollInterval: time.Second,
		MaxRows: 5000, MinBackoff: 100 * time.Millisecond, MaxBackoff: 30 * time.Second,
		TransactionTimeout: 30 * time.Second}
}

func (c Config) withDefaults() Config {
	d := Defaults()
	if c.Tables == nil {
		c.Tables = d.Tables
	}
	if c.TransactionalID == "" {
		c.TransactionalID = d.TransactionalID
	}
	if c.PollInterval <= 0 {
		c.PollInterval = d.PollInterval
	}
	if c.MaxRows <= 0 {
		c.MaxRows = d.MaxRows
	}
	if c.ResyncChunkRows <= 0 {
		c.ResyncChunkRows = c.MaxRows
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = d.MinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = d.MaxBackoff
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = d.TransactionTimeout
	}
	return c
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if len(c.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("no Kafka brokers configured"))
	}
	if c.MinBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("min backoff %v exceeds max backoff %v", c.MinBackoff, c.MaxBackoff))
	}
	errs = append(errs, ValidateTables(c.Tables))
	configured := map[string]bool{}
	for _, t := range c.Tables {
		configured[t.Name] = true
	}
	grouped := map[string]bool{}
	for i, g := range c.Groups {
		if len(g) == 0 {
			errs = append(errs, fmt.Errorf("group %d is empty", i+1))
		}
		for _, name := range g {
			switch {
			case !configured[name]:
				errs = append(errs, fmt.Errorf("group %d names table %q, which is not bridged", i+1, name))
			case grouped[name]:
				errs = append(errs, fmt.Errorf("table %s is in more than one group", name))
			}
			grouped[name] = true
		}
	}
	return errors.Join(errs...)
}

// units are what the bridge polls: each group, in the order of its first
// table, and every other table on its own.
func (c Config) units() [][]TableConfig {
	byName := map[string]TableConfig{}
	for _, t := range c.Tables {
		byName[t.Name] = t
	}
	groupOf := map[string]int{}
	for i, g := range c.Groups {
		for _, name := range g {
			groupOf[name] = i
		}
	}
	var out [][]TableConfig
	done := map[int]bool{}
	for _, t := range c.Tables {
		g, ok := groupOf[t.Name]
		if !ok {
			out = append(out, []TableConfig{t})
			continue
		}
		if done[g] {
			continue
		}
		done[g] = true
		var u []TableConfig
		for _, name := range c.Groups[g] {
			u = append(u, byName[name])
		}
		out = append(out, u)
	}
	return out
}

// Bridge copies Change Tracking changes into Kafka exactly once.
type Bridge struct {
	cfg Config
	src Source
	log *slog.Logger
	m   *metrics
	now func() time.Time

	// afterProduce, when set (tests), runs after a transaction's records
	// are produced and flushed and before it is committed, with the
	// transaction's label (the table names joined by "+"). An error returned
	// from it makes Run return at once without aborting, as a crash would.
	afterProduce func(label string) error
	// committed, when set (tests), runs after each committed transaction.
	committed func(txInfo)

	mu          sync.Mutex
	checkpoints map[string]Checkpoint
	// waiting holds the tables whose restored database has not yet passed
	// their checkpoint (logged once).
	waiting map[string]bool
}

// txInfo describes one committed transaction, for tests.
type txInfo struct {
	// Label is the table names joined by "+".
	Label string
	// Kind is "changes", "resync-start", "resync-chunk" or "sweep".
	Kind string
	// Rows counts the cdc.<table> records in it.
	Rows int
}

// New validates cfg and returns a bridge reading from src. Metrics are
// registered on reg when it is not nil.
func New(cfg Config, src Source, log *slog.Logger, reg prometheus.Registerer) (*Bridge, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cdc bridge config: %w", err)
	}
	if src == nil {
		return nil, errors.New("cdc bridge config: no source")
	}
	if log == nil {
		log = slog.Default()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Bridge{cfg: cfg, src: src, log: log.With("component", "cdc"), m: m, now: time.Now,
		checkpoints: map[string]Checkpoint{}, waiting: map[string]bool{}}, nil
}

// Checkpoints returns the version committed so far per table: every change
// up to it is on Kafka. It is NoCheckpoint while the table's resync (its
// initial load included) is under way, as no version is complete then.
func (b *Bridge) Checkpoints() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64, len(b.checkpoints))
	for k, c := range b.checkpoints {
		out[k] = c.Version
		if c.Resync != nil {
			out[k] = NoCheckpoint
		}
	}
	return out
}

func (b *Bridge) checkpoint(table string) Checkpoint {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.checkpoints[table]
}

func (b *Bridge) setCheckpoints(cs ...Checkpoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		b.checkpoints[c.Table] = c
	}
}

// errCrash marks an error from the afterProduce hook.
type errCrash struct{ err error }

func (e errCrash) Error() string { return e.err.Error() }
func (e errCrash) Unwrap() error { return e.err }

// Run bridges until ctx is done (then returns nil) or a fatal Kafka error
// (the producer was fenced by another bridge with the same transactional
// ID, or the transaction state is unrecoverable). Database and transient
// Kafka errors are retried with exponential backoff.
func (b *Bridge) Run(ctx context.Context) error {
	cl, err := b.cfg.Kafka.NewClient(
		kgo.TransactionalID(b.cfg.TransactionalID),
		kgo.TransactionTimeout(b.cfg.TransactionTimeout),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Kafka's default murmur2 partitioner, as topics.Partition computes.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchMaxBytes(4<<20),
	)
	if err != nil {
		return fmt.Errorf("cdc producer: %w", err)
	}
	defer cl.Close()

	// Fence earlier bridges with our transactional ID first: that aborts a
	// transaction a crashed predecessor left open, so the checkpoint topic's
	// last stable offset is its end and the checkpoints read are final.
	if err := b.retry(ctx, "", "kafka", func() error {
		_, _, err := cl.ProducerID(ctx)
		return err
	}); err != nil {
		return ignoreCancel(ctx, err)
	}
	var cps map[string]Checkpoint
	if err := b.retry(ctx, "", "kafka", func() (err error) {
		cps, err = ReadCheckpointRecords(ctx, b.cfg.Kafka, topics.CDCCheckpoints, func(key []byte, err error) {
			b.log.Warn("ignoring a malformed checkpoint: the table will be resynchronised", "key", string(key), "err", err)
		})
		return err
	}); err != nil {
		return ignoreCancel(ctx, err)
	}
	for _, t := range b.cfg.Tables {
		c, ok := cps[t.Name]
		if !ok {
			c = Checkpoint{Table: t.Name, Version: NoCheckpoint}
		}
		b.setCheckpoints(c)
	}
	b.log.Info("cdc bridge started", "transactional_id", b.cfg.TransactionalID, "checkpoints", b.Checkpoints())

	units := b.cfg.units()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			b.log.Info("cdc bridge stopping")
			return nil
		case <-timer.C:
		}
		for _, u := range units {
			if err := b.drain(ctx, cl, u); err != nil {
				return ignoreCancel(ctx, err)
			}
		}
		timer.Reset(b.cfg.PollInterval)
	}
}

// drain steps a unit (a table or a group) until it has no more changes,
// one transaction per step.
func (b *Bridge) drain(ctx context.Context, cl *kgo.Client, unit []TableConfig) error {
	for {
		var more bool
		err := b.retry(ctx, names(unit), "", func() error {
			var err error
			more, err = b.step(ctx, cl, unit)
			return err
		})
		if err != nil || !more {
			return err
		}
	}
}

// stepError says which side failed, for metrics and whether to retry.
type stepError struct {
	where string // "source" or "kafka"
	fatal bool
	err   error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func sourceErr(err error) error { return &stepError{where: "source", err: err} }

// step advances a unit by one transaction and reports whether more work is
// waiting. A table of the unit in a resync is advanced by one chunk (its
// group's other tables wait, so the group's changes stay together once it
// ends); otherwise the unit's changes are polled in one snapshot.
func (b *Bridge) step(ctx context.Context, cl *kgo.Client, unit []TableConfig) (bool, error) {
	cps := make([]Checkpoint, len(unit))
	since := make([]int64, len(unit))
	for i, t := range unit {
		cps[i] = b.checkpoint(t.Name)
		if cps[i].Resync != nil {
			return b.resyncStep(ctx, cl, t, cps[i])
		}
		since[i] = cps[i].Version
	}
	snap, err := b.src.Poll(ctx, unit, since, b.cfg.MaxRows)
	if err != nil {
		return false, sourceErr(fmt.Errorf("polling %s: %w", names(unit), err))
	}
	if len(snap.Tables) != len(unit) {
		return false, sourceErr(fmt.Errorf("polling %s: %d tables answered", names(unit), len(snap.Tables)))
	}

	var starts []Checkpoint
	for i, t := range unit {
		reason, counted := resyncReason(cps[i], snap, snap.Tables[i])
		if reason == "" {
			continue
		}
		if otherHistory(cps[i], snap) && snap.CurrentVersion <= cps[i].Version {
			b.waitForVersion(t, cps[i].Version, snap.CurrentVersion, reason)
			return false, nil
		}
		starts = append(starts, b.startResync(t, cps[i], snap.Database, snap.CurrentVersion, reason, counted))
	}
	b.doneWaiting(unit...)
	if len(starts) > 0 {
		var recs []*kgo.Record
		for _, c := range starts {
			recs = append(recs, checkpointRecord(c))
		}
		if err := b.commit(ctx, cl, names(unit), "resync-start", recs, 0); err != nil {
			return false, err
		}
		b.setCheckpoints(starts...)
		return true, nil
	}

	// The group's checkpoint: each table is complete up to its Through, so
	// all are complete up to the smallest; later changes wait for the next
	// step, so a version spanning tables is never split.
	through := snap.CurrentVersion
	for _, tc := range snap.Tables {
		through = min(through, tc.Through)
	}
	var recs []*kgo.Record
	var rows []Change
	next := make([]Checkpoint, len(unit))
	ts := b.now().UTC()
	for i, t := range unit {
		for _, c := range snap.Tables[i].Changes {
			if c.Version > through {
				break // ordered by version
			}
			r, err := record(t, c, ts)
			if err != nil {
				// A row the codec cannot encode is a configuration or driver
				// problem that retrying will not fix; stop loudly.
				return false, &stepError{where: "source", fatal: true, err: err}
			}
			recs = append(recs, r, keySetRecord(t, c, cps[i].Epoch))
			rows = append(rows, c)
		}
		next[i] = cps[i]
		next[i].Version = max(since[i], through)
		b.m.lag.WithLabelValues(t.Name).Set(float64(max(0, snap.CurrentVersion-next[i].Version)))
	}
	moved := false
	for i := range unit {
		moved = moved || next[i].Version != since[i]
	}
	if len(rows) == 0 && !moved {
		for _, t := range unit {
			b.m.lastSuccess.WithLabelValues(t.Name).SetToCurrentTime()
		}
		return false, nil
	}
	for _, c := range next {
		recs = append(recs, checkpointRecord(c))
	}
	if err := b.commit(ctx, cl, names(unit), "changes", recs, len(rows)); err != nil {
		return false, err
	}
	b.setCheckpoints(next...)
	b.countRows(unit, snap.Tables, through)
	return through < snap.CurrentVersion, nil
}

// countRows counts committed change rows per table and op.
func (b *Bridge) countRows(unit []TableConfig, tcs []TableChanges, through int64) {
	for i, t := range unit {
		counts := map[string]int{}
		for _, c := range tcs[i].Changes {
			if c.Version <= through {
				counts[c.Op]++
			}
		}
		for op, n := range counts {
			b.m.rows.WithLabelValues(t.Name, op).Add(float64(n))
		}
		b.m.lastSuccess.WithLabelValues(t.Name).SetToCurrentTime()
	}
}

// resyncReason says why a table's checkpoint cannot be continued with
// changes, and whether that is counted as a resync (the initial load is
// not). Empty: it can.
func resyncReason(cp Checkpoint, snap Snapshot, tc TableChanges) (reason string, counted bool) {
	switch {
	case cp.Version == NoCheckpoint:
		return "no checkpoint: initial load", false
	case cp.Database == "":
		return "the checkpoint carries no database identity (written by an older bridge), so a restore since cannot be ruled out", true
	case cp.Database != snap.Database:
		return fmt.Sprintf("the database's recovery fork changed from %s to %s: it was restored from a backup or replaced, and versions after the restore point mean other changes",
			cp.Database, snap.Database), true
	case cp.Version > snap.CurrentVersion:
		return fmt.Sprintf("the checkpoint %d is ahead of the database's current version %d (restored database?)", cp.Version, snap.CurrentVersion), true
	case cp.Version < tc.MinValidVersion:
		return fmt.Sprintf("the checkpoint %d is older than the minimum valid version %d: change history was cleaned up", cp.Version, tc.MinValidVersion), true
	}
	return "", false
}

// otherHistory reports that the checkpoint's versions belong to another
// history than the database's: it was restored (or replaced) since.
func otherHistory(cp Checkpoint, snap Snapshot) bool {
	return cp.Version != NoCheckpoint && (cp.Database != snap.Database || cp.Version > snap.CurrentVersion)
}

// waitForVersion holds back the resync of a restored database until its
// current version passes seen, the highest version consumers have seen
// (the checkpoint's; during a resync, also its chunks'). The stages keep, per row, the
// last version they applied and ignore anything not newer (the contract
// for redelivered records), and they have seen versions up to the
// checkpoint from the database's earlier history. A resync stamped at a
// version not above the checkpoint would be ignored for exactly the rows
// it must correct; one stamped above it is taken, deletes included. The
// wait is logged once; rtm_cdc_lag_versions shows how far there is to go.
func (b *Bridge) waitForVersion(t TableConfig, seen, current int64, reason string) {
	b.m.lag.WithLabelValues(t.Name).Set(float64(seen - current + 1))
	b.mu.Lock()
	logged := b.waiting[t.Name]
	b.waiting[t.Name] = true
	b.mu.Unlock()
	if !logged {
		b.log.Warn("database restored to an older version: the resync waits until the database's version passes the versions already bridged, so that consumers, which ignore versions they have seen, take it; no changes are bridged until then",
			"table", t.Name, "reason", reason, "seen_version", seen, "current_version", current)
	}
}

// doneWaiting ends the waits of tables (waitForVersion logs again when a
// later one starts).
func (b *Bridge) doneWaiting(tables ...TableConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range tables {
		delete(b.waiting, t.Name)
	}
}

// startResync returns the checkpoint that opens a new resync epoch of t,
// based at version base of database db.
func (b *Bridge) startResync(t TableConfig, cp Checkpoint, db string, base int64, reason string, counted bool) Checkpoint {
	next := Checkpoint{Table: t.Name, Version: cp.Version, Database: db, Epoch: cp.Epoch + 1,
		Resync: &Resync{Reason: reason, Base: base}}
	if counted {
		b.log.Warn("resynchronising: copying the table in chunks, then sending deletes for rows gone since; consumers see every row again as an insert",
			"table", t.Name, "reason", reason, "epoch", next.Epoch, "base_version", base)
		b.m.resyncs.WithLabelValues(t.Name).Inc()
	} else {
		b.log.Info("initial load", "table", t.Name, "epoch", next.Epoch, "base_version", base)
	}
	return next
}

// resyncStep commits one chunk of t's resync: the next page of rows in
// primary-key order (copy), or the next batch of deletes for keys of
// cdc.keys that this epoch did not see and that are gone (sweep). The
// checkpoint committed with it says where to go on, so a restarted bridge
// resumes from the last committed chunk. A database that changes identity
// while a resync runs starts a new epoch (restartResync). It reports
// whether more work is waiting: false while a restarted resync waits for
// the database's version.
func (b *Bridge) resyncStep(ctx context.Context, cl *kgo.Client, t TableConfig, cp Checkpoint) (bool, error) {
	rs := *cp.Resync
	next := cp
	next.Resync = &rs
	var recs []*kgo.Record
	var rows []Change
	kind := "resync-chunk"
	if !rs.Sweep {
		page, err := b.src.Page(ctx, t, rs.After, b.cfg.ResyncChunkRows)
		if err != nil {
			return false, sourceErr(fmt.Errorf("reading a resync chunk of %s: %w", t.Name, err))
		}
		if page.Database != cp.Database {
			return b.restartResync(ctx, cl, t, cp, page.Database, page.CurrentVersion)
		}
		rows = page.Rows
		for _, r := range rows {
			rs.Seen = max(rs.Seen, r.Version)
		}
		if len(rows) > 0 {
			rs.After = rows[len(rows)-1].Key
		}
		if len(rows) < b.cfg.ResyncChunkRows {
			rs.Sweep, rs.After = true, nil
		}
	} else {
		kind = "sweep"
		gone, done, err := b.sweepBatch(ctx, t, cp.Epoch, &rs)
		if err != nil {
			return false, err
		}
		if gone.Database != "" && gone.Database != cp.Database {
			return b.restartResync(ctx, cl, t, cp, gone.Database, gone.CurrentVersion)
		}
		for _, k := range gone.Keys {
			rows = append(rows, Change{Version: gone.CurrentVersion, Op: topics.OpDelete, Key: k})
			rs.Seen = max(rs.Seen, gone.CurrentVersion)
		}
		if done {
			b.log.Info("resync done", "table", t.Name, "epoch", cp.Epoch, "continuing_after_version", rs.Base)
			next = Checkpoint{Table: t.Name, Version: rs.Base, Database: cp.Database, Epoch: cp.Epoch}
		}
	}
	ts := b.now().UTC()
	for _, c := range rows {
		r, err := record(t, c, ts)
		if err != nil {
			return false, &stepError{where: "source", fatal: true, err: err}
		}
		recs = append(recs, r, keySetRecord(t, c, cp.Epoch))
	}
	recs = append(recs, checkpointRecord(next))
	if err := b.commit(ctx, cl, t.Name, kind, recs, len(rows)); err != nil {
		return false, err
	}
	b.setCheckpoints(next)
	counts := map[string]int{}
	for _, c := range rows {
		counts[c.Op]++
	}
	for op, n := range counts {
		b.m.rows.WithLabelValues(t.Name, op).Add(float64(n))
	}
	b.m.lastSuccess.WithLabelValues(t.Name).SetToCurrentTime()
	return true, nil
}

// restartResync opens a new epoch because the database changed identity
// during a resync: what was copied belongs to the other database. Like a
// restore found between resyncs (waitForVersion), the new epoch starts only
// once the database's version passes every version consumers have seen
// (the checkpoint's, the epoch's base and what its chunks were stamped
// with), or the rows it must correct would be ignored as already seen.
func (b *Bridge) restartResync(ctx context.Context, cl *kgo.Client, t TableConfig, cp Checkpoint, db string, current int64) (bool, error) {
	reason := fmt.Sprintf("the database's recovery fork changed from %s to %s during the resync", cp.Database, db)
	if seen := max(cp.Version, cp.Resync.Base, cp.Resync.Seen); current <= seen {
		b.waitForVersion(t, seen, current, reason)
		return false, nil
	}
	next := b.startResync(t, cp, db, current, reason, true)
	if err := b.commit(ctx, cl, t.Name, "resync-start", []*kgo.Record{checkpointRecord(next)}, 0); err != nil {
		return false, err
	}
	b.setCheckpoints(next)
	b.doneWaiting(t)
	return true, nil
}

// sweepBatch reads cdc.keys from the sweep's position and collects up to
// ResyncChunkRows distinct keys of t last seen by an epoch before epoch
// (those this epoch saw carry its number), asks the database which of them
// are gone, and advances rs.SweepFrom past what it read. done reports that
// the key set was read to its end.
//
// The database, not the key set, decides: a key may appear in the log
// several times until compaction, with an older epoch before a newer one,
// and a row absent from every chunk may have been inserted after its chunk
// was read (the changes after the resync's base version send it). Asking
// whether the row exists now needs no memory beyond the batch; a row that
// is gone gets a delete even if it was deleted before (a repeated delete
// changes nothing downstream).
func (b *Bridge) sweepBatch(ctx context.Context, t TableConfig, epoch int64, rs *Resync) (Missing, bool, error) {
	var cand []map[string]any
	seen := map[string]bool{}
	next := map[int32]int64{}
	full := false
	err := scanLog(ctx, b.cfg.Kafka, topics.CDCKeys, rs.SweepFrom, func(r *kgo.Record) bool {
		if r.Value == nil || keySetTable(r.Key) != t.Name || seen[string(r.Key)] {
			return false
		}
		kr, err := decodeKeyRecord(t, r.Key, r.Value)
		if err != nil {
			b.log.Warn("ignoring a malformed key-set record", "table", t.Name, "offset", r.Offset, "err", err)
			return false
		}
		if kr.Epoch >= epoch {
			return false
		}
		seen[string(r.Key)] = true
		cand = append(cand, kr.Key)
		full = len(cand) >= b.cfg.ResyncChunkRows
		return full
	}, next)
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		// No key was ever recorded (producing one creates the topic or
		// fails loudly): nothing to sweep.
		err, full = nil, false
	}
	if err != nil {
		return Missing{}, false, kafkaErr(fmt.Errorf("reading the key set of %s: %w", t.Name, err))
	}
	var gone Missing
	if len(cand) > 0 {
		if gone, err = b.src.Missing(ctx, t, cand); err != nil {
			return Missing{}, false, sourceErr(fmt.Errorf("checking which rows of %s are gone: %w", t.Name, err))
		}
	}
	rs.SweepFrom = next
	return gone, !full, nil
}

// commit writes recs in one transaction, labelled for errors and test
// hooks; rows is how many of them are change rows.
func (b *Bridge) commit(ctx context.Context, cl *kgo.Client, label, kind string, recs []*kgo.Record, rows int) error {
	if err := cl.BeginTransaction(); err != nil {
		return kafkaErr(fmt.Errorf("beginning transaction for %s: %w", label, err))
	}
	var (
		mu       sync.Mutex
		firstErr error
	)
	for _, r := range recs {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
		})
	}
	ferr := cl.Flush(ctx)
	mu.Lock()
	perr := firstErr
	mu.Unlock()
	if ferr == nil && perr == nil && b.afterProduce != nil {
		if err := b.afterProduce(label); err != nil {
			return &stepError{where: "kafka", fatal: true, err: errCrash{err}}
		}
	}
	commit := kgo.TryCommit
	if ferr != nil || perr != nil {
		commit = kgo.TryAbort
		// Records still buffered must not leak into the next transaction.
		abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := cl.AbortBufferedRecords(abortCtx); err != nil {
			return kafkaErr(fmt.Errorf("aborting buffered records for %s: %w", label, err))
		}
	}
	// Ending must finish even when ctx was cancelled mid-batch, or the
	// transaction stays open until its timeout.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := cl.EndTransaction(endCtx, commit); err != nil {
		return kafkaErr(fmt.Errorf("ending transaction for %s: %w", label, err))
	}
	if ferr != nil || perr != nil {
		return kafkaErr(fmt.Errorf("producing %d records of %s: %w", len(recs), label, errors.Join(ferr, perr)))
	}
	if b.committed != nil {
		b.committed(txInfo{Label: label, Kind: kind, Rows: rows})
	}
	return nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// kafkaErr classifies a Kafka error: a fenced or otherwise unrecoverable
// transactional producer must stop, anything else is retried.
func kafkaErr(err error) error {
	fatal := errors.Is(err, kgo.ErrClientClosed)
	for _, f := range fatalKafka {
		if errors.Is(err, f) {
			fatal = true
		}
	}
	return &stepError{where: "kafka", fatal: fatal, err: err}
}

// fatalKafka are the errors after which this transactional producer can
// never commit again: another bridge took over the transactional ID, or
// the ID is not allowed.
var fatalKafka = []error{kerr.ProducerFenced, kerr.InvalidProducerEpoch,
	kerr.TransactionalIDAuthorizationFailed, kerr.InvalidProducerIDMapping}

// retry runs fn until it succeeds, ctx is done, or it fails fatally,
// backing off exponentially between attempts.
func (b *Bridge) retry(ctx context.Context, table, where string, fn func() error) error {
	backoff := b.cfg.MinBackoff
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w, fatal := where, false
		var se *stepError
		if errors.As(err, &se) {
			w, fatal = se.where, se.fatal
		}
		b.m.errors.WithLabelValues(table, w).Inc()
		if fatal {
			return err
		}
		b.log.Error("cdc step failed; retrying", "table", table, "where", w, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, b.cfg.MaxBackoff)
	}
}

func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// record encodes one change as its cdc.<table> record.
func record(t TableConfig, c Change, ts time.Time) (*kgo.Record, error) {
	var row json.RawMessage
	if c.Op != topics.OpDelete {
		raw, err := json.Marshal(c.Row)
		if err != nil {
			return nil, fmt.Errorf("encoding %s row %v: %w", t.Name, c.Key, err)
		}
		row = raw
	}
	v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: t.Name, Op: c.Op, Version: c.Version,
		Key: c.Key, Row: row, TS: ts})
	if err != nil {
		return nil, fmt.Errorf("encoding %s change %v: %w", t.Name, c.Key, err)
	}
	return &kgo.Record{Topic: t.Topic(), Key: []byte(keyText(c.Key[t.PartitionColumn])), Value: v}, nil
}

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
	// MaxRows caps the rows of one poll and one Kafka transaction (a version
	// is never split, so a transaction may exceed it by the rows sharing the
	// last version; a resync snapshot is one transaction). Default 5000.
	MaxRows int
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
	return errors.Join(errs...)
}

// Bridge copies Change Tracking changes into Kafka exactly once.
type Bridge struct {
	cfg Config
	src Source
	log *slog.Logger
	m   *metrics
	now func() time.Time

	// afterProduce, when set (tests), runs after a batch's records are
	// produced and flushed and before the transaction is committed. An
	// error returned from it makes Run return at once without aborting,
	// as a crash would.
	afterProduce func(table string) error

	mu          sync.Mutex
	checkpoints map[string]int64
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
		checkpoints: map[string]int64{}}, nil
}

// Checkpoints returns a copy of the versions committed so far per table.
func (b *Bridge) Checkpoints() map[string]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int64, len(b.checkpoints))
	for k, v := range b.checkpoints {
		out[k] = v
	}
	return out
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
	var cps map[string]int64
	if err := b.retry(ctx, "", "kafka", func() (err error) {
		cps, err = ReadCheckpoints(ctx, b.cfg.Kafka, topics.CDCCheckpoints)
		return err
	}); err != nil {
		return ignoreCancel(ctx, err)
	}
	b.mu.Lock()
	for _, t := range b.cfg.Tables {
		v, ok := cps[t.Name]
		if !ok {
			v = NoCheckpoint
		}
		b.checkpoints[t.Name] = v
	}
	b.mu.Unlock()
	b.log.Info("cdc bridge started", "transactional_id", b.cfg.TransactionalID, "checkpoints", cps)

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			b.log.Info("cdc bridge stopping")
			return nil
		case <-timer.C:
		}
		for _, t := range b.cfg.Tables {
			if err := b.drain(ctx, cl, t); err != nil {
				return ignoreCancel(ctx, err)
			}
		}
		timer.Reset(b.cfg.PollInterval)
	}
}

// drain polls t until it has no more changes, one transaction per batch.
func (b *Bridge) drain(ctx context.Context, cl *kgo.Client, t TableConfig) error {
	for {
		var more bool
		err := b.retry(ctx, t.Name, "", func() error {
			var err error
			more, err = b.step(ctx, cl, t)
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

// step polls t once and commits what it got. It reports whether more
// changes are waiting (the batch was cut at MaxRows).
func (b *Bridge) step(ctx context.Context, cl *kgo.Client, t TableConfig) (bool, error) {
	since := b.Checkpoints()[t.Name]
	batch, err := b.src.Poll(ctx, t, since, b.cfg.MaxRows)
	if err != nil {
		return false, &stepError{where: "source", err: fmt.Errorf("polling %s since %d: %w", t.Name, since, err)}
	}
	if !batch.Resync && since > batch.CurrentVersion {
		// The database's version went backwards: it was restored from a
		// backup or replaced. Versions will be reused, so changes since the
		// checkpoint cannot be trusted; resynchronise.
		b.log.Warn("checkpoint is ahead of the database's current version (restored database?): emitting a full snapshot",
			"table", t.Name, "checkpoint", since, "current_version", batch.CurrentVersion)
		b.m.resyncs.WithLabelValues(t.Name).Inc()
		if batch, err = b.src.Poll(ctx, t, NoCheckpoint, b.cfg.MaxRows); err != nil {
			return false, &stepError{where: "source", err: fmt.Errorf("polling snapshot of %s: %w", t.Name, err)}
		}
		since = NoCheckpoint // the snapshot below is then logged, not counted twice
	}
	b.m.lag.WithLabelValues(t.Name).Set(float64(max(0, batch.CurrentVersion-max(since, 0))))
	if batch.Resync {
		if since == NoCheckpoint {
			b.log.Info("no checkpoint: emitting initial snapshot", "table", t.Name, "rows", len(batch.Changes), "version", batch.CurrentVersion)
		} else {
			b.log.Warn("checkpoint is older than the minimum valid version: change history was lost, emitting a full snapshot; consumers see every row again as an insert",
				"table", t.Name, "checkpoint", since, "min_valid_version", batch.MinValidVersion, "rows", len(batch.Changes), "version", batch.CurrentVersion)
			b.m.resyncs.WithLabelValues(t.Name).Inc()
		}
	}
	if batch.Through == since && len(batch.Changes) == 0 {
		b.m.lastSuccess.WithLabelValues(t.Name).SetToCurrentTime()
		return false, nil
	}
	if err := b.commit(ctx, cl, t, batch); err != nil {
		return false, err
	}
	b.mu.Lock()
	b.checkpoints[t.Name] = batch.Through
	b.mu.Unlock()
	counts := map[string]int{}
	for _, c := range batch.Changes {
		counts[c.Op]++
	}
	for op, n := range counts {
		b.m.rows.WithLabelValues(t.Name, op).Add(float64(n))
	}
	b.m.lag.WithLabelValues(t.Name).Set(float64(batch.CurrentVersion - batch.Through))
	b.m.lastSuccess.WithLabelValues(t.Name).SetToCurrentTime()
	return batch.Through < batch.CurrentVersion, nil
}

// commit writes the batch's rows and its checkpoint in one transaction.
func (b *Bridge) commit(ctx context.Context, cl *kgo.Client, t TableConfig, batch Batch) error {
	recs := make([]*kgo.Record, 0, len(batch.Changes)+1)
	ts := b.now().UTC()
	for _, c := range batch.Changes {
		r, err := record(t, c, ts)
		if err != nil {
			// A row the codec cannot encode is a configuration or driver
			// problem that retrying will not fix; stop loudly.
			return &stepError{where: "source", fatal: true, err: err}
		}
		recs = append(recs, r)
	}
	recs = append(recs, checkpointRecord(t.Name, batch.Through))

	if err := cl.BeginTransaction(); err != nil {
		return kafkaErr(fmt.Errorf("beginning transaction for %s: %w", t.Name, err))
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
		if err := b.afterProduce(t.Name); err != nil {
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
			return kafkaErr(fmt.Errorf("aborting buffered records for %s: %w", t.Name, err))
		}
	}
	// Ending must finish even when ctx was cancelled mid-batch, or the
	// transaction stays open until its timeout.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := cl.EndTransaction(endCtx, commit); err != nil {
		return kafkaErr(fmt.Errorf("ending transaction for %s: %w", t.Name, err))
	}
	if ferr != nil || perr != nil {
		return kafkaErr(fmt.Errorf("producing %d changes of %s: %w", len(batch.Changes), t.Name, errors.Join(ferr, perr)))
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

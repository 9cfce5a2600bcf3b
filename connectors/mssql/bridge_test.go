package mssql

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

const testPartitions = 4

// env is a broker with the cdc topics and an in-memory source.
type env struct {
	addr string
	src  *MemCT
}

func newEnv(t testing.TB) *env {
	t.Helper()
	b := testkit.Broker(t, "")
	for _, tc := range testTables() {
		testkit.CreateTopic(t, b.Addr(), tc.Topic(), testPartitions, nil)
	}
	compact := "compact"
	testkit.CreateTopic(t, b.Addr(), topics.CDCCheckpoints, 1, map[string]*string{"cleanup.policy": &compact})
	testkit.CreateTopic(t, b.Addr(), topics.CDCKeys, 1, map[string]*string{"cleanup.policy": &compact})
	src, err := NewMemCT(testTables()...)
	if err != nil {
		t.Fatal(err)
	}
	return &env{addr: b.Addr(), src: src}
}

func (e *env) config() Config {
	return Config{Kafka: kafka.Config{Brokers: []string{e.addr}}, Tables: testTables(), TransactionalID: "test-cdc",
		PollInterval: 10 * time.Millisecond, MaxRows: 3, TransactionTimeout: 10 * time.Second}
}

// start runs a bridge until the test ends or stop is called, and returns a
// channel with Run's result.
func (e *env) start(t testing.TB, cfg Config, hook func(string) error, reg prometheus.Registerer) (br *Bridge, done <-chan error, stop func()) {
	t.Helper()
	br, err := New(cfg, e.src, testkit.Logger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	br.afterProduce = hook
	ctx, cancel := context.WithCancel(testkit.Context(t))
	res := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		res <- br.Run(ctx)
	}()
	stop = func() {
		cancel()
		<-finished
	}
	t.Cleanup(stop)
	return br, res, stop
}

// committed reads every read_committed data record of the cdc test topics
// up to their last stable offsets (control records are kept only to know
// where a partition ends).
func committed(t testing.TB, addr string) []*kgo.Record {
	t.Helper()
	var names []string
	for _, tc := range testTables() {
		names = append(names, tc.Topic())
	}
	return testkit.ReadCommitted(t, addr, names...)
}

// seenChange identifies a change version of one row on Kafka.
type seenChange struct {
	table, key, op string
	version        int64
}

// decodeAll decodes the records, checking the key and partition contract.
func decodeAll(t testing.TB, rs []*kgo.Record) map[seenChange]int {
	t.Helper()
	out := map[seenChange]int{}
	for _, r := range rs {
		rec, err := topics.CDCCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatalf("record %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		var tc TableConfig
		for _, c := range testTables() {
			if c.Name == rec.Table {
				tc = c
			}
		}
		if want := keyText(rec.Key[tc.PartitionColumn]); string(r.Key) != want {
			t.Errorf("record key %q, want %q (%s)", r.Key, want, tc.PartitionColumn)
		}
		if want := topics.Partition(r.Key, testPartitions); r.Partition != want {
			t.Errorf("key %q on partition %d, want %d", r.Key, r.Partition, want)
		}
		if rec.Op == topics.OpDelete && string(rec.Row) != "null" {
			t.Errorf("delete with row %s", rec.Row)
		}
		out[seenChange{rec.Table, encodeKey(tc.PrimaryKey, rec.Key), rec.Op, rec.Version}]++
	}
	return out
}

// waitStarted waits until the bridge has committed a checkpoint for every
// table (the initial snapshot of empty tables).
func waitStarted(t testing.TB, br *Bridge) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, "initial checkpoints", func() bool {
		cp := br.Checkpoints()
		for _, tc := range testTables() {
			if v, ok := cp[tc.Name]; !ok || v == NoCheckpoint {
				return false
			}
		}
		return true
	})
}

// step writes through the source and waits until the bridge has committed
// the resulting version for every table, so each step's net changes are
// known exactly.
func step(t testing.TB, br *Bridge, src *MemCT, writes ...error) {
	t.Helper()
	if err := errors.Join(writes...); err != nil {
		t.Fatal(err)
	}
	v := src.CurrentVersion()
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("bridge to reach version %d", v), func() bool {
		cp := br.Checkpoints()
		return cp["items"] == v && cp["favorites"] == v
	})
}

func fav(m, i string) map[string]any {
	return map[string]any{"member_id": m, "item_id": i, "created_at": "2026-11-23T10:00:00Z"}
}

// workload runs inserts, updates, deletes and composite keys in steps and
// returns the changes that must each be on Kafka exactly once.
func workload(t testing.TB, br *Bridge, src *MemCT) map[seenChange]int {
	waitStarted(t, br)
	step(t, br, src,
		src.Insert("items", item("I1", 100)), // v1
		src.Insert("items", item("I2", 200)), // v2
		src.Insert("favorites", fav("M1", "I1")),
		src.Insert("favorites", fav("M1", "I2")),
		src.Insert("favorites", fav("M2", "I1"))) // v5
	step(t, br, src,
		src.Txn(func(w Writer) error { // v6: one version, 4 rows (> MaxRows 3)
			return errors.Join(w.Update("items", item("I1", 80)), w.Insert("items", item("I3", 5)),
				w.Insert("items", item("I4", 6)), w.Insert("items", item("I5", 7)))
		}),
		src.Update("items", item("I2", 190)), // v7
	)
	step(t, br, src,
		src.Delete("favorites", map[string]any{"member_id": "M1", "item_id": "I2"}), // v8
		src.Delete("items", map[string]any{"item_id": "I4"}),                        // v9
	)
	return map[seenChange]int{
		{"items", "I1", "i", 1}: 1, {"items", "I2", "i", 2}: 1,
		{"favorites", "M1\x00I1", "i", 3}: 1, {"favorites", "M1\x00I2", "i", 4}: 1, {"favorites", "M2\x00I1", "i", 5}: 1,
		{"items", "I1", "u", 6}: 1, {"items", "I3", "i", 6}: 1, {"items", "I4", "i", 6}: 1, {"items", "I5", "i", 6}: 1,
		{"items", "I2", "u", 7}:           1,
		{"favorites", "M1\x00I2", "d", 8}: 1, {"items", "I4", "d", 9}: 1,
	}
}

func assertExactly(t testing.TB, got, want map[seenChange]int) {
	t.Helper()
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%+v seen %d times, want %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if want[k] == 0 {
			t.Errorf("unexpected change %+v seen %d times", k, n)
		}
	}
}

func TestBridgeExactlyOnce(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	br, _, _ := e.start(t, e.config(), nil, reg)
	want := workload(t, br, e.src)
	assertExactly(t, decodeAll(t, committed(t, e.addr)), want)
	if n := value(t, br.m.lag.WithLabelValues("items")); n != 0 {
		t.Errorf("lag = %v, want 0", n)
	}
	if n := value(t, br.m.rows.WithLabelValues("items", "i")); n != 5 {
		t.Errorf("rows{items,i} = %v, want 5", n)
	}
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestBridgeCrashBeforeCommit crashes a bridge after it produced a batch
// inside a transaction but before committing it; a fresh bridge with the
// same transactional ID must fence it, and read_committed consumers must
// see every change version exactly once.
func TestBridgeCrashBeforeCommit(t *testing.T) {
	e := newEnv(t)
	var crash atomic.Bool
	errBoom := errors.New("simulated crash")
	a, doneA, _ := e.start(t, e.config(), func(string) error {
		if crash.Load() {
			return errBoom
		}
		return nil
	}, nil)
	waitStarted(t, a)
	if err := errors.Join(e.src.Insert("items", item("I1", 100)), e.src.Insert("favorites", fav("M1", "I1"))); err != nil {
		t.Fatal(err)
	}
	step(t, a, e.src)

	crash.Store(true)
	if err := e.src.Txn(func(w Writer) error {
		return errors.Join(w.Update("items", item("I1", 80)), w.Insert("items", item("I2", 5)),
			w.Insert("favorites", fav("M2", "I2")))
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-doneA; !errors.Is(err, errBoom) {
		t.Fatalf("crashed bridge returned %v, want the simulated crash", err)
	}
	if n := uncommitted(t, e.addr); n == 0 {
		t.Fatal("the crashed transaction left no records in the log; the test would prove nothing")
	}

	b, _, _ := e.start(t, e.config(), nil, nil)
	step(t, b, e.src)
	step(t, b, e.src, e.src.Delete("items", map[string]any{"item_id": "I2"}))
	assertExactly(t, decodeAll(t, committed(t, e.addr)), map[seenChange]int{
		{"items", "I1", "i", 1}: 1, {"favorites", "M1\x00I1", "i", 2}: 1,
		{"items", "I1", "u", 3}: 1, {"items", "I2", "i", 3}: 1, {"favorites", "M2\x00I2", "i", 3}: 1,
		{"items", "I2", "d", 4}: 1,
	})
}

// uncommitted counts every data record in the cdc topics, committed or not.
func uncommitted(t testing.TB, addr string) int {
	t.Helper()
	var names []string
	for _, tc := range testTables() {
		names = append(names, tc.Topic())
	}
	ends, err := kadm.NewClient(testkit.Client(t, addr)).ListEndOffsets(testkit.Context(t), names...)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ends.Each(func(o kadm.ListedOffset) { n += int(o.Offset) })
	return n - len(decodeAll(t, committed(t, addr)))
}

// TestBridgeResync stops the bridge, lets change history expire past its
// checkpoint, and checks that the restarted bridge emits a snapshot at the
// current version, counts the resync, and then carries on with changes.
func TestBridgeResync(t *testing.T) {
	e := newEnv(t)
	a, _, stopA := e.start(t, e.config(), nil, nil)
	waitStarted(t, a)
	step(t, a, e.src, e.src.Insert("items", item("I1", 100)), e.src.Insert("favorites", fav("M1", "I1"))) // v1, v2
	stopA()

	if err := errors.Join(
		e.src.Insert("items", item("I2", 5)),                                          // v3
		e.src.Delete("favorites", map[string]any{"member_id": "M1", "item_id": "I1"}), // v4
		e.src.Update("items", item("I1", 90)),                                         // v5
	); err != nil {
		t.Fatal(err)
	}
	e.src.Cleanup(4) // checkpoint 2 < min valid 4

	reg := prometheus.NewRegistry()
	b, _, _ := e.start(t, e.config(), nil, reg)
	step(t, b, e.src)
	if n := value(t, b.m.resyncs.WithLabelValues("items")); n != 1 {
		t.Errorf("resyncs{items} = %v, want 1", n)
	}
	step(t, b, e.src, e.src.Delete("items", map[string]any{"item_id": "I2"})) // v6
	assertExactly(t, decodeAll(t, committed(t, e.addr)), map[seenChange]int{
		{"items", "I1", "i", 1}: 1, {"favorites", "M1\x00I1", "i", 2}: 1,
		// the resync at version 5: the live rows, and a delete for the
		// favourite removed while history was lost
		{"items", "I1", "i", 5}: 1, {"items", "I2", "i", 5}: 1, {"favorites", "M1\x00I1", "d", 5}: 1,
		{"items", "I2", "d", 6}: 1,
	})
}

// flaky fails the first n polls, as a database that is restarting would.
type flaky struct {
	Source
	mu sync.Mutex
	n  int
}

func (f *flaky) Poll(ctx context.Context, ts []TableConfig, since []int64, limit int) (Snapshot, error) {
	f.mu.Lock()
	fail := f.n > 0
	f.n--
	f.mu.Unlock()
	if fail {
		return Snapshot{}, errors.New("connection reset by peer")
	}
	return f.Source.Poll(ctx, ts, since, limit)
}

// TestBridgeRetriesSourceErrors: database errors are retried with backoff
// and counted; nothing is lost or duplicated.
func TestBridgeRetriesSourceErrors(t *testing.T) {
	e := newEnv(t)
	if err := errors.Join(e.src.Insert("items", item("I1", 1)), e.src.Insert("items", item("I2", 2))); err != nil {
		t.Fatal(err)
	}
	cfg := e.config()
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 4*time.Millisecond
	br, err := New(cfg, &flaky{Source: e.src, n: 5}, testkit.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testkit.Context(t))
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	step(t, br, e.src)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if n := value(t, br.m.errors.WithLabelValues("items", "source")); n != 5 {
		t.Errorf("errors{items,source} = %v, want 5", n)
	}
	got := decodeAll(t, committed(t, e.addr))
	assertExactly(t, got, map[seenChange]int{{"items", "I1", "i", 2}: 1, {"items", "I2", "i", 2}: 1})
}

// TestBridgeDatabaseRestored: a database restored to an older version
// (checkpoint ahead of the current version) is not continued from reused
// versions. The resync waits until the database's version passes the
// checkpoint, so every record it writes is newer than anything consumers
// saw from the earlier history, and they take it (deletes of the rows the
// restore removed included).
func TestBridgeDatabaseRestored(t *testing.T) {
	e := newEnv(t)
	a, _, stopA := e.start(t, e.config(), nil, nil)
	waitStarted(t, a)
	step(t, a, e.src, e.src.Insert("items", item("I1", 1))) // v1
	backup := e.src.Backup()
	step(t, a, e.src, e.src.Insert("items", item("I2", 2)), e.src.Insert("items", item("I3", 3))) // v2, v3
	stopA()

	e.src.Restore(backup)                                        // back to v1, new fork
	if err := e.src.Insert("items", item("I9", 9)); err != nil { // v2 again
		t.Fatal(err)
	}
	b, _, _ := e.start(t, e.config(), nil, nil)
	testkit.Eventually(t, 30*time.Second, "the bridge to wait for the restored database", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.waiting["items"]
	})
	if got := b.Checkpoints()["items"]; got != 3 {
		t.Errorf("checkpoint while waiting = %d, want 3 (untouched)", got)
	}
	// v3 is still not past the checkpoint; v4 is.
	step(t, b, e.src, e.src.Insert("items", item("I10", 10)), e.src.Update("items", item("I1", 11)))
	if n := value(t, b.m.resyncs.WithLabelValues("items")); n != 1 {
		t.Errorf("resyncs{items} = %v, want 1", n)
	}
	assertExactly(t, decodeAll(t, committed(t, e.addr)), map[seenChange]int{
		{"items", "I1", "i", 1}: 1, {"items", "I2", "i", 2}: 1, {"items", "I3", "i", 3}: 1,
		// the restored database's rows, and deletes for the rows it lacks,
		// all above the old checkpoint
		{"items", "I1", "i", 4}: 1, {"items", "I9", "i", 4}: 1, {"items", "I10", "i", 4}: 1,
		{"items", "I2", "d", 4}: 1, {"items", "I3", "d", 4}: 1,
	})
	assertSame(t, replay(t, e.addr), want(t, e.src))
}

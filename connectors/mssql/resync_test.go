package mssql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

// txLog records the bridge's committed transactions.
type txLog struct {
	mu  sync.Mutex
	txs []txInfo
}

func (l *txLog) add(tx txInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.txs = append(l.txs, tx)
}

// of returns the transactions of label and kind.
func (l *txLog) of(label, kind string) []txInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []txInfo
	for _, tx := range l.txs {
		if tx.Label == label && tx.Kind == kind {
			out = append(out, tx)
		}
	}
	return out
}

// startLogged starts a bridge whose committed transactions go to a txLog.
func (e *env) startLogged(t *testing.T, cfg Config, hook func(string) error, reg prometheus.Registerer) (*Bridge, <-chan error, func(), *txLog) {
	t.Helper()
	log := &txLog{}
	br, err := New(cfg, e.src, testkit.Logger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	br.afterProduce, br.committed = hook, log.add
	done, stop := run(t, br)
	return br, done, stop, log
}

// table returns every row of a MemCT table, by encoded primary key.
func table(t testing.TB, src *MemCT, tc TableConfig) map[string]map[string]any {
	t.Helper()
	p, err := src.Page(testkit.Context(t), tc, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, r := range p.Rows {
		out[encodeKey(tc.PrimaryKey, r.Key)] = r.Row
	}
	return out
}

// replay applies the committed cdc.items records in log order the way the
// stages do: a record whose version is not above the last applied version
// of its row is ignored. It returns each live row's price.
func replay(t testing.TB, addr string) map[string]string {
	t.Helper()
	last := map[string]int64{}
	out := map[string]string{}
	for _, r := range testkit.ReadCommitted(t, addr, "cdc.items") {
		rec, err := topics.CDCCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		k := keyText(rec.Key["item_id"])
		if v, ok := last[k]; ok && rec.Version <= v {
			continue
		}
		last[k] = rec.Version
		if rec.Op == topics.OpDelete {
			delete(out, k)
			continue
		}
		out[k] = string(rec.Row)
	}
	return out
}

// want renders the source's items the way replay does.
func want(t testing.TB, src *MemCT) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, row := range table(t, src, testTables()[0]) {
		out[k] = fmt.Sprintf(`{"item_id":%q,"price":%d}`, row["item_id"], row["price"])
	}
	return out
}

func assertSame(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("item %s downstream = %q, want %q", k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("item %s downstream = %q, but the database has no such row", k, g)
		}
	}
}

func writeN(t testing.TB, src *MemCT, n int, fn func(i int) error) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := fn(i); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBridgeRestoreWritesPastCheckpoint is Microsoft's documented case: the
// bridge has committed up to version 100, the database is restored to a
// backup at version 70, and new writes take it to 130. Versions 71..130
// now mean other changes than the ones bridged, and the version alone
// (130 > 100) does not show it. The recovery fork GUID does: the bridge
// resynchronises, and downstream ends with exactly the restored database's
// rows, the rows deleted by the restore included.
func TestBridgeRestoreWritesPastCheckpoint(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	a, _, stopA, _ := e.startLogged(t, cfg, nil, nil)
	waitStarted(t, a)
	// v1..v70: 70 items.
	writeN(t, e.src, 70, func(i int) error { return e.src.Insert("items", item(fmt.Sprintf("I%02d", i), i)) })
	backup := e.src.Backup()
	// v71..v100 on the old history: 10 new items, 10 price changes, 10 deletes.
	writeN(t, e.src, 30, func(i int) error {
		switch {
		case i < 10:
			return e.src.Insert("items", item(fmt.Sprintf("OLD%02d", i), 1))
		case i < 20:
			return e.src.Update("items", item(fmt.Sprintf("I%02d", i), 999))
		default:
			return e.src.Delete("items", map[string]any{"item_id": fmt.Sprintf("I%02d", i)})
		}
	})
	step(t, a, e.src)
	if got := a.Checkpoints()["items"]; got != 100 {
		t.Fatalf("checkpoint %d, want 100", got)
	}
	stopA()

	e.src.Restore(backup) // version 70, new recovery fork
	// v71..v130 on the new history: other rows, other changes.
	writeN(t, e.src, 60, func(i int) error {
		switch {
		case i < 20:
			return e.src.Insert("items", item(fmt.Sprintf("NEW%02d", i), 2))
		case i < 40:
			return e.src.Update("items", item(fmt.Sprintf("I%02d", i), 500+i))
		default:
			return e.src.Delete("items", map[string]any{"item_id": fmt.Sprintf("I%02d", i)})
		}
	})
	if v := e.src.CurrentVersion(); v != 130 {
		t.Fatalf("version after the restore and writes = %d, want 130", v)
	}

	reg := prometheus.NewRegistry()
	b, _, _, log := e.startLogged(t, cfg, nil, reg)
	step(t, b, e.src)
	if n := value(t, b.m.resyncs.WithLabelValues("items")); n != 1 {
		t.Errorf("resyncs{items} = %v, want 1", n)
	}
	if n := len(log.of("items", "resync-start")); n != 1 {
		t.Errorf("%d resyncs started, want 1", n)
	}
	// One more write after the resync arrives as a change.
	step(t, b, e.src, e.src.Update("items", item("I00", 7)))
	assertSame(t, replay(t, e.addr), want(t, e.src))
}

// TestBridgeResyncInChunks: a resync of a table much larger than MaxRows
// commits one transaction per chunk of at most ResyncChunkRows rows (the
// bridge holds one chunk), and its sweep deletes the rows removed while
// the change history was lost.
func TestBridgeResyncInChunks(t *testing.T) {
	e := newEnv(t)
	cfg := e.config() // MaxRows 3
	cfg.ResyncChunkRows = 4
	a, _, stopA, _ := e.startLogged(t, cfg, nil, nil)
	waitStarted(t, a)
	writeN(t, e.src, 30, func(i int) error { return e.src.Insert("items", item(fmt.Sprintf("I%02d", i), i)) })
	step(t, a, e.src)
	stopA()

	// While the bridge is down: 7 deletes, 3 inserts, 5 updates, and the
	// history of all of it is cleaned up.
	writeN(t, e.src, 7, func(i int) error { return e.src.Delete("items", map[string]any{"item_id": fmt.Sprintf("I%02d", 3*i)}) })
	writeN(t, e.src, 3, func(i int) error { return e.src.Insert("items", item(fmt.Sprintf("J%02d", i), 1)) })
	writeN(t, e.src, 5, func(i int) error { return e.src.Update("items", item(fmt.Sprintf("I%02d", 3*i+1), 77)) })
	e.src.Cleanup(e.src.CurrentVersion())

	b, _, _, log := e.startLogged(t, cfg, nil, nil)
	step(t, b, e.src)
	chunks := log.of("items", "resync-chunk")
	// 26 live rows in chunks of 4: six full chunks, one of 2.
	if len(chunks) != 7 {
		t.Errorf("%d chunk transactions, want 7", len(chunks))
	}
	rows, most := 0, 0
	for _, tx := range append(chunks, log.of("items", "sweep")...) {
		rows += tx.Rows
		most = max(most, tx.Rows)
	}
	if most > cfg.ResyncChunkRows {
		t.Errorf("a resync transaction held %d rows, more than the chunk size %d", most, cfg.ResyncChunkRows)
	}
	// 26 inserts and 7 deletes.
	if rows != 33 {
		t.Errorf("resync transactions carried %d rows, want 33", rows)
	}
	got := decodeAll(t, committed(t, e.addr))
	for i := 0; i < 7; i++ {
		k := seenChange{"items", fmt.Sprintf("I%02d", 3*i), "d", 45}
		if got[k] != 1 {
			t.Errorf("delete of %s during the gap: seen %d times, want 1", k.key, got[k])
		}
	}
	assertSame(t, replay(t, e.addr), want(t, e.src))
}

// crashMidResync runs a bridge that crashes in the initial copy of items
// once it has committed chunks chunks (the next one is produced, never
// committed), and returns it stopped.
func crashMidResync(t *testing.T, e *env, cfg Config, chunks int32) *Bridge {
	t.Helper()
	var committed atomic.Int32
	errBoom := errors.New("simulated crash")
	a, err := New(cfg, e.src, testkit.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.committed = func(tx txInfo) {
		if tx.Label == "items" && tx.Kind == "resync-chunk" {
			committed.Add(1)
		}
	}
	a.afterProduce = func(label string) error {
		if label == "items" && committed.Load() == chunks {
			return errBoom
		}
		return nil
	}
	done, _ := run(t, a)
	if err := <-done; !errors.Is(err, errBoom) {
		t.Fatalf("crashed bridge returned %v, want the simulated crash", err)
	}
	return a
}

// TestBridgeResyncResumesAfterCrash crashes the bridge in the middle of a
// resync; the next bridge continues the same epoch from the last
// committed chunk instead of starting over.
func TestBridgeResyncResumesAfterCrash(t *testing.T) {
	e := newEnv(t)
	cfg := e.config() // MaxRows 3: chunks of 3
	writeN(t, e.src, 20, func(i int) error { return e.src.Insert("items", item(fmt.Sprintf("I%02d", i), i)) })

	a := crashMidResync(t, e, cfg, 3)
	epoch := a.checkpoint("items").Epoch
	if r := a.checkpoint("items").Resync; r == nil || r.After["item_id"] != "I08" {
		t.Fatalf("checkpoint at the crash: %+v, want a resync after I08", r)
	}

	b, _, _, logB := e.startLogged(t, cfg, nil, nil)
	step(t, b, e.src)
	if n := len(logB.of("items", "resync-start")); n != 0 {
		t.Errorf("the restarted bridge started %d new resyncs, want to resume the old one", n)
	}
	// 20 rows in chunks of 3: 7 chunks, 3 committed before the crash.
	if n := len(logB.of("items", "resync-chunk")); n != 4 {
		t.Errorf("the restarted bridge committed %d chunks, want the remaining 4", n)
	}
	if got := b.checkpoint("items").Epoch; got != epoch {
		t.Errorf("epoch %d after resuming, want %d", got, epoch)
	}
	want := map[seenChange]int{}
	for i := 0; i < 20; i++ {
		want[seenChange{"items", fmt.Sprintf("I%02d", i), "i", 20}] = 1
	}
	assertExactly(t, decodeAll(t, committed(t, e.addr)), want)
}

// TestBridgeRestoreDuringResync: the database is restored while a resync
// is half done (the first chunks, stamped at version 20, are downstream).
// The restored database is at version 18: a new epoch stamped 18 would be
// ignored by consumers for the rows they saw at 20, so the bridge waits
// (rtm_cdc_lag_versions says how far) and starts the new epoch once the
// version passes 20. Downstream ends with exactly the restored rows.
func TestBridgeRestoreDuringResync(t *testing.T) {
	e := newEnv(t)
	cfg := e.config() // MaxRows 3: chunks of 3
	writeN(t, e.src, 12, func(i int) error { return e.src.Insert("items", item(fmt.Sprintf("I%02d", i), i)) })
	backup := e.src.Backup() // version 12
	writeN(t, e.src, 8, func(i int) error { return e.src.Insert("items", item(fmt.Sprintf("I%02d", 12+i), 12+i)) })

	a := crashMidResync(t, e, cfg, 3)
	if r := a.checkpoint("items").Resync; r == nil || r.Seen != 20 {
		t.Fatalf("checkpoint at the crash: %+v, want a resync whose chunks were stamped 20", r)
	}

	e.src.Restore(backup) // version 12, new recovery fork
	writeN(t, e.src, 5, func(i int) error { return e.src.Update("items", item(fmt.Sprintf("I%02d", i), 100+i)) })
	if err := e.src.Delete("items", map[string]any{"item_id": "I05"}); err != nil {
		t.Fatal(err)
	}
	if v := e.src.CurrentVersion(); v != 18 {
		t.Fatalf("version after the restore and writes = %d, want 18", v)
	}

	reg := prometheus.NewRegistry()
	b, _, _, log := e.startLogged(t, cfg, nil, reg)
	testkit.Eventually(t, 30*time.Second, "the resync to wait for version 21", func() bool {
		return value(t, b.m.lag.WithLabelValues("items")) == 3 // 20 - 18 + 1
	})
	if n := len(log.of("items", "resync-start")); n != 0 {
		t.Fatalf("%d resyncs started below the versions consumers saw", n)
	}
	writeN(t, e.src, 3, func(i int) error { return e.src.Insert("items", item(fmt.Sprintf("NEW%02d", i), 1)) }) // v19..v21
	step(t, b, e.src)
	if n := len(log.of("items", "resync-start")); n != 1 {
		t.Errorf("%d resyncs started, want 1", n)
	}
	if n := value(t, b.m.resyncs.WithLabelValues("items")); n != 1 {
		t.Errorf("resyncs{items} = %v, want 1", n)
	}
	assertSame(t, replay(t, e.addr), want(t, e.src))
}

// TestBridgeGroupOneTransaction: one SQL transaction spanning the tables
// of a group arrives in one Kafka transaction; without the group it
// arrives split, one transaction per table.
func TestBridgeGroupOneTransaction(t *testing.T) {
	for _, tt := range []struct {
		name   string
		groups [][]string
		want   map[string]int // committed change rows per label
	}{
		{"grouped", [][]string{{"items", "favorites"}}, map[string]int{"items+favorites": 3}},
		{"ungrouped", nil, map[string]int{"items": 2, "favorites": 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := e.config()
			cfg.Groups = tt.groups
			br, _, _, log := e.startLogged(t, cfg, nil, nil)
			waitStarted(t, br)
			step(t, br, e.src, e.src.Txn(func(w Writer) error { // a checkout
				return errors.Join(w.Insert("items", item("I1", 1)), w.Update("items", item("I1", 2)),
					w.Insert("items", item("I2", 1)), w.Insert("favorites", fav("M1", "I1")))
			}))
			got := map[string]int{}
			for _, label := range []string{"items+favorites", "items", "favorites"} {
				for _, tx := range log.of(label, "changes") {
					got[label] += tx.Rows
				}
			}
			for label, n := range tt.want {
				if got[label] != n || len(log.of(label, "changes")) != 1 {
					t.Errorf("label %s: %d rows in %d transactions, want %d in one", label, got[label], len(log.of(label, "changes")), n)
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("transactions %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBridgeGroupCut: MaxRows cuts a group at one version for every table,
// so a version spanning tables still arrives in one transaction.
func TestBridgeGroupCut(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.MaxRows = 1
	cfg.Groups = [][]string{{"items", "favorites"}}
	br, _, _, log := e.startLogged(t, cfg, nil, nil)
	waitStarted(t, br)
	step(t, br, e.src,
		e.src.Insert("items", item("I1", 1)), // v1: items only
		e.src.Txn(func(w Writer) error { // v2: both tables
			return errors.Join(w.Insert("items", item("I2", 1)), w.Insert("favorites", fav("M1", "I2")))
		}),
		e.src.Insert("favorites", fav("M2", "I2")), // v3: favorites only
	)
	var sizes []int
	for _, tx := range log.of("items+favorites", "changes") {
		if tx.Rows > 0 {
			sizes = append(sizes, tx.Rows)
		}
	}
	if !slices.Equal(sizes, []int{1, 2, 1}) {
		t.Errorf("change rows per transaction %v, want [1 2 1] (one version each)", sizes)
	}
}

// run runs a bridge until the test ends or stop is called.
func run(t testing.TB, br *Bridge) (<-chan error, func()) {
	ctx, cancel := context.WithCancel(testkit.Context(t))
	res := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		res <- br.Run(ctx)
	}()
	stop := func() {
		cancel()
		<-finished
	}
	t.Cleanup(stop)
	return res, stop
}

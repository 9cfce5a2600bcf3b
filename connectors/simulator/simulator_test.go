package simulator

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/rtm-project/rtm/connectors/mssql"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

// run seeds a shop and steps it n times, returning its source and events.
func run(t testing.TB, seed uint64, n int) (*mssql.MemCT, []topics.BehaviorEvent) {
	t.Helper()
	ct, err := mssql.NewMemCT(mssql.DefaultTables()...)
	if err != nil {
		t.Fatal(err)
	}
	var evs []topics.BehaviorEvent
	s, err := New(Config{Seed: seed, Members: 50, Items: 20}, ct, func(_ context.Context, ev topics.BehaviorEvent) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return ct, evs
}

// snapshot is every table's rows, as JSON, by table.
func snapshot(t testing.TB, ct *mssql.MemCT) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tc := range mssql.DefaultTables() {
		b, err := ct.Page(context.Background(), tc, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		j, err := json.Marshal(b.Rows)
		if err != nil {
			t.Fatal(err)
		}
		out[tc.Name] = string(j)
	}
	return out
}

func TestSameSeedSameShop(t *testing.T) {
	a, evA := run(t, 42, 2000)
	b, evB := run(t, 42, 2000)
	c, _ := run(t, 43, 2000)
	if a.CurrentVersion() != b.CurrentVersion() || !reflect.DeepEqual(snapshot(t, a), snapshot(t, b)) {
		t.Error("seed 42 twice gave different shops")
	}
	if !reflect.DeepEqual(evA, evB) {
		t.Error("seed 42 twice gave different events")
	}
	if reflect.DeepEqual(snapshot(t, a), snapshot(t, c)) {
		t.Error("seeds 42 and 43 gave the same shop")
	}
	if len(evA) == 0 || a.CurrentVersion() < 1000 {
		t.Errorf("2000 steps: %d events, version %d; want a busy shop", len(evA), a.CurrentVersion())
	}
}

// TestShopInvariants: references hold and values stay plausible.
func TestShopInvariants(t *testing.T) {
	ct, evs := run(t, 7, 3000)
	rows := map[string][]mssql.Change{}
	for _, tc := range mssql.DefaultTables() {
		b, err := ct.Page(context.Background(), tc, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		rows[tc.Name] = b.Rows
	}
	status := map[string]string{}
	for _, m := range rows["members"] {
		status[m.Row["member_id"].(string)] = m.Row["status"].(string)
	}
	items := map[string]bool{}
	for _, it := range rows["items"] {
		items[it.Row["item_id"].(string)] = true
		if p := it.Row["price"].(float64); p < 100 {
			t.Errorf("item %v price %v", it.Key, p)
		}
		if s := it.Row["stock"].(int); s < 0 {
			t.Errorf("item %v stock %v", it.Key, s)
		}
	}
	for _, tbl := range []string{"favorites", "cart_items", "orders"} {
		for _, r := range rows[tbl] {
			m, i := r.Row["member_id"].(string), r.Row["item_id"].(string)
			if status[m] == "" || !items[i] {
				t.Errorf("%s row %v references a missing member or item", tbl, r.Key)
			}
			if tbl != "orders" && status[m] != "active" {
				t.Errorf("%s row %v of a withdrawn member", tbl, r.Key)
			}
		}
	}
	for _, ev := range evs {
		if err := ev.Validate(); err != nil {
			t.Errorf("event %+v: %v", ev, err)
		}
	}
}

// TestBridgeReplaysShop runs the shop through the CDC bridge into the
// embedded broker and checks that replaying cdc.* (read_committed, last
// record per primary key wins, d removes) reproduces every table.
func TestBridgeReplaysShop(t *testing.T) {
	br := testkit.Broker(t, "")
	for _, tc := range mssql.DefaultTables() {
		testkit.CreateTopic(t, br.Addr(), tc.Topic(), 4, nil)
	}
	compact := "compact"
	testkit.CreateTopic(t, br.Addr(), topics.CDCCheckpoints, 1, map[string]*string{"cleanup.policy": &compact})
	testkit.CreateTopic(t, br.Addr(), topics.CDCKeys, 1, map[string]*string{"cleanup.policy": &compact})
	ct, err := mssql.NewMemCT(mssql.DefaultTables()...)
	if err != nil {
		t.Fatal(err)
	}
	shop, err := New(Config{Seed: 1, Members: 50, Items: 20}, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t)
	if err := shop.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	bridge, err := mssql.New(mssql.Config{Kafka: kafka.Config{Brokers: []string{br.Addr()}}, PollInterval: 5 * time.Millisecond, MaxRows: 50},
		ct, testkit.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- bridge.Run(bctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range 1500 {
		if err := shop.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	v := ct.CurrentVersion()
	testkit.Eventually(t, time.Minute, "bridge to catch up", func() bool {
		for _, tc := range mssql.DefaultTables() {
			if bridge.Checkpoints()[tc.Name] != v {
				return false
			}
		}
		return true
	})
	replayed := replay(t, br.Addr())
	for _, tc := range mssql.DefaultTables() {
		b, err := ct.Page(ctx, tc, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{}
		for _, c := range b.Rows {
			j, _ := json.Marshal(c.Row)
			want[keyOf(c.Key)] = string(j)
		}
		if got := replayed[tc.Name]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: replay has %d rows, database %d (or values differ)", tc.Name, len(got), len(want))
		}
	}
}

func keyOf(k map[string]any) string { j, _ := json.Marshal(k); return string(j) } // map keys sort

// replay folds every committed cdc record into table → key → row JSON.
func replay(t testing.TB, addr string) map[string]map[string]string {
	t.Helper()
	var names []string
	for _, tc := range mssql.DefaultTables() {
		names = append(names, tc.Topic())
	}
	out := map[string]map[string]string{}
	for _, r := range testkit.ReadCommitted(t, addr, names...) {
		rec, err := topics.CDCCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodesAsRow(rec); err != nil {
			t.Errorf("%s row does not decode into its topics row type: %v", rec.Table, err)
		}
		if out[rec.Table] == nil {
			out[rec.Table] = map[string]string{}
		}
		if rec.Op == topics.OpDelete {
			delete(out[rec.Table], keyOf(rec.Key))
			continue
		}
		var row map[string]any
		if err := json.Unmarshal(rec.Row, &row); err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(row)
		out[rec.Table][keyOf(rec.Key)] = string(j)
	}
	for _, tc := range mssql.DefaultTables() {
		if out[tc.Name] == nil {
			out[tc.Name] = map[string]string{}
		}
	}
	return out
}

// decodesAsRow checks the row contract from the consumer side: every
// non-delete row decodes into its topics row type with the key filled in.
func decodesAsRow(rec *topics.CDCRecord) error {
	if rec.Op == topics.OpDelete {
		return nil
	}
	var id string
	var err error
	switch rec.Table {
	case "members":
		var r *topics.MemberRow
		if r, err = topics.DecodeRow[topics.MemberRow](rec); err == nil {
			id = r.MemberID
			if _, perr := time.Parse(time.DateOnly, r.Birthday); perr != nil {
				err = perr
			}
		}
	case "items":
		var r *topics.ItemRow
		if r, err = topics.DecodeRow[topics.ItemRow](rec); err == nil {
			id = r.ItemID
		}
	case "favorites":
		var r *topics.FavoriteRow
		if r, err = topics.DecodeRow[topics.FavoriteRow](rec); err == nil {
			id = r.MemberID
		}
	case "orders":
		var r *topics.OrderRow
		if r, err = topics.DecodeRow[topics.OrderRow](rec); err == nil {
			id = r.MemberID
		}
	case "cart_items":
		var r *topics.CartItemRow
		if r, err = topics.DecodeRow[topics.CartItemRow](rec); err == nil {
			id = r.MemberID
		}
	}
	if err == nil && id == "" {
		err = fmt.Errorf("key column empty after decoding %s", rec.Row)
	}
	return err
}

package rules

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/topics"
)

// startKafka starts an in-process broker with the rules topics created as
// the catalogue declares them: rules compacted, rules.history delete.
func startKafka(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := t.Context()
	compact, del := "compact", "delete"
	for topic, policy := range map[string]*string{topics.Rules: &compact, topics.RulesHistory: &del} {
		resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": policy}, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("creating %s: %v", topic, err)
		}
	}
	return c.ListenAddrs()
}

func producer(t testing.TB, addrs []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID("rules-publisher-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// startWatcher runs a watcher until the test ends and waits until it is ready.
func startWatcher(t testing.TB, addrs []string) *Watcher {
	t.Helper()
	base, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(base.Close)
	w := NewWatcher(base, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
	select {
	case <-w.Ready():
	case err := <-done:
		t.Fatalf("watcher stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("watcher not ready")
	}
	return w
}

func waitFor(t testing.TB, w *Watcher, name, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := w.WaitFor(ctx, name, version); err != nil {
		t.Fatal(err)
	}
}

// withFilterReason returns the example specs with the reason of the debug
// user rule replaced.
func withFilterReason(specs []TableSpec, reason string) []TableSpec {
	out := make([]TableSpec, len(specs))
	for i, s := range specs {
		if s.Name == "member-filters" {
			rows := make([]Row, len(s.Rows))
			copy(rows, s.Rows)
			cells := append([]Value(nil), rows[0].Cells...)
			cells[len(cells)-1] = Value{V: reason}
			rows[0].Cells = cells
			s.Rows = rows
			s.Meta.Version = ""
		}
		out[i] = s
	}
	return out
}

func TestPublishAndWatch(t *testing.T) {
	addrs := startKafka(t)
	pub := producer(t, addrs)
	w := startWatcher(t, addrs)
	ctx := t.Context()
	specs := loadExamples(t)

	rep, err := Publish(ctx, pub, specs, PublishMeta{Author: "hanako"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Published) != len(specs) || len(rep.Unchanged) != 0 {
		t.Fatalf("first publish: %+v", rep)
	}
	for _, s := range specs {
		waitFor(t, w, s.Name, s.Meta.Version)
	}
	debug := &Facts{Member: Member{IsDebug: true}}
	decide := func() string {
		tb, ok := w.Current().Table("member-filters")
		if !ok {
			t.Fatal("member-filters not live")
		}
		d, _, err := tb.Evaluate(debug)
		if err != nil {
			t.Fatal(err)
		}
		return d.Filter.Reason
	}
	if got := decide(); got != "debug user" {
		t.Fatalf("reason = %q", got)
	}

	// Publishing the same workbook again writes nothing.
	rep, err = Publish(ctx, pub, specs, PublishMeta{Author: "hanako"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Published) != 0 || len(rep.Unchanged) != len(specs) {
		t.Fatalf("republish: %+v", rep)
	}

	// A changed table is live shortly after publishing.
	changed := withFilterReason(specs, "テスト会員")
	start := time.Now()
	rep, err = Publish(ctx, pub, changed, PublishMeta{Author: "taro"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Published) != 1 || rep.Published[0].Name != "member-filters" || rep.Published[0].Op != OpChanged {
		t.Fatalf("changed publish: %+v", rep)
	}
	newVersion := rep.Published[0].To
	waitFor(t, w, "member-filters", newVersion)
	t.Logf("change live after %v", time.Since(start))
	if got := decide(); got != "テスト会員" {
		t.Fatalf("reason after change = %q", got)
	}

	// An invalid workbook publishes nothing and the live rules stay.
	bad := withFilterReason(specs, "again")
	bad[1].Rows[0].Cells[1] = Value{V: "yes"} // is_debug == "yes"
	_, err = Publish(ctx, pub, bad, PublishMeta{})
	if !errors.Is(err, ErrTypeMismatch) {
		t.Fatalf("bad publish: %v", err)
	}
	live, err := List(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if live["member-filters"].Meta.Version != newVersion || live["member-filters"].Meta.Author != "taro" {
		t.Fatalf("live after bad publish: %+v", live["member-filters"].Meta)
	}

	// Diff shows the row that would change.
	diff := Diff(live, withFilterReason(specs, "x"))
	for _, c := range diff {
		if c.Name == "member-filters" {
			if c.Op != OpChanged || len(c.Rows) != 1 || c.Rows[0].Row != 9 {
				t.Errorf("diff = %s", c)
			}
		} else if c.Op != OpUnchanged {
			t.Errorf("diff = %s", c)
		}
	}

	// Rollback restores the first version from history.
	hist, err := History(ctx, pub, "member-filters")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 {
		t.Fatalf("history has %d versions, want 2", len(hist))
	}
	old := specs[1].Meta.Version
	if _, err := Rollback(ctx, pub, "member-filters", old[:12], PublishMeta{Author: "rollback"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "member-filters", old)
	if got := decide(); got != "debug user" {
		t.Fatalf("reason after rollback = %q", got)
	}
}

func TestWatcherIgnoresBadRecords(t *testing.T) {
	addrs := startKafka(t)
	pub := producer(t, addrs)
	w := startWatcher(t, addrs)
	ctx := t.Context()
	specs := loadExamples(t)
	if _, err := Publish(ctx, pub, specs, PublishMeta{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "channels", specs[2].Meta.Version)

	// Records written around Publish: garbage, and a spec that does not
	// compile. Both are ignored; a later good record still applies.
	plain, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	broken := withFilterReason(specs, "x")[1]
	broken.Rows[0].Cells[1] = Value{V: "yes"}
	broken.Meta.Version = broken.ContentHash()
	bb, _ := MarshalSpec(&broken)
	good := withFilterReason(specs, "後で有効")[1]
	good.Meta.Version = good.ContentHash()
	gb, _ := MarshalSpec(&good)
	err = plain.ProduceSync(ctx,
		&kgo.Record{Topic: topics.Rules, Key: []byte("member-filters"), Value: []byte("{not json")},
		&kgo.Record{Topic: topics.Rules, Key: []byte("member-filters"), Value: bb},
		&kgo.Record{Topic: topics.Rules, Key: []byte("channels")}, // tombstone
	).FirstErr()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "channels", "")
	if tb, _ := w.Current().Table("member-filters"); tb.Version() != specs[1].Meta.Version {
		t.Fatalf("bad record replaced the live table: %s", tb.Version())
	}
	if err := plain.ProduceSync(ctx, &kgo.Record{Topic: topics.Rules, Key: []byte("member-filters"), Value: gb}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "member-filters", good.Meta.Version)
	if len(w.Current().Kind(KindChannel)) != 0 || len(w.Current().Kind(KindFilter)) != 1 {
		t.Fatalf("set = %v", w.Current().Versions())
	}
}

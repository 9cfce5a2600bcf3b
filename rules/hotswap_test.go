package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// filterResult is what the test stage emits per input message.
type filterResult struct {
	Reason    string `json:"reason"`
	Version   string `json:"version"`
	Partition int32  `json:"partition"`
	Seq       int    `json:"seq"`
}

// TestHotSwapInGokaStage runs a minimal Goka stage that evaluates the
// filter table of a Watcher for every message, publishes a changed
// workbook while messages flow, and checks that decisions change and that
// no message is lost or duplicated.
func TestHotSwapInGokaStage(t *testing.T) {
	addrs := startKafka(t)
	pub := producer(t, addrs)
	ctx := t.Context()
	specs := loadExamples(t)
	if _, err := Publish(ctx, pub, specs, PublishMeta{Author: "test"}); err != nil {
		t.Fatal(err)
	}
	w := startWatcher(t, addrs) // started after publishing: Ready means loaded
	if _, ok := w.Current().Table("member-filters"); !ok {
		t.Fatal("watcher ready without member-filters")
	}
	oldVersion := specs[1].Meta.Version

	const in, out, group = "hotswap.in", "hotswap.out", "hotswap-filter"
	plain, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(in))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	for _, topic := range []string{in, out} {
		resp, err := kadm.NewClient(plain).CreateTopic(ctx, 2, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("creating %s: %v", topic, err)
		}
	}

	// The stage. Streams start at the oldest offset so that nothing
	// produced before the group joined is skipped.
	cfg := goka.DefaultConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1
	graph := goka.DefineGroup(group,
		goka.Input(in, new(codec.String), func(gctx goka.Context, msg any) {
			var m struct {
				Member
				Seq int `json:"seq"`
			}
			if err := json.Unmarshal([]byte(msg.(string)), &m); err != nil {
				gctx.Fail(err)
			}
			tb, ok := w.Current().Table("member-filters")
			if !ok {
				gctx.Fail(errors.New("no filter table"))
			}
			d, _, err := tb.Evaluate(&Facts{Member: m.Member})
			if err != nil {
				gctx.Fail(err)
			}
			b, _ := json.Marshal(filterResult{Reason: d.Filter.Reason, Version: d.Version, Partition: gctx.Partition(), Seq: m.Seq})
			gctx.Emit(out, gctx.Key(), string(b))
		}),
		goka.Output(out, new(codec.String)),
	)
	proc, err := goka.NewProcessor(addrs, graph,
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(cfg, tmc)),
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(cfg)),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(cfg)),
		goka.WithStorageBuilder(storage.MemoryBuilder()),
	)
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(context.Background())
	procDone := make(chan error, 1)
	go func() { procDone <- proc.Run(pctx) }()
	defer func() {
		stop()
		if err := <-procDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("processor: %v", err)
		}
	}()

	// Collect the stage's output.
	results := make(chan *kgo.Record, 1024)
	outCl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(out),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer outCl.Close()
	cctx, cstop := context.WithCancel(context.Background())
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		for cctx.Err() == nil {
			outCl.PollFetches(cctx).EachRecord(func(r *kgo.Record) { results <- r })
		}
	}()
	defer func() { cstop(); cwg.Wait() }()

	got := map[string]filterResult{}
	var order []string
	collect := func(n int) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for len(order) < n {
			select {
			case r := <-results:
				var res filterResult
				if err := json.Unmarshal(r.Value, &res); err != nil {
					t.Fatal(err)
				}
				key := string(r.Key)
				if _, dup := got[key]; dup {
					t.Fatalf("duplicate output for %s", key)
				}
				got[key] = res
				order = append(order, key)
			case <-timeout:
				t.Fatalf("timed out with %d of %d outputs", len(order), n)
			}
		}
	}
	seq := 0
	produce := func(n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			b, _ := json.Marshal(struct {
				Member
				Seq int `json:"seq"`
			}{Member{MemberID: fmt.Sprint(seq), IsDebug: true}, seq})
			recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "m-%05d", seq), Value: b}
			seq++
		}
		if err := plain.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Error(err)
		}
	}

	// Phase 1: old rules.
	const n1, n2, n3 = 500, 1500, 200
	produce(n1)
	collect(n1)
	// Phase 2: publish a change while messages flow.
	changed := withFilterReason(specs, "テスト会員")
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		for range 15 {
			produce(n2 / 15)
		}
	}()
	rep, err := Publish(ctx, pub, changed, PublishMeta{Author: "test"})
	if err != nil {
		t.Fatal(err)
	}
	newVersion := rep.Published[0].To
	waitFor(t, w, "member-filters", newVersion)
	pwg.Wait()
	// Phase 3: produced after the new version is live.
	produce(n3)
	collect(n1 + n2 + n3)

	// Every message once; old decisions, then new ones, per partition.
	if len(got) != n1+n2+n3 {
		t.Fatalf("%d distinct outputs, want %d", len(got), n1+n2+n3)
	}
	counts := map[string]int{}
	lastSeen := map[int32]string{}
	bySeq := make([]filterResult, n1+n2+n3)
	for _, res := range got {
		bySeq[res.Seq] = res
	}
	for s, res := range bySeq {
		want := map[string]string{oldVersion: "debug user", newVersion: "テスト会員"}[res.Version]
		if want == "" || res.Reason != want {
			t.Fatalf("seq %d: version %.12s reason %q", s, res.Version, res.Reason)
		}
		counts[res.Version]++
		if s < n1 && res.Version != oldVersion {
			t.Errorf("seq %d before publish decided by the new version", s)
		}
		if s >= n1+n2 && res.Version != newVersion {
			t.Errorf("seq %d after swap decided by the old version", s)
		}
		if lastSeen[res.Partition] == newVersion && res.Version == oldVersion {
			t.Errorf("seq %d: partition %d went back to the old version", s, res.Partition)
		}
		lastSeen[res.Partition] = res.Version
	}
	t.Logf("decisions: %d by old version, %d by new version", counts[oldVersion], counts[newVersion])
}

package stage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

const (
	agreeKeys       = 3000
	agreePartitions = 16
)

func agreeKey(i int) string { return fmt.Sprintf("M%07d", i*7919) }

// TestProducersAndGokaAgreeOnPartitions proves the co-partitioning contract:
// kcat (librdkafka's murmur2_random), franz-go's default partitioner, a Goka
// emitter and a Goka processor's table writes all put a key on
// topics.Partition(key).
func TestProducersAndGokaAgreeOnPartitions(t *testing.T) {
	b := testkit.Broker(t, "")
	addr := b.Addr()
	ctx := testkit.Context(t)
	for _, tp := range []string{"agree-kcat", "agree-kgo", "agree-goka"} {
		testkit.CreateTopic(t, addr, tp, agreePartitions, nil)
	}

	var lines strings.Builder
	for i := range agreeKeys {
		fmt.Fprintf(&lines, "%s:v\n", agreeKey(i))
	}
	testkit.Kcat(t, lines.String(), "-b", addr, "-P", "-t", "agree-kcat", "-K:", "-X", "partitioner=murmur2_random")

	cl := testkit.Client(t, addr)
	for i := range agreeKeys {
		cl.Produce(ctx, &kgo.Record{Topic: "agree-kgo", Key: []byte(agreeKey(i)), Value: []byte("v")}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	env := Env{Brokers: []string{addr}, Catalogue: topics.New(agreePartitions, 1)}
	em, err := goka.NewEmitter(env.Brokers, "agree-goka", new(codec.String), env.EmitterOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range agreeKeys {
		if _, err := em.Emit(agreeKey(i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if err := em.Finish(); err != nil {
		t.Fatal(err)
	}

	// A processor consuming agree-kgo writes its table through Goka's producer.
	group := goka.Group("agree")
	var mu sync.Mutex
	var wrong []string
	g := goka.DefineGroup(group,
		goka.Input("agree-kgo", new(codec.String), func(gctx goka.Context, _ any) {
			if want := topics.Partition([]byte(gctx.Key()), agreePartitions); gctx.Partition() != want {
				mu.Lock()
				wrong = append(wrong, fmt.Sprintf("%s consumed on %d, want %d", gctx.Key(), gctx.Partition(), want))
				mu.Unlock()
			}
			gctx.SetValue("seen")
		}),
		goka.Persist(new(codec.String)),
	)
	p, err := goka.NewProcessor(env.Brokers, g, env.ProcessorOptions(goka.WithStorageBuilder(storage.MemoryBuilder()))...)
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
	}()

	tableTopic := string(goka.GroupTable(group))
	for _, tp := range []string{"agree-kcat", "agree-kgo", "agree-goka", tableTopic} {
		got := consumePartitions(t, addr, tp, agreeKeys)
		for k, p := range got {
			if want := topics.Partition([]byte(k), agreePartitions); p != want {
				t.Errorf("%s: key %s on partition %d, want %d", tp, k, p, want)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(wrong) > 0 {
		t.Errorf("%d keys consumed on the wrong partition, e.g. %s", len(wrong), wrong[0])
	}
}

// consumePartitions reads n distinct keys from topic and returns where each was.
func consumePartitions(t *testing.T, addr, topic string, n int) map[string]int32 {
	t.Helper()
	cl := testkit.Client(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]int32{}
	ctx, cancel := context.WithTimeout(testkit.Context(t), 90*time.Second)
	defer cancel()
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: read %d of %d keys before timeout", topic, len(got), n)
		}
		fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)] = r.Partition })
	}
	return got
}

package state

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The processor under test keeps each member's favourites ("fav=a,b") in
// its group table, indexed by item: the audience stage's shape.
const (
	favGroup      goka.Group  = "favs"
	favInput      goka.Stream = "fav-updates"
	numPartitions             = 4
)

var favTable = goka.GroupTable(favGroup)

func favGraph() *goka.GroupGraph {
	return goka.DefineGroup(favGroup,
		goka.Input(favInput, new(codec.String), func(ctx goka.Context, msg any) {
			if v := msg.(string); v != "" {
				ctx.SetValue(v)
				return
			}
			ctx.Delete()
		}),
		goka.Persist(new(codec.String)),
	)
}

func favOptions(t testing.TB) Options {
	return Options{Indexes: map[string]Indexer{"fav": favIndexer}, Logger: testLogger(t)}
}

// favWorkload is a deterministic series of updates and the table it leaves.
type favWorkload struct {
	updates []kv // in produce order; value "" deletes
	final   map[string]string
	items   []string
}

type kv struct{ key, value string }

func newFavWorkload(members, updates int) favWorkload {
	rng := rand.New(rand.NewPCG(7, 11))
	w := favWorkload{final: map[string]string{}}
	for i := range 12 {
		w.items = append(w.items, fmt.Sprintf("item-%02d", i))
	}
	for range updates {
		k := fmt.Sprintf("member-%04d", rng.IntN(members))
		v := ""
		if rng.IntN(8) != 0 {
			v = fmt.Sprintf("fav=%s,%s", w.items[rng.IntN(len(w.items))], w.items[rng.IntN(len(w.items))])
		}
		w.updates = append(w.updates, kv{k, v})
		if v == "" {
			delete(w.final, k)
		} else {
			w.final[k] = v
		}
	}
	return w
}

// gokaPartition is the partition goka's default hasher gives key.
func gokaPartition(key string, partitions int) int32 {
	h := goka.DefaultHasher()()
	_, _ = h.Write([]byte(key)) // a hash.Hash never returns an error
	p := int32(h.Sum32())
	if p < 0 {
		p = -p
	}
	return p % int32(partitions)
}

// cluster is an in-process Kafka (kfake) with a franz-go client.
type cluster struct {
	brokers []string
	client  *kgo.Client
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(numPartitions))
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return connectCluster(t, c.ListenAddrs())
}

func connectCluster(t testing.TB, brokers []string) *cluster {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatalf("creating kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return &cluster{brokers: brokers, client: cl}
}

func (c *cluster) createTopic(t testing.TB, topic string, partitions int32) {
	t.Helper()
	resp, err := kadm.NewClient(c.client).CreateTopic(context.Background(), partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
}

// produce writes updates partitioned as goka partitions them, so the
// input is co-partitioned with the group table.
func (c *cluster) produce(t testing.TB, topic string, updates []kv) {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(updates))
	for _, u := range updates {
		recs = append(recs, &kgo.Record{
			Topic: topic, Key: []byte(u.key), Value: []byte(u.value),
			Partition: gokaPartition(u.key, numPartitions),
		})
	}
	if err := c.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic, err)
	}
}

// changelog reads a table topic to its end: per partition, the last value
// of every key (tombstones remove it) and the last offset.
func (c *cluster) changelog(t testing.TB, topic string) (rows []map[string]string, last []int64) {
	t.Helper()
	adm := kadm.NewClient(c.client)
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	rows = make([]map[string]string, numPartitions)
	last = make([]int64, numPartitions)
	offsets := map[int32]kgo.Offset{}
	for p := range int32(numPartitions) {
		rows[p] = map[string]string{}
		end, ok := ends.Lookup(topic, p)
		if !ok {
			t.Fatalf("no end offset for %s/%d", topic, p)
		}
		last[p] = end.Offset - 1
		if end.Offset > 0 {
			offsets[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(offsets) == 0 {
		return rows, last
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := map[int32]bool{}
	for len(done) < len(offsets) {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset > last[r.Partition] {
				return
			}
			if r.Value == nil {
				delete(rows[r.Partition], string(r.Key))
			} else {
				rows[r.Partition][string(r.Key)] = string(r.Value)
			}
			if r.Offset == last[r.Partition] {
				done[r.Partition] = true
			}
		})
	}
	return rows, last
}

// saramaConfig is goka's default config with what kfake and these tests
// need; see newProcessor.
func saramaConfig() *sarama.Config {
	cfg := goka.DefaultConfig()
	// Tests produce right after the processor is ready; start new groups
	// at the beginning of their inputs so nothing is skipped.
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	// A killed member keeps its partitions until its session times out;
	// the crash test waits for that, so keep it at Kafka's minimum.
	cfg.Consumer.Group.Session.Timeout = 6 * time.Second
	cfg.Consumer.Group.Heartbeat.Interval = time.Second
	return cfg
}

// processor is a running goka processor of favGraph.
type processor struct {
	*goka.Processor
	reg  *Registry
	stop func() error
}

// newProcessor starts favGraph with the Pebble storage under root and
// waits until its tables are recovered.
func newProcessor(t testing.TB, brokers []string, root string) *processor {
	t.Helper()
	reg := NewRegistry()
	builder, err := Builder(root, favOptions(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := saramaConfig()
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1 // goka defaults to 2; kfake has one broker
	tmc.Stream.Replication = 1
	p, err := goka.NewProcessor(brokers, favGraph(),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(cfg, tmc)),
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(cfg)),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(cfg)),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(cfg)),
		goka.WithStorageBuilder(builder),
		goka.WithLogger(log.New(testWriter(t), "goka: ", log.Lmicroseconds)),
	)
	if err != nil {
		t.Fatalf("creating processor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("processor: %v", err)
		}
	})
	waitFor(t, "processor recovered", func() bool {
		select {
		case err := <-done:
			t.Fatalf("processor stopped: %v", err)
		default:
		}
		return p.Recovered()
	})
	return &processor{Processor: p, reg: reg, stop: stop}
}

// waitFor polls cond until it holds. The deadline only bounds a hang; no
// test asserts on how long anything takes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitProcessed waits until the processor's table holds exactly want.
func (p *processor) waitProcessed(t testing.TB, w favWorkload) {
	t.Helper()
	waitFor(t, "all updates processed", func() bool {
		for k := range w.final {
			if v, err := p.Get(k); err != nil || v != w.final[k] {
				return false
			}
		}
		return true
	})
}

// indexAnswers asks every partition's store who favourited each item.
func indexAnswers(t testing.TB, reg *Registry, items []string) [numPartitions]map[string][]string {
	t.Helper()
	var out [numPartitions]map[string][]string
	for p := range int32(numPartitions) {
		st := reg.Store(string(favTable), p)
		if st == nil {
			t.Fatalf("no store registered for %s/%d", favTable, p)
		}
		out[p] = map[string][]string{}
		for _, item := range items {
			out[p][item] = lookup(t, st, "fav", item)
		}
	}
	return out
}

// TestGokaPartitionLocalScans: in a 4-partition processor, each partition's
// index answers exactly for the members goka assigned to that partition,
// and together they answer for everyone.
func TestGokaPartitionLocalScans(t *testing.T) {
	k := newCluster(t)
	k.createTopic(t, string(favInput), numPartitions)
	w := newFavWorkload(400, 1500)
	p := newProcessor(t, k.brokers, t.TempDir())
	k.produce(t, string(favInput), w.updates)
	p.waitProcessed(t, w)

	answers := indexAnswers(t, p.reg, w.items)
	for _, item := range w.items {
		var want, all []string
		for k, v := range w.final {
			if slices.Contains(field([]byte(v), "fav"), item) {
				want = append(want, k)
			}
		}
		for part := range int32(numPartitions) {
			for _, member := range answers[part][item] {
				if got := gokaPartition(member, numPartitions); got != part {
					t.Errorf("partition %d's index has %s, which goka assigns to partition %d", part, member, got)
				}
			}
			all = append(all, answers[part][item]...)
		}
		slices.Sort(want)
		slices.Sort(all)
		if !slices.Equal(all, want) {
			t.Errorf("%s: partitions together answer %d members, want %d", item, len(all), len(want))
		}
	}
	for part := range int32(numPartitions) {
		checkIndexes(t, p.reg.Store(string(favTable), part))
	}
}

// TestGokaRecoveryRebuildsIndexes: wipe the local state, restart, and the
// indexes recovered from the changelog answer exactly as before.
func TestGokaRecoveryRebuildsIndexes(t *testing.T) {
	k := newCluster(t)
	k.createTopic(t, string(favInput), numPartitions)
	w := newFavWorkload(300, 1000)
	root := t.TempDir()

	p := newProcessor(t, k.brokers, root)
	k.produce(t, string(favInput), w.updates)
	p.waitProcessed(t, w)
	before := indexAnswers(t, p.reg, w.items)
	if err := p.stop(); err != nil {
		t.Fatalf("stopping processor: %v", err)
	}
	if err := clearDir(vfs.Default, root); err != nil {
		t.Fatal(err)
	}

	p = newProcessor(t, k.brokers, root)
	after := indexAnswers(t, p.reg, w.items)
	for part := range numPartitions {
		st := p.reg.Store(string(favTable), int32(part))
		if fmt.Sprint(after[part]) != fmt.Sprint(before[part]) {
			t.Errorf("partition %d: answers after recovery differ:\n before %v\n after  %v", part, before[part], after[part])
		}
		if s := st.Stats(); s.Rebuilds != 1 || s.Sets == 0 {
			t.Errorf("partition %d: stats %+v; want one index build after a recovery with writes", part, s)
		}
		checkIndexes(t, st)
	}
}

// testWriter forwards to the test's output until the test ends; goka's
// goroutines may still log while shutting down.
func testWriter(t testing.TB) io.Writer {
	w := &guardedWriter{w: t.Output()}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.w = io.Discard
	})
	return w
}

type guardedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (g *guardedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.w.Write(p)
}

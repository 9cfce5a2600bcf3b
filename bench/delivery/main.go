// Command delivery measures RTM from a change row to delivery.results on
// the embedded broker, every stage in one process, the real channel
// adapters talking to the local protocol sinks:
//
//	go run ./bench/delivery -scenario throughput -members 1000000 -favouriters 100000
//	go run ./bench/delivery -scenario latency -events 1000
//
// throughput: one price drop on an item favourited by -favouriters of
// -members; makespan from the cdc.items record to the last
// delivery.results record, and deliveries/s.
// latency: -events price drops, one at a time, each on an item favourited by
// one member; the time from each cdc.items record to its delivery.results
// record, p50 and p99.
//
// Members are reachable on LINE only and live in a time zone where it is
// noon, so the example rules send at once. The adapters' rate limits are
// lifted (the sinks have none); in production LINE's default is 2,000/s.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtm-project/rtm/connectors/channels"
	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/internal/benchkit"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/pipeline"
	"github.com/rtm-project/rtm/processors/render"
	"github.com/rtm-project/rtm/processors/send"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/timing"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	scenario := flag.String("scenario", "throughput", "throughput or latency")
	members := flag.Int("members", 1_000_000, "members (throughput)")
	favs := flag.Int("favouriters", 100_000, "favouriters of the dropped item (throughput)")
	events := flag.Int("events", 1000, "single-member events (latency)")
	parts := flag.Int("partitions", 16, "partitions")
	workbook := flag.String("rules", "rules/examples/rtm-rules.xlsx", "rules workbook")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured phase here")
	flag.DurationVar(&sinkLatency, "sink-latency", 0, "how long the LINE sink takes to answer each push (a real API's round trip)")
	flag.IntVar(&sendConcurrency, "send-concurrency", 0, "deliveries of one partition the send stage has in flight at once (0: its default)")
	flag.Int64Var(&cacheBytes, "cache-bytes", stage.DefaultBlockCacheSize, "the process's Pebble block cache (state_cache_bytes), shared by every stage")
	flag.Parse()
	if err := stage.SetBlockCacheSize(cacheBytes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if *cpuprofile != "" {
		profilePath = *cpuprofile
	}
	if err := run(*scenario, *members, *favs, *events, int32(*parts), *workbook); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// profilePath, when set, receives a CPU profile of the measured phase.
var profilePath string

// sinkLatency, sendConcurrency and cacheBytes are -sink-latency,
// -send-concurrency and -cache-bytes.
var (
	sinkLatency     time.Duration
	sendConcurrency int
	cacheBytes      int64
)

func run(scenario string, nMembers, nFavs, nEvents int, parts int32, workbook string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	be, err := benchkit.Start(ctx, "delivery", parts, kgo.MaxBufferedRecords(100_000), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer be.Close()
	brokers, cat, cl, log, dir := be.Brokers, be.Catalogue, be.Client, be.Log, be.Dir
	set, err := rules.LoadSet(workbook)
	if err != nil {
		return err
	}
	sk, err := sinks.Start(ctx, sinks.Config{SMTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Keep: 10, Latency: sinkLatency, Logger: log})
	if err != nil {
		return err
	}
	defer sk.Close()
	lineCfg := channels.LineDefaults()
	lineCfg.BaseURL, lineCfg.ChannelAccessToken = sk.HTTP.URL(), sk.Config().LineToken
	lineCfg.MaxConnections = int(parts) * cmp.Or(sendConcurrency, send.DefaultConcurrency)
	line, err := channels.NewLineAdapter(lineCfg, log)
	if err != nil {
		return err
	}
	dl, err := channels.NewDeliverer(line, channels.DelivererConfig{RatePerSecond: -1})
	if err != nil {
		return err
	}
	inappClient, err := channels.NewInAppProducer(kafka.Config{Brokers: brokers})
	if err != nil {
		return err
	}
	defer inappClient.Close()
	inapp, err := channels.NewInAppAdapter(channels.InAppDefaults(), inappClient)
	if err != nil {
		return err
	}
	dlInApp, err := channels.NewDeliverer(inapp, channels.DelivererConfig{RatePerSecond: -1})
	if err != nil {
		return err
	}
	router, err := channels.NewRouter(dl, dlInApp)
	if err != nil {
		return err
	}

	tz := simulator.NoonZone()
	member := func(i int) string { return fmt.Sprintf("M%08d", i) }
	version := int64(0)
	produceCDC := func(table, key string, k map[string]any, op string, row any) {
		version++
		rb, _ := json.Marshal(row)
		v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: op, Version: version, Key: k, Row: rb, TS: time.Now().UTC()})
		if err != nil {
			panic(err)
		}
		cl.Produce(ctx, &kgo.Record{Topic: "cdc." + table, Key: []byte(key), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				panic(err)
			}
		})
	}
	addMember := func(i int, items ...string) {
		m := member(i)
		produceCDC("members", m, map[string]any{"member_id": m}, "i", topics.MemberRow{MemberID: m, LineUserID: "U" + m,
			LineOptIn: true, Status: "active", Timezone: tz})
		for _, it := range items {
			produceCDC("favorites", m, map[string]any{"member_id": m, "item_id": it}, "i", topics.FavoriteRow{MemberID: m, ItemID: it})
		}
	}
	item := func(id string, op string, price float64) {
		produceCDC("items", id, map[string]any{"item_id": id}, op, topics.ItemRow{ItemID: id, Brand: "B", Category: "家電", Price: price, Stock: 5})
	}

	n := nMembers
	if scenario == "latency" {
		n = nEvents
	}
	t0 := time.Now()
	for i := range n {
		switch {
		case scenario == "latency":
			addMember(i, fmt.Sprintf("L%06d", i))
			item(fmt.Sprintf("L%06d", i), "i", 10000)
		case i < nFavs:
			addMember(i, "I-HOT")
		default:
			addMember(i)
		}
	}
	if scenario != "latency" {
		item("I-HOT", "i", 10000)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	fmt.Printf("loaded %d members in %v\n", n, time.Since(t0).Round(time.Millisecond))

	keys, err := tracking.NewKeyring([]byte("bench-secret-0123456789abcdef-0123"))
	if err != nil {
		return err
	}
	pc := pipeline.Config{Brokers: brokers, Catalogue: cat, DataDir: dir, Rules: stage.Fixed{Set: set}, Log: log,
		Detect: detect.Config{TickInterval: time.Second}, Timing: timing.Config{TickInterval: 200 * time.Millisecond},
		Render:    render.Config{TrackingBase: "http://127.0.0.1:8081", Keys: keys, MailFrom: "shop@example.jp"},
		Send:      send.Config{Concurrency: sendConcurrency},
		Deliverer: router}
	t1 := time.Now()
	var built []*pipeline.Stage
	// Stop the stages before the deferred be.Close removes their
	// directories (deferred calls run last-in first-out).
	var running sync.WaitGroup
	defer func() { cancel(); running.Wait() }()
	for _, name := range pipeline.Stages() {
		st, err := pipeline.Build(name, pc)
		if err != nil {
			return err
		}
		running.Go(func() {
			if err := st.Run(ctx); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
				os.Exit(1)
			}
		})
		built = append(built, st)
		if name == "detect" { // member-state and detect have read everything
			for _, g := range []string{"member-state", "detect"} {
				if err := be.WaitLag(ctx, g); err != nil {
					return err
				}
			}
			fmt.Printf("member-state and detect caught up in %v\n", time.Since(t1).Round(time.Millisecond))
		}
	}
	t2 := time.Now()
	for _, st := range built {
		if err := st.WaitReady(ctx); err != nil {
			return err
		}
	}
	fmt.Printf("every stage recovered its tables and joins in %v\n", time.Since(t2).Round(time.Millisecond))
	results := newCounter(ctx, brokers, topics.DeliveryResults)

	stopProfile, err := benchkit.CPUProfile(profilePath)
	if err != nil {
		return err
	}
	defer stopProfile()
	switch scenario {
	case "latency":
		var lat []time.Duration
		for i := range nEvents {
			start := time.Now()
			item(fmt.Sprintf("L%06d", i), "u", 6000)
			if err := cl.Flush(ctx); err != nil {
				return err
			}
			results.waitFor(ctx, i+1)
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		fmt.Printf("\nlatency, cdc.items record → its delivery.results record, %d events one at a time:\n", nEvents)
		fmt.Printf("  p50 %v  p90 %v  p99 %v  max %v\n", lat[len(lat)/2].Round(time.Millisecond/10), lat[len(lat)*9/10].Round(time.Millisecond/10),
			lat[len(lat)*99/100].Round(time.Millisecond/10), lat[len(lat)-1].Round(time.Millisecond/10))
	default:
		start, phase := time.Now(), benchkit.StartPhase()
		item("I-HOT", "u", 6000)
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		last := results.waitFor(ctx, nFavs)
		d := last.Sub(start)
		cpu, hits, misses := phase.Cost()
		fmt.Printf("\n%d favouriters of %d members, %d partitions: price drop → last delivery.results %v, %.0f deliveries/s\n",
			nFavs, nMembers, parts, d.Round(time.Millisecond), float64(nFavs)/d.Seconds())
		fmt.Printf("%d sent (LINE sink accepted %d requests, answering each after %v; the rest in-app); send concurrency %d per partition\n",
			results.sent.Load(), sk.HTTP.Line.Requests(), sinkLatency, cmp.Or(sendConcurrency, send.DefaultConcurrency))
		fmt.Printf("CPU (whole process: stages, broker, sinks): %.1f core-s, %.3f ms per delivery\n",
			cpu.Seconds(), perDelivery(cpu, nFavs))
		stopProfile()
		fmt.Printf("block cache (%d MiB) during the run: %d hits, %d misses (%.1f%% hits)\n",
			cacheBytes>>20, hits, misses, 100*float64(hits)/float64(max(hits+misses, 1)))
		size, err := meanSize(ctx, brokers, topics.OffersReady, 1000)
		if err != nil {
			return err
		}
		c, cCPU, err := runCeiling(ctx, be, parts, nFavs, size, member)
		if err != nil {
			return err
		}
		fmt.Printf("ceiling (same hops, groups and partitions, pass-through processors, %d-byte messages): %v, %.0f deliveries/s, %.3f ms CPU per delivery\n",
			size, c.Round(time.Millisecond), float64(nFavs)/c.Seconds(), perDelivery(cCPU, nFavs))
		fmt.Printf("RTM / ceiling: %.2f (by CPU per delivery: %.2f)\n", c.Seconds()/d.Seconds(), cCPU.Seconds()/cpu.Seconds())
		printStateSizes(ctx, brokers, built, nMembers)
	}
	fmt.Printf("peak RSS (VmHWM, whole process incl. broker): %s\n", benchkit.PeakRSS())
	return nil
}

// perDelivery is CPU time per delivery in milliseconds.
func perDelivery(cpu time.Duration, n int) float64 { return cpu.Seconds() * 1000 / float64(n) }

// kgoRecord is a record for topic.
func kgoRecord(topic, key string, value []byte) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: value}
}

// meanSize is the mean value size of the first n records of topic.
func meanSize(ctx context.Context, brokers []string, topic string, n int) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	total, seen := 0, 0
	for seen < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if seen < n {
				total += len(r.Value)
				seen++
			}
		})
	}
	if seen == 0 {
		return 0, fmt.Errorf("no records in %s", topic)
	}
	return total / seen, nil
}

type counter struct {
	n, sent atomic.Int64
	last    atomic.Int64
}

func newCounter(ctx context.Context, brokers []string, topic string) *counter {
	c := &counter{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		panic(err)
	}
	sentStatus := []byte(`"status":"sent"`)
	go func() {
		defer cl.Close()
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				c.last.Store(r.Timestamp.UnixNano())
				if bytes.Contains(r.Value, sentStatus) { // no string copy of each value
					c.sent.Add(1)
				}
				c.n.Add(1)
			})
		}
	}()
	return c
}

func (c *counter) waitFor(ctx context.Context, n int) time.Time {
	report := time.Now().Add(10 * time.Second)
	for c.n.Load() < int64(n) && ctx.Err() == nil {
		time.Sleep(200 * time.Microsecond)
		if time.Now().After(report) {
			fmt.Fprintf(os.Stderr, "waiting: %d of %d delivery results\n", c.n.Load(), n)
			report = time.Now().Add(10 * time.Second)
		}
	}
	return time.Unix(0, c.last.Load())
}

// printStateSizes reports each stage's local tables as Pebble accounts
// for them after the run — files on disk and memtables not yet flushed —
// per member, and the mean encoded row of the member and consent tables:
// the capacity model's inputs.
func printStateSizes(ctx context.Context, brokers []string, built []*pipeline.Stage, members int) {
	fmt.Printf("local state after the run, %d members (Pebble: sstables + memtables):\n", members)
	for _, st := range built {
		var disk, mem uint64
		for _, s := range st.Env.Registry.Stores() {
			if m := s.PebbleMetrics(); m != nil {
				disk += m.DiskSpaceUsage()
				mem += m.MemTable.Size
			}
		}
		if disk+mem > 0 {
			fmt.Printf("  %-14s %8.1f MiB on disk + %7.1f MiB memtables  %5.0f B/member\n", st.Env.Group,
				float64(disk)/(1<<20), float64(mem)/(1<<20), float64(disk+mem)/float64(members))
		}
	}
	for _, t := range []string{topics.TableOf(topics.GroupMemberState), topics.MemberConsent} {
		if n, err := meanSize(ctx, brokers, t, 1000); err == nil {
			fmt.Printf("  mean encoded row of %s: %d B\n", t, n)
		}
	}
}

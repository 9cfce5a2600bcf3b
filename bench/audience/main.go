// Command audience measures the Stages I scenario on the embedded broker: a
// price drop on an item favourited by many members, from the cdc.items
// record to the last offers.filtered record, through detect, campaign,
// audience (partition-local index lookups on every partition) and filter.
// In the same run it measures the naive design — one list of favouriters
// held under the item key and expanded in one partition — through the same
// filter stage, and reports the ratio.
//
//	go run ./bench/audience -members 1000000 -favouriters 100000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/benchkit"
	"github.com/rtm-project/rtm/processors/audience"
	"github.com/rtm-project/rtm/processors/campaign"
	"github.com/rtm-project/rtm/processors/detect"
	"github.com/rtm-project/rtm/processors/filter"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/processors/memberstate"
	"github.com/rtm-project/rtm/processors/stage"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/topics"
)

func main() {
	members := flag.Int("members", 1_000_000, "members")
	favs := flag.Int("favouriters", 100_000, "members who favourited the dropped item")
	parts := flag.Int("partitions", 16, "partitions")
	workbook := flag.String("rules", "rules/examples/rtm-rules.xlsx", "rules workbook")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the measured phase here")
	allocs := flag.String("allocprofile", "", "write heap profiles before (path.base) and after the measured phase here")
	flag.Parse()
	if err := run(*members, *favs, int32(*parts), *workbook, *profile, *allocs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const hotItem = "I-HOT"

func run(nMembers, nFavs int, parts int32, workbook, cpuprofile, allocprofile string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	be, err := benchkit.Start(ctx, "audience", parts, kgo.ProducerBatchMaxBytes(16<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer be.Close()
	brokers, cat, cl, adm, log, dir := be.Brokers, be.Catalogue, be.Client, be.Admin, be.Log, be.Dir
	set, err := rules.LoadSet(workbook)
	if err != nil {
		return err
	}
	rs := stage.Fixed{Set: set}

	// Members: 1% debug, 2% withdrawn, 5% opted out of everything (all
	// excluded by the example filter rules); the first nFavs favourite the
	// hot item.
	t0 := time.Now()
	expected := 0
	for i := range nMembers {
		m := fmt.Sprintf("M%08d", i)
		row := topics.MemberRow{MemberID: m, Email: m + "@example.jp", MailOptIn: true, Status: "active", Timezone: "Asia/Tokyo"}
		switch {
		case i%100 == 1:
			row.IsDebug = true
		case i%50 == 2:
			row.Status = "withdrawn"
		case i%20 == 3:
			row.MailOptIn = false
		}
		produceCDC(ctx, cl, "members", m, map[string]any{"member_id": m}, int64(2*i+1), row)
		if i < nFavs {
			produceCDC(ctx, cl, "favorites", m, map[string]any{"member_id": m, "item_id": hotItem}, int64(2*i+2),
				topics.FavoriteRow{MemberID: m, ItemID: hotItem})
			if row.Status != "withdrawn" {
				expected++ // the naive list holds every favouriter; filter drops the rest
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	fmt.Printf("loaded %d members, %d favouriters in %v\n", nMembers, nFavs, time.Since(t0).Round(time.Millisecond))
	passing := 0
	for i := range nFavs {
		if !(i%100 == 1 || i%50 == 2 || i%20 == 3) {
			passing++
		}
	}

	fmt.Printf("memory after loading: %s\n", memory(nil))
	var regs []*state.Registry
	env := func(group string, idx map[string]state.Indexer, table string) stage.Env {
		e, err := stage.NewEnv(stage.EnvConfig{Kafka: kafka.Config{Brokers: brokers}, Catalogue: cat, DataDir: dir, Group: group,
			Indexes: idx, IndexedTable: table, IndexOnly: group == audience.Group && audience.IndexOnly, Log: log})
		if err != nil {
			panic(err)
		}
		regs = append(regs, e.Registry)
		return e
	}
	start := func(name string, p *goka.Processor) {
		go func() {
			if err := p.Run(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
				os.Exit(1)
			}
		}()
	}

	t1 := time.Now()
	ms, err := memberstate.New(env(memberstate.Group, nil, ""), memberstate.Config{})
	if err != nil {
		return err
	}
	start("member-state", ms)
	if err := be.WaitLag(ctx, memberstate.Group); err != nil {
		return err
	}
	fmt.Printf("member-state built %d profiles in %v\n", nMembers, time.Since(t1).Round(time.Millisecond))
	fmt.Printf("memory: %s\n", memory(regs))

	t2 := time.Now()
	det, err := detect.New(env(detect.Group, detect.Indexes(), topics.TableOf(detect.Group)), detect.Config{})
	if err != nil {
		return err
	}
	go func() {
		if err := det.Run(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "detect: %v\n", err)
			os.Exit(1)
		}
	}()
	camp, err := campaign.New(env(campaign.Group, nil, ""), rs)
	if err != nil {
		return err
	}
	start("campaign", camp)
	aud, err := audience.New(env(audience.Group, audience.Indexes(), string(member.Table)))
	if err != nil {
		return err
	}
	start("audience", aud)
	filt, err := filter.New(env(filter.Group, nil, ""), rs)
	if err != nil {
		return err
	}
	start("filter", filt)
	if _, err := adm.CreateTopic(ctx, parts, 1, nil, naiveTopic); err != nil {
		return err
	}
	naive, err := newNaive(env("naive-audience", nil, ""), nFavs)
	if err != nil {
		return err
	}
	start("naive-audience", naive)
	for _, p := range []*goka.Processor{camp, aud, filt, naive} {
		if err := p.WaitForReadyContext(ctx); err != nil {
			return err
		}
	}
	fmt.Printf("audience and filter restored member-state-table (%d records each) in %v\n", nMembers, time.Since(t2).Round(time.Millisecond))
	fmt.Printf("memory: %s\n", memory(regs))

	// Item first seen (new_item, no campaign), then the measured drop.
	produceCDC(ctx, cl, "items", hotItem, map[string]any{"item_id": hotItem}, int64(2*nMembers+10),
		topics.ItemRow{ItemID: hotItem, Brand: "B", Category: "家電", Price: 10000, Stock: 5})
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)

	counter := newCounter(ctx, brokers)
	stopAllocs, err := benchkit.AllocProfile(allocprofile)
	if err != nil {
		return err
	}
	stopProfile, err := benchkit.CPUProfile(cpuprofile)
	if err != nil {
		return err
	}
	fmt.Printf("stores at the drop: %s\n", compactions(regs))
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	tDrop, pDrop := time.Now(), benchkit.StartPhase()
	produceCDC(ctx, cl, "items", hotItem, map[string]any{"item_id": hotItem}, int64(2*nMembers+11),
		topics.ItemRow{ItemID: hotItem, Brand: "B", Category: "家電", Price: 6000, Stock: 5})
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	last := counter.waitFor(ctx, "price-drop-big", passing)
	local, costDrop := last.Sub(tDrop), cost(pDrop)
	fmt.Printf("first offers.filtered %v after the cdc.items record\n", time.Unix(0, counter.first["price-drop-big"].Load()).Sub(tDrop).Round(time.Millisecond))

	// The same audience request fed to the audience stage directly (one
	// copy per partition, as campaign emits it), so both designs are timed
	// from the request.
	tDirect, pDirect := time.Now(), benchkit.StartPhase()
	if err := localRequest(ctx, cl, parts); err != nil {
		return err
	}
	lastDirect := counter.waitFor(ctx, "local-direct", passing)
	direct, costDirect := lastDirect.Sub(tDirect), cost(pDirect)
	fmt.Printf("first offers.filtered %v after the request\n", time.Unix(0, counter.first["local-direct"].Load()).Sub(tDirect).Round(time.Millisecond))

	// Naive: the same audience expanded from one list in one partition.
	tNaive, pNaive := time.Now(), benchkit.StartPhase()
	if err := naiveRequest(ctx, cl, nFavs); err != nil {
		return err
	}
	lastNaive := counter.waitFor(ctx, "naive", passing)
	naiveDur, costNaive := lastNaive.Sub(tNaive), cost(pNaive)
	runtime.ReadMemStats(&ms1)
	stopProfile()
	if err := stopAllocs(); err != nil {
		return err
	}
	_ = expected

	fmt.Println()
	fmt.Printf("scenario: %d members, %d favouriters of %s, %d partitions, %d offers pass the filter rules\n", nMembers, nFavs, hotItem, parts, passing)
	fmt.Printf("%-52s %12s %14s  %s\n", "design (measured from)", "makespan", "filtered/s", "CPU (whole process); block cache")
	fmt.Printf("%-52s %12v %14.0f  %s\n", "RTM, cdc.items record → last offers.filtered", local.Round(time.Millisecond), float64(passing)/local.Seconds(), costDrop)
	fmt.Printf("%-52s %12v %14.0f  %s\n", "RTM partition-local index, request → last filtered", direct.Round(time.Millisecond), float64(passing)/direct.Seconds(), costDirect)
	fmt.Printf("%-52s %12v %14.0f  %s\n", "naive one list in one partition, request → last", naiveDur.Round(time.Millisecond), float64(passing)/naiveDur.Seconds(), costNaive)
	fmt.Printf("ratio naive/local (from the request): %.2fx\n", naiveDur.Seconds()/direct.Seconds())
	fmt.Printf("peak RSS (VmHWM, whole process incl. broker): %s\n", benchkit.PeakRSS())
	fmt.Printf("heap allocated during the measured phase: %d MiB\n", (ms1.TotalAlloc-ms0.TotalAlloc)>>20)
	fmt.Printf("memory at the end: %s\n", memory(regs))
	return nil
}

// cost describes what the run p measured cost.
func cost(p benchkit.Phase) string {
	cpu, hits, misses := p.Cost()
	return fmt.Sprintf("%.1f core-s; %d hits, %d misses", cpu.Seconds(), hits, misses)
}

func produceCDC(ctx context.Context, cl *kgo.Client, table, key string, k map[string]any, v int64, row any) {
	rb, _ := json.Marshal(row)
	val, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: topics.OpInsert, Version: v, Key: k, Row: rb, TS: time.Now().UTC()})
	if err != nil {
		panic(err)
	}
	cl.Produce(ctx, &kgo.Record{Topic: "cdc." + table, Key: []byte(key), Value: val}, func(_ *kgo.Record, err error) {
		if err != nil {
			panic(err)
		}
	})
}

// counter counts offers.filtered records per campaign and remembers when
// the last one arrived.
type counter struct {
	counts map[string]*atomic.Int64
	first  map[string]*atomic.Int64
	last   map[string]*atomic.Int64
}

func newCounter(ctx context.Context, brokers []string) *counter {
	c := &counter{counts: map[string]*atomic.Int64{}, first: map[string]*atomic.Int64{}, last: map[string]*atomic.Int64{}}
	for _, k := range []string{"price-drop-big", "naive", "local-direct"} {
		c.counts[k], c.first[k], c.last[k] = new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
	}
	// offers.filtered is empty before the measured drop (new_item fires no
	// campaign), so every record from the start counts.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics.OffersFiltered), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		panic(err)
	}
	// Matched as bytes: the counter shares the CPU with what it measures,
	// and searching a string copy of every 2 KB value was most of its 6%.
	needles := map[string][]byte{}
	for _, c := range []string{"naive", "local-direct"} {
		needles[c] = []byte(`"campaign_id":"` + c + `"`)
	}
	go func() {
		defer cl.Close()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				k := "price-drop-big"
				for c, needle := range needles {
					if bytes.Contains(r.Value, needle) {
						k = c
					}
				}
				if c.counts[k].Add(1) == 1 {
					c.first[k].Store(r.Timestamp.UnixNano())
				}
				c.last[k].Store(r.Timestamp.UnixNano())
			})
		}
	}()
	return c
}

// waitFor returns the broker timestamp of the n-th record of k.
func (c *counter) waitFor(ctx context.Context, k string, n int) time.Time {
	report := time.Now().Add(10 * time.Second)
	for c.counts[k].Load() < int64(n) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		if time.Now().After(report) {
			fmt.Fprintf(os.Stderr, "waiting: %d of %d %s offers\n", c.counts[k].Load(), n, k)
			report = time.Now().Add(10 * time.Second)
		}
	}
	return time.Unix(0, c.last[k].Load())
}

// Command ops measures what operating RTM costs, with every stage as its own
// `rtm run` process over the embedded broker (internal/localcluster) and a
// member table of -members members, under a steady flow of price drops that
// each reach a few favouriters:
//
//   - restart of one filter instance with its local state: time from start
//     to ready, after SIGTERM (stores closed cleanly) and after SIGKILL;
//   - scale-out of filter from 1 to 2 instances, the new one on an empty
//     disk: time until both are ready, records/s it restored, and how long
//     the partitions that stayed on the first instance went without output;
//   - two of three filter instances SIGKILLed at once (restarted 2 s later,
//     as an orchestrator would);
//   - a rolling release of every stage instance, one after another, each
//     stopped with SIGTERM and started again once the previous one is
//     ready: total time and the longest gap in delivery results;
//
// and at the end, that every member of the flow got exactly one `sent`
// delivery: nothing lost, nothing sent twice.
//
//	go run ./bench/ops -members 1000000      # make bench-ops
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/localcluster"
	"github.com/rtm-project/rtm/internal/ops"
	"github.com/rtm-project/rtm/topics"
)

func main() {
	members := flag.Int("members", 1_000_000, "members in member-state")
	parts := flag.Int("partitions", 8, "partitions of every co-partitioned topic")
	rate := flag.Int("drops", 10, "price drops per second in the flow (each reaches -fans members)")
	fans := flag.Int("fans", 10, "favouriters of each item in the flow")
	keep := flag.Bool("keep", false, "keep the work directory (logs of every process)")
	flag.Parse()
	b := &bench{members: *members, parts: *parts, rate: *rate, fans: *fans}
	if err := b.run(*keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench-ops:", err)
		os.Exit(1)
	}
}

// instances are the stage processes: one of each, filter scaled by the run.
var instances = [][2]string{
	{"member-state", "member-state"}, {"detect", "detect"}, {"campaign", "campaign"}, {"audience", "audience"},
	{"filter-0", "filter"}, {"channel", "channel"}, {"timing", "timing"}, {"render", "render"},
	{"send", "send"}, {"inbox", "inbox"},
}

type bench struct {
	members, parts, rate, fans int
	c                          *localcluster.Cluster
	env                        []string
	rows                       []row
	// results records when each delivery result arrived; filtered, when
	// each offers.filtered record arrived, per partition.
	results  *arrivals
	filtered map[int32]*arrivals
	drops    atomic.Int64
}

// row is one line of the report.
type row struct{ what, value, target string }

func (b *bench) report(what, target, format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	b.rows = append(b.rows, row{what, v, target})
	b.c.Note("%s: %s", what, v)
}

func (b *bench) run(keep bool) error {
	c, err := localcluster.New(os.Stdout)
	if err != nil {
		return err
	}
	b.c = c
	defer func() { c.Close(keep) }()
	if err := c.Boot(b.parts, 1000); err != nil {
		return err
	}
	b.env = c.ChannelEnv("http://" + c.SinkHTTP)
	for _, si := range instances {
		c.Launch(c.AddStage(si[0], si[1], "state", b.parts, b.env))
	}
	if err := c.WaitAllReady(2 * time.Minute); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.BrokerAddr), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(5*time.Millisecond), kgo.RecordRetries(100), kgo.RetryTimeout(2*time.Minute))
	if err != nil {
		return err
	}
	defer cl.Close()
	w := &workload{zone: simulator.NoonZone(), fans: b.fans}
	if err := b.seed(ctx, cl, w); err != nil {
		return err
	}

	b.results = newArrivals()
	b.filtered = map[int32]*arrivals{}
	for p := range int32(b.parts) {
		b.filtered[p] = newArrivals()
	}
	go b.watch(ctx, topics.DeliveryResults, func(r *kgo.Record) { b.results.add(time.Now()) })
	go b.watch(ctx, topics.OffersFiltered, func(r *kgo.Record) { b.filtered[r.Partition].add(time.Now()) })
	var flow sync.WaitGroup
	flowCtx, stopFlow := context.WithCancel(ctx)
	flow.Go(func() { b.flow(flowCtx, cl, w) })
	time.Sleep(10 * time.Second) // a steady flow first
	b.report("deliveries/s in the flow before the faults", "", "%.0f", b.results.rate(time.Now().Add(-5*time.Second), time.Now()))

	steps := []func() error{b.restarts, b.scaleOut, b.nodeLoss, b.rollingRelease}
	for _, step := range steps {
		if err := step(); err != nil {
			stopFlow()
			return err
		}
		time.Sleep(5 * time.Second)
	}
	stopFlow()
	flow.Wait()
	if err := b.verify(ctx, w); err != nil {
		return err
	}
	b.print()
	return nil
}

// seed writes the members (every one opted in to LINE, in a zone where it
// is noon now) and the flow's favourites, and waits until member-state has
// applied them all.
func (b *bench) seed(ctx context.Context, cl *kgo.Client, w *workload) error {
	start := time.Now()
	b.c.Note("seeding %d members", b.members)
	batch := make([]*kgo.Record, 0, 10_000)
	flush := func() error {
		err := cl.ProduceSync(ctx, batch...).FirstErr()
		batch = batch[:0]
		return err
	}
	w.items = b.members / w.fans
	for i := range b.members {
		batch = append(batch, w.member(i))
		if i < w.items*w.fans {
			batch = append(batch, w.favourite(i))
		}
		if len(batch) >= cap(batch)-1 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	produced := time.Since(start)
	for _, t := range []string{topics.CDCMembers, topics.CDCFavorites} {
		if err := waitLag(ctx, b.c.BrokerAddr, topics.GroupMemberState, t, 10*time.Minute); err != nil {
			return err
		}
	}
	applied := time.Since(start)
	b.report("seed: members written / applied by member-state", "", "%d in %v / %v (%.0f members/s)", b.members,
		produced.Round(time.Second), applied.Round(time.Second), float64(b.members)/applied.Seconds())
	// Every join follows the member table's changelog: wait until the
	// stages that join it have caught up (their readiness covers only the
	// recovery at start), by waiting for the changelog to stop growing and
	// then a moment.
	table := topics.TableOf(topics.GroupMemberState)
	last := int64(-1)
	for {
		n, err := localcluster.EndSum(ctx, b.c.BrokerAddr, table)
		if err != nil {
			return err
		}
		if n == last {
			break
		}
		last = n
		time.Sleep(3 * time.Second)
	}
	b.report("member-state changelog records", "", "%d", last)
	time.Sleep(10 * time.Second)
	return nil
}

// flow produces rate price drops a second, each of an item favourited by
// fans members no other drop reaches.
func (b *bench) flow(ctx context.Context, cl *kgo.Client, w *workload) {
	tick := time.NewTicker(time.Second / time.Duration(b.rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		k := int(b.drops.Load())
		if k >= w.items {
			return
		}
		if err := cl.ProduceSync(ctx, w.drop(k)...).FirstErr(); err != nil {
			if ctx.Err() == nil {
				b.c.Note("price drop %d: %v", k, err)
			}
			continue
		}
		b.drops.Add(1)
	}
}

// restarts restarts filter-0 with its local state, after SIGTERM and after
// SIGKILL, and reports the time from start to ready.
func (b *bench) restarts() error {
	p := b.c.Stage("filter-0")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		stop := time.Now()
		b.c.Signal(p, sig, 30*time.Second)
		stopped := time.Since(stop)
		b.c.Launch(p)
		took, err := p.WaitReady(5 * time.Minute)
		if err != nil {
			return err
		}
		target := "< 5 s"
		if sig == syscall.SIGKILL {
			target = "< 15 s"
		}
		b.report(fmt.Sprintf("filter restart after %s: exit / start → ready", sigName(sig)), target, "%v / %v",
			stopped.Round(10*time.Millisecond), took.Round(10*time.Millisecond))
		time.Sleep(5 * time.Second)
	}
	return nil
}

// scaleOut starts filter-1 on an empty disk next to filter-0.
func (b *bench) scaleOut() error {
	p := b.c.AddStage("filter-1", "filter", "state-new", b.parts, b.env)
	start := time.Now()
	b.c.Launch(p)
	rec := recoveryOf(p, 5*time.Minute)
	if _, err := p.WaitReady(5 * time.Minute); err != nil {
		return err
	}
	if _, err := b.c.Stage("filter-0").WaitReady(5 * time.Minute); err != nil {
		return err
	}
	ready := time.Since(start)
	b.report("scale-out filter 1 → 2: start → both ready", "", "%v", ready.Round(10*time.Millisecond))
	r := <-rec
	if r.took > 0 {
		b.report("new instance on an empty disk: records restored, records/s", "≥ 200,000/s", "%d, %.0f/s",
			r.total, float64(r.total)/r.took.Seconds())
	}
	time.Sleep(5 * time.Second)
	stayed, err := b.ownedBy("filter-0")
	if err != nil {
		return err
	}
	var worst time.Duration
	for _, part := range stayed {
		worst = max(worst, b.filtered[part].longestGap(start, time.Now()))
	}
	b.report(fmt.Sprintf("scale-out: longest pause of the %d partitions that stayed on filter-0", len(stayed)), "", "%v",
		worst.Round(10*time.Millisecond))
	return nil
}

// nodeLoss adds a third filter instance and SIGKILLs two of the three at
// once; they are restarted 2 s later. verify shows what was lost (nothing,
// or the run fails).
func (b *bench) nodeLoss() error {
	p := b.c.AddStage("filter-2", "filter", "state-new", b.parts, b.env)
	b.c.Launch(p)
	if _, err := p.WaitReady(5 * time.Minute); err != nil {
		return err
	}
	time.Sleep(5 * time.Second)
	start := time.Now()
	var wg sync.WaitGroup
	for _, name := range []string{"filter-1", "filter-2"} {
		q := b.c.Stage(name)
		wg.Go(func() { b.c.Signal(q, syscall.SIGKILL, 5*time.Second) })
	}
	wg.Wait()
	b.c.Note("SIGKILLed filter-1 and filter-2")
	time.Sleep(2 * time.Second)
	for _, name := range []string{"filter-1", "filter-2"} {
		b.c.Launch(b.c.Stage(name))
	}
	for _, name := range []string{"filter-0", "filter-1", "filter-2"} {
		if _, err := b.c.Stage(name).WaitReady(5 * time.Minute); err != nil {
			return err
		}
	}
	b.report("2 of 3 filter instances SIGKILLed: kill → all 3 ready", "", "%v (lost: see below)",
		time.Since(start).Round(10*time.Millisecond))
	return nil
}

// rollingRelease stops and starts every stage instance, one after
// another, each once the previous one is ready.
func (b *bench) rollingRelease() error {
	start := time.Now()
	stages := b.c.Stages()
	var slowest time.Duration
	slowestName := ""
	for _, p := range stages {
		b.c.Signal(p, syscall.SIGTERM, 30*time.Second)
		b.c.Launch(p)
		took, err := p.WaitReady(5 * time.Minute)
		if err != nil {
			return err
		}
		if took > slowest {
			slowest, slowestName = took, p.Name
		}
	}
	end := time.Now()
	b.report(fmt.Sprintf("rolling release of %d instances: total", len(stages)), "< 5 min", "%v",
		end.Sub(start).Round(100*time.Millisecond))
	b.report("rolling release: slowest start → ready", "", "%v (%s)", slowest.Round(10*time.Millisecond), slowestName)
	b.report("rolling release: longest gap between delivery results", "< 30 s", "%v",
		b.results.longestGap(start, end).Round(10*time.Millisecond))
	return nil
}

// verify waits for every member of the flow to have a `sent` result and
// reports what was lost or duplicated.
func (b *bench) verify(ctx context.Context, w *workload) error {
	drops := int(b.drops.Load())
	expected := drops * w.fans
	deadline := time.Now().Add(5 * time.Minute)
	var sent map[string]map[string]bool
	failed := 0
	for {
		recs, err := localcluster.ReadAll(ctx, b.c.BrokerAddr, topics.DeliveryResults)
		if err != nil {
			return err
		}
		sent, failed = map[string]map[string]bool{}, 0
		for _, r := range recs {
			var res topics.DeliveryResult
			if json.Unmarshal(r.Value, &res) != nil {
				continue
			}
			switch res.Status {
			case topics.StatusSent:
				if sent[res.MemberID] == nil {
					sent[res.MemberID] = map[string]bool{}
				}
				sent[res.MemberID][res.DeliveryID] = true
			case topics.StatusFailed:
				failed++
			}
		}
		if len(sent) >= expected || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	lost, dup := 0, 0
	for k := range drops {
		for j := range w.fans {
			switch n := len(sent[memberID(k*w.fans+j)]); {
			case n == 0:
				lost++
			case n > 1:
				dup++
			}
		}
	}
	b.report("flow: members expected / lost / sent twice / failed results", "lost 0, twice 0", "%d / %d / %d / %d",
		expected, lost, dup, failed)
	if lost > 0 || dup > 0 || failed > 0 {
		b.print()
		return fmt.Errorf("lost=%d duplicated=%d failed=%d", lost, dup, failed)
	}
	return nil
}

func (b *bench) print() {
	fmt.Printf("\n| measurement (%d members, %d partitions) | value | target |\n|---|---|---|\n", b.members, b.parts)
	for _, r := range b.rows {
		fmt.Printf("| %s | %s | %s |\n", r.what, r.value, r.target)
	}
}

// ownedBy returns the partitions of the filter group's input assigned to
// the instance.
func (b *bench) ownedBy(instance string) ([]int32, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.c.BrokerAddr))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	gs, err := kadm.NewClient(cl).DescribeGroups(context.Background(), topics.GroupFilter)
	if err != nil {
		return nil, err
	}
	var out []int32
	for _, m := range gs[topics.GroupFilter].Members {
		if m.InstanceID == nil || *m.InstanceID != instance {
			continue
		}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				if t.Topic == topics.OffersCandidates {
					out = append(out, t.Partitions...)
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// watch consumes topic from its end and calls f for each record.
func (b *bench) watch(ctx context.Context, topic string, f func(*kgo.Record)) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.c.BrokerAddr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		b.c.Note("watching %s: %v", topic, err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(f)
	}
}

// recovery is what a new instance restored: the records of its tables'
// changelogs and the time from its first recovering report to ready.
type recovery struct {
	total int64
	took  time.Duration
}

// recoveryOf polls p's /readyz until it is ready and reports its recovery.
func recoveryOf(p *localcluster.Proc, timeout time.Duration) <-chan recovery {
	out := make(chan recovery, 1)
	go func() {
		var first time.Time
		var total int64
		deadline := time.Now().Add(timeout)
		cl := http.Client{Timeout: time.Second}
		for time.Now().Before(deadline) {
			resp, err := cl.Get("http://" + p.HTTP + "/readyz")
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			var rep ops.Report
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			json.Unmarshal(body, &rep)
			if resp.StatusCode == http.StatusOK {
				out <- recovery{total: total, took: time.Since(first)}
				return
			}
			for _, s := range rep.Components {
				if s.State == ops.Recovering && s.Progress != nil && s.Progress.Total > 0 {
					if first.IsZero() {
						first = time.Now()
					}
					total = max(total, s.Progress.Total)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		out <- recovery{}
	}()
	return out
}

// waitLag waits until group has consumed topic to its end.
func waitLag(ctx context.Context, addr, group, topic string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		lag, err := localcluster.GroupLag(ctx, addr, group, topic)
		if err == nil && lag == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s: lag %d after %v (%v)", group, topic, lag, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

func sigName(s syscall.Signal) string {
	if s == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

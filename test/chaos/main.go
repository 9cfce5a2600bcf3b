// Command chaos runs RTM as separate processes on this machine — the
// embedded broker persisted on disk, `rtm sinks`, and every stage as its own
// `rtm run` process (two instances of filter and of send) — drives a known
// workload through an outside Kafka client, injects faults on a schedule
// drawn from a seeded random source, and then verifies what the members
// received:
//
//   - every favouriter of the dropped item has exactly one `sent`
//     delivery.results record and its push arrived at the LINE sink exactly
//     once (the sink keys pushes by X-Line-Retry-Key, as LINE does), and
//     every push the sink accepted has its `sent` result;
//   - no `failed` result for a member the faults touched;
//   - no member got more deliveries than the campaign's day cap allows;
//   - every poison record is in dlq with its reason, and nothing else is.
//
// The schedule `all` (the default) injects every fault: SIGKILL of random
// stage instances (restarted after a pause, as an orchestrator would), a
// broker restart mid fan-out, the LINE API down (connection refused, then
// 503) behind a proxy the harness controls, a SIGTERM of a send instance
// during that outage, filter scaled from 2 to 3 to 1 instances, a store
// that fails its writes (ENOSPC) in the timing stage, poison records in
// every input topic, and a rolling release (every stage stopped with
// SIGTERM and started again, one after another). A process that exits on
// its own (a stage that gave up) is restarted too, and counted.
//
// The other schedules reproduce, one fault at a time over 3,000 members,
// the losses the first multi-process runs found: `broker` (the broker
// stopped 5 s mid fan-out), `sigterm` (a SIGTERM of send during a 30 s LINE
// outage) and `line` (LINE answering 503 for 60 s).
//
//	go run ./test/chaos                    # the reduced schedule CI runs
//	go run ./test/chaos -full              # longer outages, more members
//	go run ./test/chaos -scenario broker   # one reproduction
//
// The last line reads
// `chaos: PASS expected=N delivered=N lost=0 duplicated=0 over_cap=0 poison=K/K faults=F`.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/localcluster"
	"github.com/rtm-project/rtm/topics"
)

func main() {
	full := flag.Bool("full", false, "the full schedule: more members, 60 s channel outage, more kills")
	scenario := flag.String("scenario", "all", "all (every fault), or one reproduction: broker, sigterm, line")
	seed := flag.Uint64("seed", 1, "seed of the fault schedule")
	keep := flag.Bool("keep", false, "keep the work directory (logs of every process)")
	flag.Parse()
	s, ok := schedules(*full)[*scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "chaos: no scenario %q (all, broker, sigterm, line)\n", *scenario)
		os.Exit(2)
	}
	fmt.Printf("chaos: scenario %s, seed %d\n", *scenario, *seed)
	pass, err := run(s, *seed, *keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if !pass {
		os.Exit(1)
	}
}

// schedule is what a run injects. Zero values inject nothing.
type schedule struct {
	members     int
	kills       int
	killEvery   time.Duration
	refused     time.Duration // LINE: connections refused
	unavailable time.Duration // then: 503
	brokerDown  time.Duration
	sigtermSend bool          // SIGTERM send-0 halfway through the LINE outage
	scaleFilter bool          // filter 2 → 3 → 1 instances during the fan-out
	storeFail   bool          // timing's stores fail their writes (ENOSPC)
	release     bool          // a rolling release after the faults
	deadline    time.Duration // for every delivery to arrive
}

func schedules(full bool) map[string]schedule {
	all := schedule{members: 600, kills: 6, killEvery: 3 * time.Second, refused: 10 * time.Second, unavailable: 10 * time.Second,
		brokerDown: 5 * time.Second, sigtermSend: true, scaleFilter: true, storeFail: true, release: true, deadline: 150 * time.Second}
	if full {
		all = schedule{members: 3000, kills: 20, killEvery: 4 * time.Second, refused: 30 * time.Second, unavailable: 30 * time.Second,
			brokerDown: 5 * time.Second, sigtermSend: true, scaleFilter: true, storeFail: true, release: true, deadline: 8 * time.Minute}
	}
	return map[string]schedule{
		"all":     all,
		"broker":  {members: 3000, brokerDown: 5 * time.Second, deadline: 3 * time.Minute},
		"sigterm": {members: 3000, unavailable: 30 * time.Second, sigtermSend: true, deadline: 5 * time.Minute},
		"line":    {members: 3000, unavailable: 60 * time.Second, deadline: 6 * time.Minute},
	}
}

// stageInstances are the processes of the pipeline: name → stage.
var stageInstances = [][2]string{
	{"member-state", "member-state"}, {"detect", "detect"}, {"campaign", "campaign"}, {"audience", "audience"},
	{"filter-0", "filter"}, {"filter-1", "filter"}, {"channel", "channel"}, {"timing", "timing"},
	{"render", "render"}, {"send-0", "send"}, {"send-1", "send"}, {"inbox", "inbox"},
}

const partitions = 4

func run(s schedule, seed uint64, keep bool) (bool, error) {
	c, err := localcluster.New(os.Stdout)
	if err != nil {
		return false, err
	}
	defer func() { c.Close(keep) }()
	if err := c.Boot(partitions, 1_000_000); err != nil {
		return false, err
	}
	lineProxy := localcluster.FreeAddr()
	line := newFlakyProxy(lineProxy, "http://"+c.SinkHTTP)
	defer line.close()
	env := c.ChannelEnv("http://" + lineProxy)
	for _, si := range stageInstances {
		c.Launch(c.AddStage(si[0], si[1], "state", partitions, env))
	}
	if err := c.WaitAllReady(2 * time.Minute); err != nil {
		return false, err
	}
	c.Note("%d stage processes ready", len(stageInstances))
	f := &faults{c: c, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), env: env}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.BrokerAddr), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RecordRetries(100), kgo.RetryTimeout(2*time.Minute))
	if err != nil {
		return false, err
	}
	defer cl.Close()
	ctx := context.Background()
	w := workload{members: s.members, zone: simulator.NoonZone()}
	if err := w.seed(ctx, cl); err != nil {
		return false, err
	}
	// The fan-out must find every favourite: wait until member-state has
	// written them all, and the audience stage's copy has had a moment to
	// follow (the sentinel check below would catch a miss as "lost").
	if err := localcluster.WaitRecords(ctx, c.BrokerAddr, topics.TableOf(topics.GroupMemberState), s.members, time.Minute); err != nil {
		return false, err
	}
	poison, err := w.poison(ctx, cl)
	if err != nil {
		return false, err
	}
	time.Sleep(2 * time.Second) // joined copies follow the changelog; a miss shows as lost below

	// Faults during the fan-out.
	var wg sync.WaitGroup
	if s.kills > 0 {
		wg.Go(func() { f.killRandomly(s.kills, s.killEvery) })
	}
	// The LINE outage starts with the fan-out, so the deliveries meet it.
	if outage := s.refused + s.unavailable; outage > 0 {
		mode := mode503
		if s.refused > 0 {
			c.Note("LINE down: connections refused for %v", s.refused)
			mode = modeRefuse
		} else {
			c.Note("LINE down: 503 for %v", s.unavailable)
		}
		line.setMode(mode)
		wg.Go(func() {
			if s.refused > 0 {
				time.Sleep(s.refused)
				c.Note("LINE down: 503 for %v", s.unavailable)
				line.setMode(mode503)
			}
			time.Sleep(s.unavailable)
			c.Note("LINE up")
			line.setMode(modeUp)
			c.Faults.Add(1)
		})
		if s.sigtermSend {
			// A send instance stopped gracefully while its deliveries wait
			// out the LINE outage: what it was doing is redone, not lost.
			wg.Go(func() {
				time.Sleep(outage / 2)
				f.sigterm("send-0")
			})
		}
	}
	c.Note("price drop of the favourited item (%d favouriters)", s.members)
	if err := w.priceDrop(ctx, cl); err != nil {
		return false, err
	}
	// Mid fan-out: once the first offers reach render, offers and
	// deliveries are in flight between every stage.
	if err := localcluster.WaitEnd(ctx, c.BrokerAddr, topics.OffersReady, 1, time.Minute); err != nil {
		return false, err
	}
	// One after another, so that each meets a running system (a process
	// started while the broker is down exits, and is restarted, anyway).
	wg.Go(func() {
		if s.brokerDown > 0 {
			f.restartBroker(s.brokerDown)
		}
		if s.storeFail {
			f.failStore("timing")
		}
		if s.scaleFilter {
			f.scaleFilter()
		}
	})
	wg.Wait()
	if s.release {
		f.rollingRelease()
	}

	res, err := verify(ctx, c.BrokerAddr, c.SinkHTTP, w, poison, s.deadline)
	if err != nil {
		return false, err
	}
	res.faults = int(c.Faults.Load())
	res.line503 = int(line.unavailable.Load())
	res.restarts = int(c.Unexpected.Load())
	res.storeFailures = c.LogCount("state store failed;")
	res.storesRestored = c.LogCount("was not closed cleanly; discarding it")
	return res.print(), nil
}

// faults injects the faults of a schedule into a cluster.
type faults struct {
	c   *localcluster.Cluster
	rnd *rand.Rand
	env []string
	mu  sync.Mutex
}

// killable are the stage instances random kills choose from: not those a
// scaling or store fault stops or restarts on its own schedule.
func (f *faults) killable() []*localcluster.Proc {
	var out []*localcluster.Proc
	for _, p := range f.c.Stages() {
		if p.Name != "filter-1" && p.Name != "filter-2" && p.Name != "timing" {
			out = append(out, p)
		}
	}
	return out
}

func (f *faults) killRandomly(n int, every time.Duration) {
	stages := f.killable()
	for range n {
		time.Sleep(every)
		f.mu.Lock()
		p := stages[f.rnd.IntN(len(stages))]
		f.mu.Unlock()
		f.c.Faults.Add(1)
		f.c.Note("SIGKILL %s (restarted in 2 s)", p.Name)
		f.c.Signal(p, syscall.SIGKILL, 5*time.Second)
		time.AfterFunc(2*time.Second, func() { f.c.Launch(p) })
	}
}

// sigterm stops the named stage instance with SIGTERM and starts it again.
func (f *faults) sigterm(name string) {
	p := f.c.Stage(name)
	f.c.Faults.Add(1)
	f.c.Note("SIGTERM %s (started again at once)", name)
	f.c.Signal(p, syscall.SIGTERM, 30*time.Second)
	f.c.Launch(p)
}

func (f *faults) restartBroker(down time.Duration) {
	f.c.Faults.Add(1)
	f.c.Note("broker stopped for %v", down)
	if err := f.c.RestartBroker(down); err != nil {
		f.c.Note("broker did not come back: %v", err)
	}
	f.c.Note("broker back")
}

// scaleFilter adds a third filter instance (on an empty disk) and, once it
// is ready, stops two of the three with SIGTERM: 2 → 3 → 1.
func (f *faults) scaleFilter() {
	f.c.Faults.Add(1)
	p := f.c.AddStage("filter-2", "filter", "state", partitions, f.env)
	f.c.Note("scaling filter 2 → 3 (filter-2 on an empty disk)")
	f.c.Launch(p)
	took, err := p.WaitReady(2 * time.Minute)
	if err != nil {
		f.c.Note("filter-2: %v", err)
	}
	f.c.Note("filter-2 ready %v after start; scaling filter 3 → 1", took.Round(10*time.Millisecond))
	f.c.Faults.Add(1)
	for _, name := range []string{"filter-1", "filter-2"} {
		q := f.c.Stage(name)
		f.c.Signal(q, syscall.SIGTERM, 30*time.Second)
		f.c.Remove(q)
	}
	f.c.Note("filter at 1 instance")
}

// failStore restarts the named single-instance stage with its stores set to
// fail their writes with ENOSPC once it is running, as a full disk does.
// The stores write no WAL (the changelog is their log), so the failure
// surfaces at the next flush — under this light load, the release's
// shutdown — and the stores are then discarded and restored from their
// changelogs at the next start (without the fault, as after an operator
// freed the disk). Nothing they held may be lost.
func (f *faults) failStore(name string) {
	p := f.c.Stage(name)
	f.c.Faults.Add(1)
	f.c.Note("%s restarted with a disk that fails every write (ENOSPC)", name)
	f.c.Signal(p, syscall.SIGTERM, 30*time.Second)
	p.InjectOnce("RTM_FAULT_INJECT=store-fail:"+name, "RTM_MAX_FAILURES=1")
	f.c.Launch(p)
	if _, err := p.WaitReady(time.Minute); err != nil {
		f.c.Note("%s: %v", name, err)
	}
}

// rollingRelease stops every stage instance with SIGTERM and starts it
// again, one after another, waiting for it to be ready.
func (f *faults) rollingRelease() {
	start := time.Now()
	f.c.Note("rolling release of %d instances", len(f.c.Stages()))
	for _, p := range f.c.Stages() {
		time.Sleep(2500 * time.Millisecond) // let any killed instance come back first
		f.c.Signal(p, syscall.SIGTERM, 30*time.Second)
		f.c.Launch(p)
		if _, err := p.WaitReady(2 * time.Minute); err != nil {
			f.c.Note("%s not ready after release: %v", p.Name, err)
		}
	}
	f.c.Faults.Add(1)
	f.c.Note("rolling release done in %v", time.Since(start).Round(time.Second))
}

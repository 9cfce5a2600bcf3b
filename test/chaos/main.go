// Command chaos runs RTM as separate processes on this machine — the
// embedded broker persisted on disk, `rtm sinks`, and every stage as its own
// `rtm run` process (two instances of filter and of send) — drives a known
// workload through an outside Kafka client, injects faults on a schedule
// drawn from a seeded random source, and then verifies what the members
// received:
//
//   - every favouriter of the dropped item has exactly one `sent`
//     delivery.results record and its push arrived at the LINE sink exactly
//     once (the sink keys pushes by X-Line-Retry-Key, as LINE does);
//   - no `failed` result for a member the faults touched;
//   - no member got more deliveries than the campaign's day cap allows;
//   - every poison record is in dlq with its reason, and nothing else is.
//
// Faults: SIGKILL of random stage instances (restarted after a pause, as an
// orchestrator would), a broker restart mid fan-out, the LINE API down
// (connection refused, then 503) behind a proxy the harness controls, a
// SIGTERM of a send instance during that outage, and a rolling release (every stage stopped with SIGTERM and started again, one
// after another). A process that exits on its own (a stage that gave up) is
// restarted too, and counted.
//
//	go run ./test/chaos            # the reduced schedule CI runs
//	go run ./test/chaos -full      # longer outages, more members
//
// The last line reads
// `chaos: PASS expected=N delivered=N lost=0 duplicated=0 over_cap=0 poison=K/K faults=F`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/topics"
)

func main() {
	full := flag.Bool("full", false, "the full schedule: more members, 60 s channel outage, more kills")
	seed := flag.Uint64("seed", 1, "seed of the fault schedule")
	keep := flag.Bool("keep", false, "keep the work directory (logs of every process)")
	flag.Parse()
	s := schedule{members: 600, kills: 6, killEvery: 3 * time.Second, refused: 10 * time.Second, unavailable: 10 * time.Second,
		brokerDown: 5 * time.Second, deadline: 150 * time.Second}
	if *full {
		s = schedule{members: 3000, kills: 20, killEvery: 4 * time.Second, refused: 30 * time.Second, unavailable: 30 * time.Second,
			brokerDown: 5 * time.Second, deadline: 8 * time.Minute}
	}
	ok, err := run(s, *seed, *keep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

type schedule struct {
	members     int
	kills       int
	killEvery   time.Duration
	refused     time.Duration // LINE: connections refused
	unavailable time.Duration // then: 503
	brokerDown  time.Duration
	deadline    time.Duration // for every delivery to arrive
}

// stageInstances are the processes of the pipeline: name → stage.
var stageInstances = [][2]string{
	{"member-state", "member-state"}, {"detect", "detect"}, {"campaign", "campaign"}, {"audience", "audience"},
	{"filter-0", "filter"}, {"filter-1", "filter"}, {"channel", "channel"}, {"timing", "timing"},
	{"render", "render"}, {"send-0", "send"}, {"send-1", "send"}, {"inbox", "inbox"},
}

func run(s schedule, seed uint64, keep bool) (bool, error) {
	dir, err := os.MkdirTemp("", "rtm-chaos-")
	if err != nil {
		return false, err
	}
	if !keep {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("work directory:", dir)
	}
	bin := filepath.Join(dir, "rtm")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/rtm").CombinedOutput(); err != nil {
		return false, fmt.Errorf("building rtm: %v\n%s", err, out)
	}
	h := &harness{bin: bin, dir: dir, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), start: time.Now()}
	defer h.stopAll()

	brokerAddr, sinkHTTP, sinkSMTP, lineProxy := freeAddr(), freeAddr(), freeAddr(), freeAddr()
	h.broker = h.proc("broker", bin, "broker", "--broker-addr", brokerAddr, "--data-dir", filepath.Join(dir, "broker"), "--log-level", "warn")
	h.launch(h.broker)
	if err := waitListen(brokerAddr, 30*time.Second); err != nil {
		return false, err
	}
	for _, args := range [][]string{
		{"topics", "apply", "--brokers", brokerAddr, "--partitions", "4", "--replication", "1"},
		{"rules", "publish", "--brokers", brokerAddr, "--author", "chaos", "rules/examples/rtm-rules.xlsx"},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return false, fmt.Errorf("rtm %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
	}
	h.sinks = h.proc("sinks", bin, "sinks", "--sink-keep", "1000000", "--sink-http-addr", sinkHTTP, "--sink-smtp-addr", sinkSMTP, "--http-addr", freeAddr(), "--log-level", "warn")
	h.launch(h.sinks)
	if err := waitListen(sinkHTTP, 30*time.Second); err != nil {
		return false, err
	}
	line := newFlakyProxy(lineProxy, "http://"+sinkHTTP)
	defer line.close()

	smtpHost, smtpPort, _ := net.SplitHostPort(sinkSMTP)
	env := []string{"RTM_LINE_BASE_URL=http://" + lineProxy, "RTM_LINE_TOKEN=rtm-dev-line-token",
		"RTM_FCM_BASE_URL=http://" + sinkHTTP, "RTM_FCM_TOKEN=rtm-dev-fcm-token", "RTM_FCM_PROJECT=rtm-dev",
		"RTM_SMTP_HOST=" + smtpHost, "RTM_SMTP_PORT=" + smtpPort, "RTM_SMTP_TLS=none",
		"RTM_TRACKING_SECRET=chaos-tracking-secret-0123456789abcdef"}
	for _, si := range stageInstances {
		p := h.proc(si[0], bin, "run", "--stage", si[1], "--brokers", brokerAddr, "--partitions", "4",
			"--data-dir", filepath.Join(dir, "state"), "--instance-id", si[0], "--http-addr", freeAddr(),
			"--shutdown-timeout", "15s", "--log-level", "warn")
		p.env = env
		p.stage = true
		h.launch(p)
	}
	if err := h.waitReady(2 * time.Minute); err != nil {
		return false, err
	}
	fmt.Printf("%6.1fs  %d stage processes ready\n", h.since(), len(stageInstances))

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
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
	if err := waitRecords(ctx, brokerAddr, topics.TableOf(topics.GroupMemberState), s.members, time.Minute); err != nil {
		return false, err
	}
	poison, err := w.poison(ctx, cl)
	if err != nil {
		return false, err
	}
	time.Sleep(2 * time.Second) // joined copies follow the changelog; a miss shows as lost below

	// Faults during the fan-out.
	var faults sync.WaitGroup
	faults.Go(func() { h.killRandomly(s.kills, s.killEvery) })
	// The LINE outage starts with the fan-out, so the deliveries meet it.
	h.note("LINE down: connections refused for %v", s.refused)
	line.setMode(modeRefuse)
	faults.Go(func() {
		time.Sleep(s.refused)
		h.note("LINE down: 503 for %v", s.unavailable)
		line.setMode(mode503)
		time.Sleep(s.unavailable)
		h.note("LINE up")
		line.setMode(modeUp)
		h.faults.Add(1)
	})
	h.note("price drop of the favourited item (%d favouriters)", s.members)
	if err := w.priceDrop(ctx, cl); err != nil {
		return false, err
	}
	// Mid fan-out: once the first offers reach render, offers and
	// deliveries are in flight between every stage.
	if err := waitEnd(ctx, brokerAddr, topics.OffersReady, 1, time.Minute); err != nil {
		return false, err
	}
	faults.Go(func() { h.restartBroker(s.brokerDown, brokerAddr) })
	faults.Go(func() {
		// A send instance stopped gracefully while its deliveries wait
		// out the LINE outage: what it was doing is redone, not lost.
		time.Sleep(s.refused / 2)
		h.sigterm("send-0")
	})
	faults.Wait()
	h.rollingRelease()

	res, err := verify(ctx, brokerAddr, sinkHTTP, w, poison, s.deadline)
	if err != nil {
		return false, err
	}
	res.faults = int(h.faults.Load())
	res.line503 = int(line.unavailable.Load())
	res.restarts = int(h.unexpected.Load())
	return res.print(), nil
}

// harness starts, kills and restarts processes.
type harness struct {
	bin, dir   string
	rnd        *rand.Rand
	start      time.Time
	mu         sync.Mutex
	procs      []*proc
	broker     *proc
	sinks      *proc
	faults     atomic.Int32
	unexpected atomic.Int32
}

type proc struct {
	name  string
	args  []string
	env   []string
	stage bool
	http  string
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	// expected marks an exit the harness caused (kill, release).
	expected bool
	log      *os.File
}

func (h *harness) since() float64 { return time.Since(h.start).Seconds() }

func (h *harness) note(format string, args ...any) {
	fmt.Printf("%6.1fs  %s\n", h.since(), fmt.Sprintf(format, args...))
}

func (h *harness) proc(name, bin string, args ...string) *proc {
	p := &proc{name: name, args: append([]string{bin}, args...)}
	for i, a := range args {
		if a == "--http-addr" && i+1 < len(args) {
			p.http = args[i+1]
		}
	}
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p
}

// launch starts p and watches it: an exit the harness did not cause is
// restarted after a second, as an orchestrator restarts a crashed pod.
func (h *harness) launch(p *proc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log == nil {
		p.log, _ = os.Create(filepath.Join(h.dir, p.name+".log"))
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		h.note("starting %s: %v", p.name, err)
		return
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expected = cmd, done, false
	go func() {
		err := cmd.Wait()
		close(done)
		p.mu.Lock()
		expected := p.expected || p.cmd != cmd
		p.mu.Unlock()
		if !expected {
			h.unexpected.Add(1)
			h.note("%s exited on its own (%v): restarting it", p.name, err)
			time.Sleep(time.Second)
			h.launch(p)
		}
	}()
}

// signal sends sig to p and waits for it to exit (SIGKILL after wait).
func (h *harness) signal(p *proc, sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	p.expected = true
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		h.note("%s did not exit within %v of %v: killing it", p.name, wait, sig)
		cmd.Process.Kill()
		<-done
	}
}

func (h *harness) stages() []*proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*proc
	for _, p := range h.procs {
		if p.stage {
			out = append(out, p)
		}
	}
	return out
}

func (h *harness) killRandomly(n int, every time.Duration) {
	stages := h.stages()
	for range n {
		time.Sleep(every)
		p := stages[h.rnd.IntN(len(stages))]
		h.faults.Add(1)
		h.note("SIGKILL %s (restarted in 2 s)", p.name)
		h.signal(p, syscall.SIGKILL, 5*time.Second)
		time.AfterFunc(2*time.Second, func() { h.launch(p) })
	}
}

// sigterm stops the named stage instance with SIGTERM and starts it again.
func (h *harness) sigterm(name string) {
	for _, p := range h.stages() {
		if p.name == name {
			h.faults.Add(1)
			h.note("SIGTERM %s (started again at once)", name)
			h.signal(p, syscall.SIGTERM, 30*time.Second)
			h.launch(p)
		}
	}
}

func (h *harness) restartBroker(down time.Duration, addr string) {
	h.faults.Add(1)
	h.note("broker stopped for %v", down)
	h.signal(h.broker, syscall.SIGTERM, 30*time.Second)
	time.Sleep(down)
	h.launch(h.broker)
	if err := waitListen(addr, 30*time.Second); err != nil {
		h.note("broker did not come back: %v", err)
	}
	h.note("broker back")
}

// rollingRelease stops every stage instance with SIGTERM and starts it
// again, one after another, waiting for it to be ready.
func (h *harness) rollingRelease() {
	start := time.Now()
	h.note("rolling release of %d instances", len(h.stages()))
	for _, p := range h.stages() {
		time.Sleep(2500 * time.Millisecond) // let any killed instance come back first
		h.signal(p, syscall.SIGTERM, 30*time.Second)
		h.launch(p)
		if err := waitHTTP200("http://"+p.http+"/readyz", 2*time.Minute); err != nil {
			h.note("%s not ready after release: %v", p.name, err)
		}
	}
	h.faults.Add(1)
	h.note("rolling release done in %v", time.Since(start).Round(time.Second))
}

func (h *harness) waitReady(timeout time.Duration) error {
	for _, p := range h.stages() {
		if err := waitHTTP200("http://"+p.http+"/readyz", timeout); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

func (h *harness) stopAll() {
	h.mu.Lock()
	procs := slices.Clone(h.procs)
	h.mu.Unlock()
	for _, p := range procs {
		if p != h.broker && p != h.sinks {
			h.signal(p, syscall.SIGTERM, 20*time.Second)
		}
	}
	for _, p := range []*proc{h.sinks, h.broker} {
		if p != nil {
			h.signal(p, syscall.SIGTERM, 20*time.Second)
		}
	}
}

// flakyProxy forwards to the LINE sink, or refuses connections, or
// answers 503, as the harness says.
type flakyProxy struct {
	addr string
	// unavailable counts requests answered 503.
	unavailable atomic.Int32
	rp          *httputil.ReverseProxy
	mode        atomic.Int32
	mu          sync.Mutex
	srv         *http.Server
}

const (
	modeUp int32 = iota
	modeRefuse
	mode503
)

func newFlakyProxy(addr, target string) *flakyProxy {
	u, _ := url.Parse(target)
	f := &flakyProxy{addr: addr, rp: httputil.NewSingleHostReverseProxy(u)}
	f.listen()
	return f
}

func (f *flakyProxy) listen() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.mode.Load() == mode503 {
			f.unavailable.Add(1)
			http.Error(w, `{"message":"service unavailable (chaos)"}`, http.StatusServiceUnavailable)
			return
		}
		f.rp.ServeHTTP(w, r)
	})}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go srv.Serve(ln)
}

func (f *flakyProxy) setMode(m int32) {
	old := f.mode.Swap(m)
	switch {
	case m == modeRefuse && old != modeRefuse:
		f.mu.Lock()
		f.srv.Close() // connection refused from now on
		f.mu.Unlock()
	case m != modeRefuse && old == modeRefuse:
		f.listen()
	}
}

func (f *flakyProxy) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.srv.Close()
}

// workload is the known input: members who all favourite one item (and
// some who do not), poison records, and one price drop.
type workload struct {
	members int
	zone    string
	version int64
}

const item = "CHAOS-I1"

func memberID(i int) string { return fmt.Sprintf("CH%06d", i) }

func lineUser(i int) string { return fmt.Sprintf("U%032x", i+1) }

func (w *workload) cdc(table, key string, keyCols map[string]any, op string, row any) *kgo.Record {
	w.version++
	rb, _ := json.Marshal(row)
	v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: op, Version: w.version, Key: keyCols, Row: rb, TS: time.Now().UTC()})
	if err != nil {
		panic(err)
	}
	return &kgo.Record{Topic: "cdc." + table, Key: []byte(key), Value: v}
}

func (w *workload) seed(ctx context.Context, cl *kgo.Client) error {
	var recs []*kgo.Record
	for i := range w.members {
		m := memberID(i)
		recs = append(recs, w.cdc("members", m, map[string]any{"member_id": m}, topics.OpInsert, topics.MemberRow{
			MemberID: m, LineUserID: lineUser(i), LineOptIn: true, Status: "active", Timezone: w.zone}))
		recs = append(recs, w.cdc("favorites", m, map[string]any{"member_id": m, "item_id": item}, topics.OpInsert,
			topics.FavoriteRow{MemberID: m, ItemID: item, CreatedAt: time.Now().UTC()}))
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

func (w *workload) priceDrop(ctx context.Context, cl *kgo.Client) error {
	row := func(price float64) topics.ItemRow {
		return topics.ItemRow{ItemID: item, Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: price, Stock: 5}
	}
	return cl.ProduceSync(ctx,
		w.cdc("items", item, map[string]any{"item_id": item}, topics.OpInsert, row(5000)),
		w.cdc("items", item, map[string]any{"item_id": item}, topics.OpUpdate, row(2900))).FirstErr()
}

// poison writes one malformed record to every topic a stage reads and
// returns their keys.
func (w *workload) poison(ctx context.Context, cl *kgo.Client) (map[string]string, error) {
	inputs := []string{topics.CDCMembers, topics.CDCItems, topics.CDCFavorites, topics.CDCOrders, topics.BehaviorEvents,
		topics.Events, topics.AudienceRequests, topics.OffersCandidates, topics.OffersFiltered, topics.OffersRouted,
		topics.OffersReady, topics.Deliveries, topics.DeliveryResults, topics.InAppMessages}
	keys := map[string]string{}
	var recs []*kgo.Record
	for i, t := range inputs {
		k := fmt.Sprintf("POISON%02d", i)
		keys[k] = t
		recs = append(recs, &kgo.Record{Topic: t, Key: []byte(k), Value: []byte(`{"schema_version":1,"broken":`)})
	}
	return keys, cl.ProduceSync(ctx, recs...).FirstErr()
}

// result is what the verifier found.
type result struct {
	expected, delivered, lost, duplicated, failed, overCap int
	lineAccepted, lineMembers, lineRepeats                 int
	line503                                                int
	lineMissing                                            int
	channels                                               map[string]int
	poisonFound, poisonTotal, dlqOther                     int
	faults, restarts                                       int
	took                                                   time.Duration
	lostSample                                             []string
}

func verify(ctx context.Context, addr, sinkHTTP string, w workload, poison map[string]string, deadline time.Duration) (*result, error) {
	start := time.Now()
	r := &result{expected: w.members, poisonTotal: len(poison)}
	var sent map[string][]string
	for {
		var err error
		sent, r.channels, r.failed, err = readResults(ctx, addr)
		if err != nil {
			return nil, err
		}
		if len(sent) >= w.members || time.Since(start) > deadline {
			break
		}
		time.Sleep(time.Second)
	}
	r.took = time.Since(start)
	for i := range w.members {
		m := memberID(i)
		switch n := len(sent[m]); {
		case n == 0:
			r.lost++
			if len(r.lostSample) < 5 {
				r.lostSample = append(r.lostSample, m)
			}
		case n > 1:
			r.duplicated++
			r.delivered++
		default:
			r.delivered++
		}
		if len(sent[m]) > 1 { // the example day cap is 3, but one drop sends one offer
			r.overCap++
		}
	}
	// The LINE sink: every accepted push, keyed by retry key.
	resp, err := http.Get("http://" + sinkHTTP + "/sinks/line")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var pushes []struct {
		Header http.Header     `json:"header"`
		Body   json.RawMessage `json:"body"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&pushes); err != nil {
		return nil, fmt.Errorf("reading the LINE sink: %w", err)
	}
	perUser := map[string]int{}
	for _, p := range pushes {
		var b struct {
			To string `json:"to"`
		}
		json.Unmarshal(p.Body, &b)
		perUser[b.To]++
	}
	r.lineAccepted, r.lineMembers = len(pushes), len(perUser)
	for i := range w.members {
		for _, id := range sent[memberID(i)] {
			if strings.HasSuffix(id, "|"+topics.ChannelLine) && perUser[lineUser(i)] == 0 {
				r.lineMissing++
			}
		}
	}
	for _, n := range perUser {
		if n > 1 {
			r.lineRepeats += n - 1
		}
	}
	// Dead letters.
	dlq, err := readAll(ctx, addr, topics.DLQ)
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, rec := range dlq {
		var dl topics.DeadLetter
		if json.Unmarshal(rec.Value, &dl) != nil {
			r.dlqOther++
			continue
		}
		if _, ok := poison[dl.Key]; ok && dl.Reason != "" {
			found[dl.Key] = true
		} else {
			r.dlqOther++
		}
	}
	r.poisonFound = len(found)
	return r, nil
}

func (r *result) pass() bool {
	return r.lost == 0 && r.duplicated == 0 && r.overCap == 0 && r.failed == 0 && r.lineRepeats == 0 && r.lineMissing == 0 &&
		r.poisonFound == r.poisonTotal && r.dlqOther == 0
}

func (r *result) print() bool {
	fmt.Println()
	fmt.Printf("| check | value |\n|---|---|\n")
	rows := [][2]any{
		{"members expected to be reached once", r.expected},
		{"members with a `sent` result", r.delivered},
		{"lost (no `sent` result)", r.lost},
		{"duplicated (more than one `sent` delivery)", r.duplicated},
		{"`failed` results", r.failed},
		{"over the day cap", r.overCap},
		{"LINE pushes accepted by the sink / distinct members", fmt.Sprintf("%d / %d", r.lineAccepted, r.lineMembers)},
		{"LINE members pushed more than once", r.lineRepeats},
		{"LINE `sent` results the sink never received", r.lineMissing},
		{"LINE requests answered 503 during the outage (after the refused connections)", r.line503},
		{"`sent` results by channel", fmt.Sprint(r.channels)},
		{"poison records in dlq with a reason", fmt.Sprintf("%d/%d", r.poisonFound, r.poisonTotal)},
		{"other records in dlq", r.dlqOther},
		{"faults injected", r.faults},
		{"processes that exited on their own (restarted)", r.restarts},
		{"time from the end of the faults to the last result", r.took.Round(time.Second)},
	}
	for _, row := range rows {
		fmt.Printf("| %v | %v |\n", row[0], row[1])
	}
	if len(r.lostSample) > 0 {
		fmt.Println("lost, e.g.:", strings.Join(r.lostSample, " "))
	}
	verdict := "PASS"
	if !r.pass() {
		verdict = "FAIL"
	}
	fmt.Printf("chaos: %s expected=%d delivered=%d lost=%d duplicated=%d over_cap=%d poison=%d/%d faults=%d\n",
		verdict, r.expected, r.delivered, r.lost, r.duplicated, r.overCap, r.poisonFound, r.poisonTotal, r.faults)
	return r.pass()
}

// readResults returns each member's distinct sent deliveries (as
// "delivery_id|channel"), the sent results by channel and the number of
// failed results.
func readResults(ctx context.Context, addr string) (map[string][]string, map[string]int, int, error) {
	recs, err := readAll(ctx, addr, topics.DeliveryResults)
	if err != nil {
		return nil, nil, 0, err
	}
	sent := map[string][]string{}
	channels := map[string]int{}
	failed := 0
	for _, rec := range recs {
		var res topics.DeliveryResult
		if json.Unmarshal(rec.Value, &res) != nil {
			continue // the poison record
		}
		switch res.Status {
		case topics.StatusSent:
			if id := res.DeliveryID + "|" + res.Channel; !slices.Contains(sent[res.MemberID], id) {
				sent[res.MemberID] = append(sent[res.MemberID], id)
				channels[res.Channel]++
			}
		case topics.StatusFailed:
			failed++
		}
	}
	return sent, channels, failed, nil
}

// readAll reads a topic from its start to its current end.
func readAll(ctx context.Context, addr, topic string) ([]*kgo.Record, error) {
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if r.Offset+1 >= want[r.Partition] {
				delete(want, r.Partition)
			}
		})
	}
	return out, nil
}

// waitEnd waits until topic's end offsets add up to at least n.
func waitEnd(ctx context.Context, addr, topic string, n int64, timeout time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(timeout)
	for {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		var sum int64
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
			if sum >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d records after %v (%v)", topic, sum, n, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitRecords(ctx context.Context, addr, topic string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		recs, err := readAll(ctx, addr, topic)
		if err == nil && len(recs) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d records after %v (%v)", topic, len(recs), n, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func waitListen(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitHTTP200(u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(u)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New(u + " not 200 in time")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

package stage

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"slices"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/state"
	"github.com/rtm-project/rtm/topics"
)

func TestCommitTrackerMovesOnlyOverContiguousMarks(t *testing.T) {
	cases := []struct {
		name     string
		consumed []int64
		marks    []int64
		commits  []int64 // the offsets passed on, in order
	}{
		{"in order", []int64{0, 1, 2}, []int64{0, 1, 2}, []int64{1, 2, 3}},
		{"out of order", []int64{0, 1, 2, 3, 4}, []int64{2, 0, 1, 4, 3}, []int64{1, 3, 5}},
		{"a gap holds everything after it", []int64{10, 11, 12, 13}, []int64{11, 12, 13}, nil},
		{"offsets with holes (compaction, transactions)", []int64{5, 9, 20}, []int64{9, 5, 20}, []int64{10, 21}},
		{"a mark of an offset not consumed here", []int64{3}, []int64{1, 3}, []int64{4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &commitTracker{done: map[int64]bool{}}
			for _, o := range tc.consumed {
				tr.consumed(o)
			}
			var got []int64
			for _, m := range tc.marks {
				if next, ok := tr.marked(m); ok {
					got = append(got, next)
				}
			}
			if !slices.Equal(got, tc.commits) {
				t.Errorf("commits %v, want %v", got, tc.commits)
			}
		})
	}
}

// failingProducer fails the emit of one key, and reports the failure only
// after a later message's emit has succeeded: the order a broker outage
// produces, in which Goka marks later offsets before the failure is known.
type failingProducer struct {
	goka.Producer
	failKey, afterKey string
	after             chan struct{}
}

func (p *failingProducer) EmitWithHeaders(topic, key string, value []byte, h goka.Headers) *goka.Promise {
	if key == p.failKey {
		prom, finish := goka.NewPromiseWithFinisher()
		go func() {
			<-p.after
			finish(nil, errors.New("injected: broker unavailable"))
		}()
		return prom
	}
	prom := p.Producer.EmitWithHeaders(topic, key, value, h)
	if key == p.afterKey {
		prom.Then(func(err error) {
			if err == nil {
				close(p.after)
			}
		})
	}
	return prom
}

// TestFailedEmitIsNeverCommittedPast runs a Goka processor whose emit for
// one message fails after later messages succeeded. The processor stops,
// and the group's committed offset stays at the failed message, so a
// restarted processor redoes it: nothing is lost.
func TestFailedEmitIsNeverCommittedPast(t *testing.T) {
	b := testkit.Broker(t, "")
	addr := b.Addr()
	ctx := testkit.Context(t)
	testkit.CreateTopic(t, addr, "commit-in", 1, nil)
	testkit.CreateTopic(t, addr, "commit-out", 1, nil)
	cl := testkit.Client(t, addr)
	const n = 200
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Topic: "commit-in", Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte("v")}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	env := Env{Brokers: []string{addr}, Catalogue: topics.New(1, 1), Log: testkit.Logger(t)}
	const group = "commit-test"
	graph := goka.DefineGroup(group,
		goka.Input("commit-in", new(codec.String), func(gctx goka.Context, msg any) { gctx.Emit("commit-out", gctx.Key(), msg) }),
		goka.Output("commit-out", new(codec.String)),
	)
	run := func(fail bool) error {
		opts := env.ProcessorOptions()
		if fail {
			opts = append(opts, goka.WithProducerBuilder(func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
				p, err := env.producerBuilder(brokers, clientID, hasher)
				return &failingProducer{Producer: p, failKey: "k050", afterKey: "k120", after: make(chan struct{})}, err
			}))
		}
		p, err := goka.NewProcessor(env.Brokers, graph, opts...)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if fail {
			return p.Run(rctx)
		}
		// The healthy run: stop once every input is accounted for.
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx) }()
		testkit.Eventually(t, time.Minute, "the restarted processor to catch up", func() bool { return committed(t, addr, group) == n })
		cancel()
		return <-done
	}
	if err := run(true); err == nil {
		t.Fatalf("processor with a failing emit: %v, want an error", err)
	}
	if got := committed(t, addr, group); got > 50 {
		t.Fatalf("committed offset %d is past the failed message at offset 50: its output is lost", got)
	} else {
		t.Logf("after the failed emit the group's committed offset is %d (failed message at 50)", got)
	}
	if err := run(false); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range testkit.ReadCommitted(t, addr, "commit-out") {
		out[string(r.Key)] = true
	}
	if len(out) != n {
		t.Errorf("%d of %d keys reached the output", len(out), n)
	}
}

func committed(t *testing.T, addr, group string) int64 {
	return committedOf(t, addr, group, "commit-in")
}

func committedOf(t *testing.T, addr, group, topic string) int64 {
	t.Helper()
	adm := kadm.NewClient(testkit.Client(t, addr))
	offs, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup(topic, 0)
	if !ok {
		return 0
	}
	return o.At
}

// TestFailDuringShutdownIsNotCommitted: a callback cut short by shutdown
// (it sees its context end mid-work, as a delivery does) and calls Fail
// must leave its message uncommitted, so the next owner redoes it.
// Goka's own ctx.Fail commits it in that case.
func TestFailDuringShutdownIsNotCommitted(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(goka.Context, error)
		lost bool
	}{
		{"stage.Fail", Fail, false},
		{"goka ctx.Fail (what stage.Fail prevents)", func(ctx goka.Context, err error) { ctx.Fail(err) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testkit.Broker(t, "")
			addr := b.Addr()
			ctx := testkit.Context(t)
			testkit.CreateTopic(t, addr, "commit-in", 1, nil)
			cl := testkit.Client(t, addr)
			for i := range 20 {
				cl.Produce(ctx, &kgo.Record{Topic: "commit-in", Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte("v")}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			const group = "fail-test"
			inFlight := make(chan struct{})
			graph := goka.DefineGroup(group, goka.Input("commit-in", new(codec.String), func(gctx goka.Context, _ any) {
				if gctx.Key() != "k010" {
					return
				}
				close(inFlight)
				<-gctx.Context().Done() // the delivery is cut short by shutdown
				tc.fail(gctx, gctx.Context().Err())
			}))
			env := Env{Brokers: []string{addr}, Catalogue: topics.New(1, 1), Log: testkit.Logger(t)}
			p, err := goka.NewProcessor(env.Brokers, graph, env.ProcessorOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- p.Run(rctx) }()
			<-inFlight
			cancel()
			<-done
			got := committedOf(t, addr, group, "commit-in")
			if lost := got > 10; lost != tc.lost {
				t.Errorf("committed offset %d with the message at offset 10 cut short (lost: %v, want %v)", got, lost, tc.lost)
			}
		})
	}
}

// brokenProducer fails every emit, as a broker outage does.
type brokenProducer struct{ goka.Producer }

func (brokenProducer) EmitWithHeaders(string, string, []byte, goka.Headers) *goka.Promise {
	p, finish := goka.NewPromiseWithFinisher()
	finish(nil, errors.New("injected: broker unavailable"))
	return p
}

// TestFailedChangelogWriteDistrustsTheStore: when a table row's changelog
// write fails, the local stores of that table are failed, so they are not
// closed as clean and the next start restores them from the changelog.
// Writes to other topics leave the stores alone.
func TestFailedChangelogWriteDistrustsTheStore(t *testing.T) {
	reg := state.NewRegistry()
	b, err := state.Builder(t.TempDir(), state.Options{Logger: testkit.Logger(t)}, reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := b("send-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Open(); err != nil {
		t.Fatal(err)
	}
	g := changelogGuard{Producer: brokenProducer{}, reg: reg, log: testkit.Logger(t)}
	g.EmitWithHeaders("delivery.results", "M1", []byte("v"), nil)
	store := reg.Store("send-table", 0)
	if err := store.Failed(); err != nil {
		t.Fatalf("a failed write to a stream failed the store: %v", err)
	}
	g.EmitWithHeaders("send-table", "M1", []byte("v"), nil)
	if err := store.Failed(); !errors.Is(err, state.ErrFailed) {
		t.Fatalf("store after a failed changelog write: %v, want ErrFailed", err)
	}
	if err := st.Close(); err == nil {
		t.Error("Close of a store whose changelog write failed reported success")
	}
}

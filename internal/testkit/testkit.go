// Package testkit starts real things for tests: the embedded broker on a
// free port, topics from the catalogue, and Debian's kcat as an outside
// client.
package testkit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/broker"
)

// Logger returns a logger that writes to the test log only with -v
// (RTM_TEST_LOG=debug for broker-level detail).
func Logger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("RTM_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Broker starts an embedded broker on a free loopback port, persisted under
// dataDir if it is not empty, and closes it when the test ends.
func Broker(t testing.TB, dataDir string) *broker.Broker {
	t.Helper()
	cfg := broker.Defaults()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = dataDir
	b, err := broker.Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Client returns a franz-go client for addr, closed when the test ends.
func Client(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// CreateTopic creates a topic with the given partitions.
func CreateTopic(t testing.TB, addr, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := kadm.NewClient(Client(t, addr))
	resp, err := adm.CreateTopic(Context(t), partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
}

// Context returns a context cancelled when the test ends, with a generous
// deadline so a hung test fails instead of eating CI's budget.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Kcat runs Debian's kcat with args and stdin, and returns its stdout. The
// test is skipped when kcat is missing locally, but fails in CI (CI=true),
// where .ci/run installs it.
func Kcat(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed (apt-get install -y kcat)")
		}
		t.Skip("kcat is not installed (apt-get install -y kcat)")
	}
	ctx, cancel := context.WithTimeout(Context(t), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = bytes.NewBufferString(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// Eventually polls cond until it returns true or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ReadCommitted returns every committed, non-control record of the topics,
// read with read_committed up to each partition's end at the time of the
// call: what a transactional consumer downstream sees.
func ReadCommitted(t testing.TB, addr string, topics ...string) []*kgo.Record {
	t.Helper()
	return ReadCommittedWith(t, addr, nil, topics...)
}

// ReadCommittedWith is ReadCommitted with the caller's connection options
// (e.g. TLS and SASL).
func ReadCommittedWith(t testing.TB, addr string, conn []kgo.Opt, topics ...string) []*kgo.Record {
	t.Helper()
	ends, err := kadm.NewClient(Client(t, addr, conn...)).ListCommittedOffsets(Context(t), topics...)
	if err != nil {
		t.Fatal(err)
	}
	todo := map[string]bool{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			todo[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = true
		}
	})
	cl := Client(t, addr, append(slices.Clone(conn), kgo.ConsumeTopics(topics...), kgo.KeepControlRecords(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	var out []*kgo.Record
	for len(todo) > 0 {
		fs := cl.PollFetches(Context(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, _ := ends.Lookup(r.Topic, r.Partition)
			if r.Offset >= end.Offset-1 {
				delete(todo, fmt.Sprintf("%s/%d", r.Topic, r.Partition))
			}
			if !r.Attrs.IsControl() && r.Offset < end.Offset {
				out = append(out, r)
			}
		})
	}
	return out
}

// WaitCaughtUp waits until each consumer group, in the order given, is
// stable and has committed every record of the topics it consumes (lag zero
// on every assigned partition), except topics in except. Pass a pipeline's
// groups upstream first: Goka commits a record only once what it emitted is
// acknowledged, so a group found caught up after its upstream has also
// consumed everything the upstream emitted. This proves that nothing more
// is coming, where a sleep would only hope so. The deadline only bounds a
// hang.
func WaitCaughtUp(t testing.TB, addr string, except []string, groups ...string) {
	t.Helper()
	WaitCaughtUpWith(t, Client(t, addr), except, groups...)
}

// WaitCaughtUpWith is WaitCaughtUp over the caller's client (e.g. one
// that authenticates).
func WaitCaughtUpWith(t testing.TB, cl *kgo.Client, except []string, groups ...string) {
	t.Helper()
	adm := kadm.NewClient(cl)
	for _, g := range groups {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			why := lagging(Context(t), adm, g, except)
			if why == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for group %s to catch up: %s", g, why)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// lagging says why group has not caught up, or "" when it has.
func lagging(ctx context.Context, adm *kadm.Client, group string, except []string) string {
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return err.Error()
	}
	l := lags[group]
	if err := l.Error(); err != nil {
		return err.Error()
	}
	if l.State != "Stable" {
		return "state " + l.State
	}
	n := 0
	for _, ml := range l.Lag.Sorted() {
		if slices.Contains(except, ml.Topic) {
			continue
		}
		if ml.Err != nil || ml.Lag != 0 {
			return fmt.Sprintf("%s/%d lags by %d (%v)", ml.Topic, ml.Partition, ml.Lag, ml.Err)
		}
		n++
	}
	if n == 0 {
		return "no partitions assigned"
	}
	return ""
}

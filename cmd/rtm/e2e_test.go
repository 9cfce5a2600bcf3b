package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/rtm-project/rtm/internal/localcluster"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

// rtmBin is the rtm binary the end-to-end tests run as a process: this test
// binary itself, which holds the same package main and runs it when
// asRTM is set in its environment, so no second copy is built and linked.
var rtmBin string

const asRTM = "RTM_E2E_RUN_AS_RTM"

func TestMain(m *testing.M) {
	if os.Getenv(asRTM) == "1" {
		main()
		os.Exit(0)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "finding the test binary: %v\n", err)
		os.Exit(1)
	}
	rtmBin = exe
	// Inherited by every process the tests start (rtm, and kcat, which
	// ignores it).
	os.Setenv(asRTM, "1")
	os.Exit(m.Run())
}

// freeAddr is localcluster.FreeAddr: never the same port twice.
func freeAddr(t *testing.T) string {
	t.Helper()
	return localcluster.FreeAddr()
}

// startBroker runs `rtm broker` as a process and waits until it answers.
func startBroker(t *testing.T, addr, dataDir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(rtmBin, "broker", "--broker-addr", addr, "--data-dir", dataDir, "--log-level", "warn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	testkit.Eventually(t, 30*time.Second, "broker to listen on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

func stopBroker(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("broker exited with %v", err)
	}
}

func rtm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(rtmBin, args...).CombinedOutput()
	return string(out), err
}

// TestBrokerWithStockClients drives `rtm broker` and `rtm topics apply` from
// outside with kcat (librdkafka): metadata, produce, consume, a consumer
// group, and a restart that keeps topics, records and committed offsets.
func TestBrokerWithStockClients(t *testing.T) {
	t.Parallel()
	addr, data := freeAddr(t), t.TempDir()
	b := startBroker(t, addr, data)

	out, err := rtm(t, "topics", "apply", "--brokers", addr, "--partitions", "4")
	if err != nil {
		t.Fatalf("topics apply: %v\n%s", err, out)
	}
	cat := topics.New(4, 1)
	if !strings.Contains(out, fmt.Sprintf("%d created", len(cat.Topics))) {
		t.Fatalf("first apply should create every topic:\n%s", out)
	}
	out, err = rtm(t, "topics", "apply", "--brokers", addr, "--partitions", "4")
	if err != nil || !strings.Contains(out, "no changes") {
		t.Fatalf("second apply: %v\n%s", err, out)
	}

	// kcat sees every topic with its declared partition count.
	md := testkit.Kcat(t, "", "-b", addr, "-L")
	for _, tp := range cat.Topics {
		want := fmt.Sprintf("topic \"%s\" with %d partitions", tp.Name, tp.Partitions)
		if !strings.Contains(md, want) {
			t.Errorf("kcat -L lacks %q", want)
		}
	}
	// and the cluster reports the declared cleanup policies.
	adm := kadm.NewClient(testkit.Client(t, addr))
	cfgs, err := adm.DescribeTopicConfigs(testkit.Context(t), topics.Rules, topics.OffersFiltered)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range cfgs {
		tp, _ := cat.Lookup(rc.Name)
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && (c.Value == nil || *c.Value != string(tp.Cleanup)) {
				t.Errorf("%s: cleanup.policy %v, want %s", rc.Name, c.Value, tp.Cleanup)
			}
		}
	}

	// Produce and consume with kcat.
	testkit.Kcat(t, "M1:hello\nM2:こんにちは\nM3:bye\n", "-b", addr, "-P", "-t", topics.BehaviorEvents, "-K:", "-X", "partitioner=murmur2_random")
	got := testkit.Kcat(t, "", "-b", addr, "-C", "-t", topics.BehaviorEvents, "-o", "beginning", "-e", "-f", "%k=%s\n")
	for _, want := range []string{"M1=hello", "M2=こんにちは", "M3=bye"} {
		if !strings.Contains(got, want) {
			t.Errorf("kcat consumed %q, missing %q", got, want)
		}
	}
	// A kcat consumer group reads everything and commits its offsets.
	testkit.Kcat(t, "", "-b", addr, "-G", "kcat-group", "-c", "3", "-o", "beginning", "-f", "%k\n", topics.BehaviorEvents)
	committed := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		offs, err := adm.FetchOffsets(ctx, "kcat-group")
		if err != nil {
			return -1
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum
	}
	testkit.Eventually(t, 20*time.Second, "kcat-group to commit 3 records", func() bool { return committed() == 3 })

	// Restart: topics, records and offsets survive.
	stopBroker(t, b)
	startBroker(t, addr, data)
	out, err = rtm(t, "topics", "apply", "--brokers", addr, "--partitions", "4")
	if err != nil || !strings.Contains(out, "no changes") {
		t.Fatalf("apply after restart: %v\n%s", err, out)
	}
	got = testkit.Kcat(t, "", "-b", addr, "-C", "-t", topics.BehaviorEvents, "-o", "beginning", "-e", "-f", "%k=%s\n")
	if !strings.Contains(got, "M2=こんにちは") {
		t.Errorf("after restart kcat consumed %q", got)
	}
	adm = kadm.NewClient(testkit.Client(t, addr))
	if c := committed(); c != 3 {
		t.Errorf("after restart kcat-group has committed %d records, want 3", c)
	}
}

func TestTopicsApplyReportsDrift(t *testing.T) {
	b := testkit.Broker(t, "")
	testkit.CreateTopic(t, b.Addr(), topics.OffersFiltered, 3, nil)
	testkit.CreateTopic(t, b.Addr(), topics.Rules, 1, nil) // should be compacted
	out, err := rtm(t, "topics", "apply", "--brokers", b.Addr(), "--partitions", "4")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("apply with drift: err %v, want exit status 2\n%s", err, out)
	}
	for _, want := range []string{
		"offers.filtered: partitions is 3, catalogue says 4",
		"rules: cleanup.policy is delete, catalogue says compact",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestRulesCommands: the example workbook validates, publishes to the
// embedded broker, `rtm rules list` shows it, and publishing it again
// changes nothing.
func TestRulesCommands(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	startBroker(t, addr, t.TempDir())
	if out, err := rtm(t, "topics", "apply", "--brokers", addr, "--partitions", "2"); err != nil {
		t.Fatalf("topics apply: %v\n%s", err, out)
	}
	const wb = "../../rules/examples/rtm-rules.xlsx"
	out, err := rtm(t, "rules", "validate", wb)
	if err != nil || !strings.Contains(out, "ok: 5 tables") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	// Without a terminal to confirm on, publish refuses unless told --yes.
	out, err = rtm(t, "rules", "publish", "--brokers", addr, "--author", "e2e", wb)
	if err == nil || !strings.Contains(out, "pass --yes") {
		t.Fatalf("publish without --yes and without a terminal: %v, want a refusal naming --yes\n%s", err, out)
	}
	out, err = rtm(t, "rules", "publish", "--yes", "--brokers", addr, "--author", "e2e", wb)
	if err != nil || !strings.Contains(out, "added campaigns") || !strings.Contains(out, "simulated 0 events") {
		t.Fatalf("publish: %v\n%s", err, out)
	}
	out, err = rtm(t, "rules", "list", "--brokers", addr)
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, table := range []string{"campaigns", "member-filters", "channels", "timing", "templates"} {
		if !strings.Contains(out, table) || !strings.Contains(out, "e2e") {
			t.Errorf("rules list lacks %s by e2e:\n%s", table, out)
		}
	}
	if out, err = rtm(t, "rules", "publish", "--yes", "--no-simulate", "--brokers", addr, wb); err != nil || !strings.Contains(out, "no changes") {
		t.Fatalf("second publish: %v\n%s", err, out)
	}
	out, err = rtm(t, "rules", "diff", "--brokers", addr, wb)
	if err != nil {
		t.Fatalf("diff: %v\n%s", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "unchanged ") {
			t.Errorf("diff after publishing reports a change: %q", l)
		}
	}
}

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/member"
)

const exampleRules = "../../rules/examples/rtm-rules.xlsx"

// runProc is an `rtm run` child process and what it printed.
type runProc struct {
	cmd  *exec.Cmd
	http string
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *runProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *runProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// channelEnv lets the send stage build its adapters (they refuse empty
// credentials); nothing is sent in these tests.
var channelEnv = []string{"RTM_LINE_TOKEN=t", "RTM_FCM_TOKEN=t", "RTM_FCM_PROJECT=p",
	"RTM_INBOX_JWT_ISSUER=https://shop.example.jp", "RTM_INBOX_JWT_HS256_KEYS=dev:" + inboxSecret}

// inboxSecret is the shop's HS256 key of member tokens in these tests.
const inboxSecret = "e2e-inbox-secret-0123456789abcdef"

// startRun starts `rtm run` with args and its own http address.
func startRun(t *testing.T, env []string, args ...string) *runProc {
	t.Helper()
	p := &runProc{http: freeAddr(t), done: make(chan struct{})}
	p.cmd = exec.Command(rtmBin, append([]string{"run", "--http-addr", p.http, "--log-level", "info"}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("rtm run %v output:\n%s", args, p.output())
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit error and how long it took.
func (p *runProc) stop(t *testing.T, within time.Duration) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err, time.Since(start)
	case <-time.After(within):
		t.Fatalf("rtm run did not exit within %v of SIGTERM", within)
		return nil, 0
	}
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitReady polls /readyz until 200 and returns the not-ready answers seen
// before it.
func (p *runProc) waitReady(t *testing.T) []string {
	t.Helper()
	var notReady []string
	testkit.Eventually(t, 2*time.Minute, "/readyz of "+p.http+" to answer 200", func() bool {
		select {
		case <-p.done:
			t.Fatalf("rtm run exited early: %v", p.err)
		default:
		}
		code, body, err := get("http://" + p.http + "/readyz")
		if err != nil {
			return false
		}
		if code != http.StatusOK {
			notReady = append(notReady, body)
		}
		return code == http.StatusOK
	})
	return notReady
}

// metric returns the value of one sample line of /metrics.
func (p *runProc) metric(t *testing.T, sample string) float64 {
	t.Helper()
	_, body, err := get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// provision applies the catalogue (4 partitions) and publishes the
// example rules.
func provision(t *testing.T, addr string) { provisionN(t, addr, 4) }

func provisionN(t *testing.T, addr string, partitions int) {
	t.Helper()
	if out, err := rtm(t, "topics", "apply", "--brokers", addr, "--partitions", strconv.Itoa(partitions)); err != nil {
		t.Fatalf("topics apply: %v\n%s", err, out)
	}
	if out, err := rtm(t, "rules", "publish", "--yes", "--brokers", addr, "--author", "e2e", exampleRules); err != nil {
		t.Fatalf("rules publish: %v\n%s", err, out)
	}
}

// seedMembers writes n profiles to the member table's
// changelog, so the stages that join it have a table to recover; pad makes
// each about that many bytes larger (to fill a memtable).
func seedMembers(t *testing.T, addr string, n, pad int) {
	t.Helper()
	cl := testkit.Client(t, addr, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	ctx := testkit.Context(t)
	padding := strings.Repeat("x", pad)
	for i := range n {
		id := fmt.Sprintf("M%07d", i)
		v, err := member.Codec{}.Encode(&member.Profile{MemberID: id, Exists: true, Email: id + padding + "@example.jp", MailOptIn: true})
		if err != nil {
			t.Fatal(err)
		}
		cl.Produce(ctx, &kgo.Record{Topic: string(member.Table), Key: []byte(id), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// storeFiles lists the files under dir (the stages' Pebble stores).
func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	return files
}

// TestRunIsAnOperableProcess runs `rtm run --stage filter --stage send
// --stage inbox` as its own process against the broker: /readyz is 503
// while the stages start and recover, 200 after; /healthz, /metrics and the
// inbox API answer; a second process on the same instance directory refuses
// to start and deletes nothing; SIGTERM exits 0 and leaves every store
// marked clean.
func TestRunIsAnOperableProcess(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	addr := freeAddr(t)
	startBroker(t, addr, t.TempDir())
	provision(t, addr)
	seedMembers(t, addr, 20000, 0)

	data := t.TempDir()
	args := []string{"--stage", "filter", "--stage", "send", "--stage", "inbox", "--brokers", addr, "--partitions", "4",
		"--data-dir", data, "--instance-id", "filter-0", "--shutdown-timeout", "20s"}
	first := startRun(t, channelEnv, args...)
	notReady := first.waitReady(t)
	if len(notReady) == 0 {
		t.Error("/readyz never answered 503 before the stages were ready")
	} else if t.Logf("first not-ready answer: %s", notReady[0]); !strings.Contains(notReady[0], `"filter"`) && !strings.Contains(notReady[0], `"rules"`) {
		t.Errorf("a not-ready answer does not name what is not ready: %s", notReady[0])
	}
	if code, body, err := get("http://" + first.http + "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz: %d %q %v", code, body, err)
	}
	// The inbox answers the member's own token only, and nothing else.
	if code, body, err := get("http://" + first.http + "/v1/inbox/M0000001"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("inbox API without a token: %d %q %v, want 401", code, body, err)
	}
	tok, err := devInboxToken(inboxSecret, "https://shop.example.jp", "rtm-inbox", "M0000001")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+first.http+"/v1/inbox/M0000001", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("inbox API with the member's token: %v %v", resp, err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"messages"`) {
			t.Errorf("inbox API with the member's token: %q", b)
		}
	}
	for _, sample := range []string{`rtm_stage_ready{stage="filter"}`, `rtm_stage_ready{stage="send"}`,
		`rtm_stage_ready{stage="rules"}`, `rtm_rebalances_total{group="filter"}`} {
		if v := first.metric(t, sample); v < 1 {
			t.Errorf("/metrics: %s is %v, want >= 1", sample, v)
		}
	}

	instDir := filepath.Join(data, "filter-0")
	before := storeFiles(t, filepath.Join(instDir, "state"))
	if len(before) == 0 {
		t.Fatal("no store files under the instance directory")
	}
	second := startRun(t, channelEnv, args...)
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatal("a second rtm run on the same instance directory did not exit")
	}
	var ee *exec.ExitError
	if !errors.As(second.err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("second rtm run: exit %v, want a non-zero status", second.err)
	}
	if out := second.output(); !strings.Contains(out, "in use by another process") {
		t.Errorf("second rtm run does not say why it refused:\n%s", out)
	}
	if code, _, _ := get("http://" + first.http + "/readyz"); code != 200 {
		t.Errorf("first process not ready after the second was refused: %d", code)
	}
	after := storeFiles(t, filepath.Join(instDir, "state"))
	for _, f := range before {
		if _, err := os.Stat(f); err != nil && !strings.Contains(f, "LOCK") && strings.HasSuffix(f, ".sst") {
			t.Errorf("store file %s is gone after the second process", f)
		}
	}
	if len(after) == 0 {
		t.Error("the second process cleared the first one's stores")
	}

	err, took := first.stop(t, 30*time.Second)
	if err != nil {
		t.Fatalf("SIGTERM: exit %v after %v, want 0", err, took)
	}
	t.Logf("SIGTERM to exit: %v", took.Round(time.Millisecond))
	markers, _ := filepath.Glob(filepath.Join(instDir, "state", "filter", "*", "*", "CLEAN"))
	if len(markers) == 0 {
		t.Error("no store was marked clean by the graceful stop")
	}
}

// TestStaticMembershipRestartDoesNotRebalance restarts one of two filter
// instances with the same instance_id inside the session timeout: the other
// instance receives no new assignment (its rebalance count is unchanged).
// Not parallel: the restart must fit in the 10 s session timeout, a
// wall-clock window other tests' load would narrow.
func TestStaticMembershipRestartDoesNotRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	addr := freeAddr(t)
	startBroker(t, addr, t.TempDir())
	provision(t, addr)
	data := t.TempDir()
	common := []string{"--stage", "filter", "--brokers", addr, "--partitions", "4", "--data-dir", data}
	a := startRun(t, nil, append(common, "--instance-id", "filter-a")...)
	a.waitReady(t)
	b := startRun(t, nil, append(common, "--instance-id", "filter-b")...)
	b.waitReady(t)
	const sample = `rtm_rebalances_total{group="filter"}`
	testkit.Eventually(t, time.Minute, "filter-a to get its share after filter-b joined", func() bool { return a.metric(t, sample) >= 2 })
	before := a.metric(t, sample)

	if err, _ := b.stop(t, 30*time.Second); err != nil {
		t.Fatalf("SIGTERM of filter-b: %v", err)
	}
	b2 := startRun(t, nil, append(common, "--instance-id", "filter-b")...)
	b2.waitReady(t)
	if got := b2.metric(t, sample); got != 1 {
		t.Errorf("restarted filter-b: %v assignments, want 1", got)
	}
	if after := a.metric(t, sample); after != before {
		t.Errorf("filter-a went through a rebalance when filter-b restarted: assignments %v -> %v", before, after)
	}
}

// cpuSeconds is the CPU time a process has used so far (Linux).
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// TestFailedStoreEndsTheProcess injects ENOSPC into the filter stage's
// stores once it runs: the process turns not-ready with the error, uses
// no CPU while it waits to restart, and exits non-zero after max_failures
// consecutive failures, so its orchestrator restarts it.
func TestFailedStoreEndsTheProcess(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	addr := freeAddr(t)
	startBroker(t, addr, t.TempDir())
	// One partition, so the rows below fill one store's memtable.
	provisionN(t, addr, 1)
	p := startRun(t, []string{faultEnv + "=store-fail:filter"}, "--stage", "filter", "--brokers", addr, "--partitions", "1",
		"--data-dir", t.TempDir(), "--instance-id", "f0", "--max-failures", "3")
	p.waitReady(t)
	// Writes now fail: fill a memtable so the store must flush.
	seedMembers(t, addr, 40000, 1000)
	var body string
	testkit.Eventually(t, time.Minute, "/readyz to report the failed store", func() bool {
		var code int
		code, body, _ = get("http://" + p.http + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no space left on device")
	})
	t.Logf("not ready: %s", body)
	start, cpu0 := time.Now(), cpuSeconds(t, p.cmd.Process.Pid)
	select {
	case <-p.done:
		t.Fatal("exited before its restarts")
	case <-time.After(time.Second):
	}
	if share := (cpuSeconds(t, p.cmd.Process.Pid) - cpu0) / time.Since(start).Seconds(); share > 0.5 {
		t.Errorf("the failed process used %.0f%% of a core while waiting to restart", 100*share)
	} else {
		t.Logf("CPU while failed: %.1f%% of a core", 100*share)
	}
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the process did not give up")
	}
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want status 1", p.err)
	}
	if out := p.output(); !strings.Contains(out, "giving up after consecutive failures") {
		t.Errorf("the process does not say why it ended:\n%s", out)
	}
}

// TestShutdownIsBounded: with the filter stage's disk hung (writes block
// forever), SIGTERM still ends the process within shutdown_timeout (status
// 3, stores not marked clean), and a second signal ends it at once.
func TestShutdownIsBounded(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	addr := freeAddr(t)
	startBroker(t, addr, t.TempDir())
	provision(t, addr)
	for _, tc := range []struct {
		name     string
		signals  int
		wantCode int
	}{
		{"SIGTERM past shutdown_timeout", 1, exitShutdownTimeout},
		{"a second SIGTERM", 2, exitSecondSignal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			p := startRun(t, []string{faultEnv + "=store-hang:filter"}, "--stage", "filter", "--brokers", addr, "--partitions", "4",
				"--data-dir", data, "--instance-id", "f0", "--shutdown-timeout", "3s")
			p.waitReady(t)
			testkit.Eventually(t, time.Minute, "the fault to be armed", func() bool { return strings.Contains(p.output(), "injecting fault") })
			// Something for Close to flush to the hung disk.
			seedMembers(t, addr, 200, 1000)
			start := time.Now()
			for range tc.signals {
				p.cmd.Process.Signal(syscall.SIGTERM)
				time.Sleep(100 * time.Millisecond)
			}
			select {
			case <-p.done:
			case <-time.After(time.Minute):
				t.Fatal("the process did not exit")
			}
			t.Logf("exited %v after the first signal: %v", time.Since(start).Round(time.Millisecond), p.err)
			var ee *exec.ExitError
			if !errors.As(p.err, &ee) || ee.ExitCode() != tc.wantCode {
				t.Errorf("exit %v, want status %d", p.err, tc.wantCode)
			}
			if markers, _ := filepath.Glob(filepath.Join(data, "f0", "state", "filter", "*", "*", "CLEAN")); len(markers) > 0 {
				t.Errorf("stores marked clean by an unfinished shutdown: %v", markers)
			}
		})
	}
}

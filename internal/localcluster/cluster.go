// Package localcluster runs RTM as separate processes on this machine — the
// embedded broker persisted on disk, `rtm sinks`, and each stage instance as
// its own `rtm run` process with its own data directory — and starts, stops,
// kills and restarts them as an orchestrator would. The fault-injection
// suite (test/chaos) and the operations benchmark (bench/ops) are built on
// it, so both measure the binary operators run, not an in-process stand-in.
package localcluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Cluster is a set of processes of one rtm binary under one work directory.
type Cluster struct {
	Bin, Dir string
	// BrokerAddr is the embedded broker's address, once Boot has run.
	BrokerAddr string
	// SinkHTTP and SinkSMTP are the local sinks' addresses.
	SinkHTTP, SinkSMTP string
	// Faults counts the faults a caller injected (it adds to it);
	// Unexpected counts processes that exited on their own and were
	// restarted.
	Faults, Unexpected atomic.Int32

	start  time.Time
	mu     sync.Mutex
	procs  []*Proc
	broker *Proc
	sinks  *Proc
	// out is where notes go.
	out io.Writer
}

// Proc is one process the cluster runs.
type Proc struct {
	Name string
	// Stage is the stage an `rtm run` process runs ("" for others).
	Stage string
	// HTTP is the process's ops address (/healthz, /readyz, /metrics).
	HTTP string
	args []string
	env  []string
	// once is an environment for the next start only (a fault to inject).
	once []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// expected marks an exit the cluster caused (kill, release, stop).
	expected bool
	log      *os.File
	// started is when the current process was started.
	started time.Time
}

// New builds ./cmd/rtm into a new work directory under tmp.
func New(out io.Writer) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "rtm-cluster-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "rtm")
	if b, err := exec.Command("go", "build", "-o", bin, "./cmd/rtm").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("building rtm: %v\n%s", err, b)
	}
	return &Cluster{Bin: bin, Dir: dir, start: time.Now(), out: out}, nil
}

// Since is the time since the cluster was created, in seconds.
func (c *Cluster) Since() float64 { return time.Since(c.start).Seconds() }

// Note prints a time-stamped line.
func (c *Cluster) Note(format string, args ...any) {
	fmt.Fprintf(c.out, "%6.1fs  %s\n", c.Since(), fmt.Sprintf(format, args...))
}

// Boot starts the broker (persisted under the work directory), creates the
// topics with partitions partitions, publishes the example rules and
// starts the local sinks (keeping keep messages each).
func (c *Cluster) Boot(partitions, keep int) error {
	c.BrokerAddr, c.SinkHTTP, c.SinkSMTP = FreeAddr(), FreeAddr(), FreeAddr()
	c.broker = c.Add("broker", "", "broker", "--broker-addr", c.BrokerAddr, "--data-dir", filepath.Join(c.Dir, "broker"),
		"--log-level", "warn")
	c.Launch(c.broker)
	if err := WaitListen(c.BrokerAddr, 30*time.Second); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"topics", "apply", "--brokers", c.BrokerAddr, "--partitions", fmt.Sprint(partitions), "--replication", "1"},
		{"rules", "publish", "--yes", "--brokers", c.BrokerAddr, "--author", "localcluster", "rules/examples/rtm-rules.xlsx"},
	} {
		if out, err := exec.Command(c.Bin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("rtm %s: %v\n%s", strings.Join(args[:2], " "), err, out)
		}
	}
	c.sinks = c.Add("sinks", "", "sinks", "--sink-keep", fmt.Sprint(keep), "--sink-http-addr", c.SinkHTTP,
		"--sink-smtp-addr", c.SinkSMTP, "--http-addr", FreeAddr(), "--log-level", "warn")
	c.Launch(c.sinks)
	return WaitListen(c.SinkHTTP, 30*time.Second)
}

// ChannelEnv is the stages' environment: the send stage pointed at the
// local sinks, with LINE at lineURL (a proxy a test controls, or the
// sink), and the render and inbox stages' keys.
func (c *Cluster) ChannelEnv(lineURL string) []string {
	host, port, _ := net.SplitHostPort(c.SinkSMTP)
	return []string{"RTM_LINE_BASE_URL=" + lineURL, "RTM_LINE_TOKEN=rtm-dev-line-token",
		"RTM_FCM_BASE_URL=http://" + c.SinkHTTP, "RTM_FCM_TOKEN=rtm-dev-fcm-token", "RTM_FCM_PROJECT=rtm-dev",
		"RTM_SMTP_HOST=" + host, "RTM_SMTP_PORT=" + port, "RTM_SMTP_TLS=none",
		"RTM_TRACKING_SECRET=localcluster-tracking-secret-0123456789abcdef",
		// The inbox stage serves only members with a shop-issued token.
		"RTM_INBOX_JWT_ISSUER=localcluster", "RTM_INBOX_JWT_HS256_KEYS=lc:localcluster-inbox-key-0123456789abcdef0123"}
}

// AddStage adds (without starting) an instance of stage named name, with
// its state under <dir>/<stateDir>/<name>, and extra flags.
func (c *Cluster) AddStage(name, stage, stateDir string, partitions int, env []string, extra ...string) *Proc {
	args := append([]string{"run", "--stage", stage, "--brokers", c.BrokerAddr, "--partitions", fmt.Sprint(partitions),
		"--data-dir", filepath.Join(c.Dir, stateDir), "--instance-id", name, "--http-addr", FreeAddr(),
		"--shutdown-timeout", "15s", "--log-level", "warn"}, extra...)
	p := c.Add(name, stage, args...)
	p.env = env
	return p
}

// Add adds (without starting) a process running the rtm binary with args.
func (c *Cluster) Add(name, stage string, args ...string) *Proc {
	p := &Proc{Name: name, Stage: stage, args: append([]string{c.Bin}, args...)}
	for i, a := range args {
		if a == "--http-addr" && i+1 < len(args) {
			p.HTTP = args[i+1]
		}
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

// Remove forgets p (after it was stopped): it is no longer a stage.
func (c *Cluster) Remove(p *Proc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = slices.DeleteFunc(c.procs, func(q *Proc) bool { return q == p })
}

// InjectOnce sets environment variables for p's next start only.
func (p *Proc) InjectOnce(env ...string) {
	p.mu.Lock()
	p.once = env
	p.mu.Unlock()
}

// Started is when p's current process started.
func (p *Proc) Started() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// WaitExit waits up to timeout for p's current process to exit and
// reports whether it did.
func (p *Proc) WaitExit(timeout time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Launch starts p and watches it: an exit the cluster did not cause is
// restarted after a second, as an orchestrator restarts a crashed pod.
func (c *Cluster) Launch(p *Proc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log == nil {
		p.log, _ = os.Create(filepath.Join(c.Dir, p.Name+".log"))
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = append(append(os.Environ(), p.env...), p.once...)
	p.once = nil
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		c.Note("starting %s: %v", p.Name, err)
		return
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expected, p.started = cmd, done, false, time.Now()
	go func() {
		err := cmd.Wait()
		close(done)
		p.mu.Lock()
		expected := p.expected || p.cmd != cmd
		p.mu.Unlock()
		if !expected {
			c.Unexpected.Add(1)
			c.Note("%s exited on its own (%v): restarting it", p.Name, err)
			time.Sleep(time.Second)
			c.Launch(p)
		}
	}()
}

// Signal sends sig to p and waits for it to exit (SIGKILL after wait).
func (c *Cluster) Signal(p *Proc, sig syscall.Signal, wait time.Duration) {
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
		c.Note("%s did not exit within %v of %v: killing it", p.Name, wait, sig)
		cmd.Process.Kill()
		<-done
	}
}

// Stages returns the stage instances, in the order they were added.
func (c *Cluster) Stages() []*Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Proc
	for _, p := range c.procs {
		if p.Stage != "" {
			out = append(out, p)
		}
	}
	return out
}

// Stage returns the stage instance named name, or nil.
func (c *Cluster) Stage(name string) *Proc {
	for _, p := range c.Stages() {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// RestartBroker stops the broker with SIGTERM, waits down, and starts it
// again on the same data directory.
func (c *Cluster) RestartBroker(down time.Duration) error {
	c.Signal(c.broker, syscall.SIGTERM, 30*time.Second)
	time.Sleep(down)
	c.Launch(c.broker)
	return WaitListen(c.BrokerAddr, 30*time.Second)
}

// Ready reports whether p answers /readyz with 200.
func (p *Proc) Ready() bool {
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get("http://" + p.HTTP + "/readyz")
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitReady waits until p answers /readyz with 200 and returns the time
// from its start.
func (p *Proc) WaitReady(timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for !p.Ready() {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s not ready after %v", p.Name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(p.Started()), nil
}

// WaitAllReady waits until every stage instance is ready.
func (c *Cluster) WaitAllReady(timeout time.Duration) error {
	for _, p := range c.Stages() {
		if _, err := p.WaitReady(timeout); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every process (stages first, then the sinks and the broker)
// and removes the work directory unless keep.
func (c *Cluster) Close(keep bool) {
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		if p != c.broker && p != c.sinks {
			wg.Go(func() { c.Signal(p, syscall.SIGTERM, 20*time.Second) })
		}
	}
	wg.Wait()
	for _, p := range []*Proc{c.sinks, c.broker} {
		if p != nil {
			c.Signal(p, syscall.SIGTERM, 20*time.Second)
		}
	}
	if keep {
		fmt.Fprintln(c.out, "work directory (logs of every process):", c.Dir)
		return
	}
	os.RemoveAll(c.Dir)
}

// LogCount counts the lines of every process's log that contain substr.
func (c *Cluster) LogCount(substr string) int {
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
	n := 0
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err == nil {
			n += strings.Count(string(b), substr)
		}
	}
	return n
}

// WaitListen waits until something accepts connections on addr.
func WaitListen(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %v", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitHTTP200 waits until u answers 200.
func WaitHTTP200(u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cl := http.Client{Timeout: time.Second}
	for {
		resp, err := cl.Get(u)
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

// FreeAddr returns a loopback address nothing listens on, never the same
// one twice in a process.
func FreeAddr() string {
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The kernel may give a closed port out again at once: two calls
		// in a row then name the same port for two processes, and the
		// second to start never binds it (a chaos run restarted detect
		// for three minutes on member-state's port).
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// handedOut are the addresses FreeAddr has returned in this process.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

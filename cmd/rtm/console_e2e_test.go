package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/testkit"
)

// TestConsoleIsAnOperableProcess runs `rtm console` against `rtm broker`
// with the example rules published: it refuses to start without a token,
// serves /healthz, /readyz and /metrics next to the console, shows the
// readiness of the stage URLs it is given (itself, and one that does not
// answer), lists the rules in force, counts the sign-in, and stops
// cleanly on Ctrl-C.
func TestConsoleIsAnOperableProcess(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	startBroker(t, addr, t.TempDir())
	if out, err := rtm(t, "topics", "apply", "--brokers", addr, "--partitions", "2"); err != nil {
		t.Fatalf("topics apply: %v\n%s", err, out)
	}
	if out, err := rtm(t, "rules", "publish", "--yes", "--brokers", addr, "--author", "e2e", "../../rules/examples/rtm-rules.xlsx"); err != nil {
		t.Fatalf("rules publish: %v\n%s", err, out)
	}
	if out, err := rtm(t, "console", "--brokers", addr); err == nil || !strings.Contains(out, "RTM_CONSOLE_ADMIN_TOKEN") {
		t.Fatalf("rtm console without a token: %v\n%s", err, out)
	}

	const token = "e2e-console-token-0123456789abcdef-0123456789"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, dead := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rtmBin, "console", "--brokers", addr, "--partitions", "2", "--http-addr", httpAddr,
		"--console-stage-urls", "http://"+httpAddr+",http://"+dead, "--shutdown-timeout", "10s", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "RTM_CONSOLE_ADMIN_TOKEN_FILE="+tokenFile)
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	base := "http://" + httpAddr
	testkit.Eventually(t, 30*time.Second, "rtm console's /readyz to answer 200", func() bool {
		code, _, err := get(base + "/readyz")
		return err == nil && code == http.StatusOK
	})
	if code, body, err := get(base + "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz: %d %q %v", code, body, err)
	}

	jar, _ := cookiejar.New(nil)
	cl := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	page := func(path string, form url.Values) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		if form == nil {
			resp, err = cl.Get(base + path)
		} else {
			resp, err = cl.PostForm(base+path, form)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// / leads to the console, which leads a stranger to the sign-in page.
	code, body := page("/", nil)
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if code != http.StatusOK || csrf == nil || !strings.Contains(body, `id="login-token"`) {
		t.Fatalf("GET / as a stranger: %d\n%s", code, body)
	}
	code, body = page("/console/login", url.Values{"csrf": {csrf[1]}, "user": {"e2e-user"}, "token": {token}, "next": {"/console/"}})
	if code != http.StatusOK || !strings.Contains(body, `<span id="user">e2e-user</span>`) {
		t.Fatalf("signing in: %d\n%s", code, body)
	}
	// The pipeline: this process's own component, and the stage URL
	// that does not answer.
	if !regexp.MustCompile(`data-stage="console">\s*<td>console</td>\s*<td><div><span class="state ok">running</span>`).MatchString(body) {
		t.Errorf("the pipeline page does not show the console running:\n%s", body)
	}
	if !strings.Contains(body, "not readable: http://"+dead) {
		t.Errorf("the pipeline page does not name the stage URL that did not answer:\n%s", body)
	}
	if !strings.Contains(body, `data-stage="member-state">`) {
		t.Errorf("the pipeline page does not list the stages:\n%s", body)
	}
	code, body = page("/console/rules", nil)
	if code != http.StatusOK || !regexp.MustCompile(`data-table="timing">[\s\S]*?<td class="author">e2e</td>`).MatchString(body) {
		t.Errorf("rules page: %d\n%s", code, body)
	}
	if _, metrics, err := get(base + "/metrics"); err != nil || !strings.Contains(metrics, `rtm_console_signins_total{result="ok"} 1`) {
		t.Errorf("/metrics does not count the sign-in (%v)", err)
	}

	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		stopped = true
		if err != nil {
			t.Errorf("rtm console exited with %v after Ctrl-C", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("rtm console did not stop within 20s of Ctrl-C")
	}
}

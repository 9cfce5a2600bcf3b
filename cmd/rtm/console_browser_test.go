//go:build browser

package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/explain"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/pipeline"
	"github.com/rtm-project/rtm/rules/examples"
)

// TestConsoleInBrowser drives the web console of a running `rtm dev` (the
// simulated shop, every stage) in headless Chromium, as a marketer would:
// sign in with the token rtm dev printed; upload a workbook with a broken
// cell and see the error on that cell; upload a valid change, read its
// summary and publish it; roll it back after the confirmation page; look
// up a member who got an offer. A screenshot is saved after each step
// under the test's temporary directory, and also under
// $RTM_CONSOLE_SCREENSHOTS when it is set (docs/console.png comes from
// there).
//
// Build tag browser (make test-browser): make test does not compile
// chromedp. Chromium is Debian's (apt-get install -y chromium; .ci/run
// installs it).
func TestConsoleInBrowser(t *testing.T) {
	chromium := os.Getenv("RTM_CHROMIUM")
	if chromium == "" {
		var err error
		if chromium, err = exec.LookPath("chromium"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("chromium is not installed (apt-get install -y chromium)")
			}
			t.Skip("chromium is not installed (apt-get install -y chromium)")
		}
	}
	addr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rtmBin, "dev", "--data-dir", t.TempDir(), "--broker-addr", addr, "--http-addr", httpAddr,
		"--collector-addr", freeAddr(t), "--partitions", "4", "--members", "200", "--items", "40",
		"--sink-smtp-addr", freeAddr(t), "--sink-http-addr", freeAddr(t), "--log-level", "warn",
		"--console-poll-interval", "2s")
	stdout := startDev(t, cmd)
	// rtm dev prints the console's URL and the token it made.
	consoleLine := regexp.MustCompile(`web console\s+(http://\S+/console/)\s+\(sign in with your name and token ([0-9a-f]{64})\)`)
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := consoleLine.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var base, token string
	select {
	case m := <-found:
		base, token = m[1], m[2]
	case <-time.After(90 * time.Second):
		t.Fatal("rtm dev did not print the console's URL and token within 90s")
	}

	// A member with an offer: the first one the campaign stage chose.
	member := firstOfferMember(t, addr)

	shots := []string{t.TempDir()}
	if d := os.Getenv("RTM_CONSOLE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		shots = append(shots, d)
	}
	ctx := browser(t, chromium)
	step := 0
	shot := func(name string) {
		t.Helper()
		step++
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		for _, d := range shots {
			p := filepath.Join(d, name+".png")
			if err := os.WriteFile(p, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("step %d: %s.png (%d bytes) in %v", step, name, len(png), shots)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	// submit clicks a form's button and waits for the page it leads to.
	submit := func(sel string) int64 {
		t.Helper()
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("clicking %s: %v", sel, err)
		}
		return resp.Status
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// 1. Signing in: the console sends a stranger to the sign-in page.
	do("opening the console", chromedp.Navigate(base))
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); !strings.Contains(loc, "/console/login") {
		t.Fatalf("an unsigned visitor is at %s, want the sign-in page", loc)
	}
	do("filling in the sign-in form", chromedp.SendKeys(chromedp.ID("login-user"), "hanako"),
		chromedp.SendKeys(chromedp.ID("login-token"), token))
	shot("01-sign-in")
	if st := submit("#login-submit"); st != 200 {
		t.Fatalf("signing in: %d", st)
	}
	if u := text("#user"); u != "hanako" {
		t.Fatalf("signed in as %q", u)
	}
	// The pipeline: every stage running, with its lag and rates once two
	// lag readings are in.
	testkit.Eventually(t, 60*time.Second, "the pipeline page showing every stage running, with its lag and rates", func() bool {
		do("reloading the pipeline", chromedp.Navigate(base))
		for _, s := range pipeline.Stages() {
			if row := text(`#pipeline tr[data-stage="` + s + `"]`); !strings.Contains(row, "running") || strings.Contains(row, "—") {
				return false
			}
		}
		return true
	})
	shot("02-pipeline")

	// 2. A workbook with an error: the message is on its cell.
	dir := t.TempDir()
	broken := writeWorkbook(t, filepath.Join(dir, "broken", "rtm-rules.xlsx"), map[string]any{"Timing!E10": "25:00-08:00"})
	valid := writeWorkbook(t, filepath.Join(dir, "valid", "rtm-rules.xlsx"), map[string]any{"Timing!F11": 4})
	do("opening the rules", chromedp.Navigate(base+"rules"))
	liveVersion := text(`tr[data-table="timing"] .version`)
	do("choosing the broken workbook", chromedp.SetUploadFiles(chromedp.ID("workbook"), []string{broken}))
	if st := submit("#upload"); st != 422 {
		t.Fatalf("uploading a broken workbook: %d, want 422", st)
	}
	cell := text(`td.err[data-cell="Timing!E10"]`)
	if !strings.Contains(cell, "25:00-08:00") || !strings.Contains(cell, "quiet_hours") {
		t.Fatalf("cell Timing!E10 shows %q, want its value and the quiet_hours error", cell)
	}
	t.Logf("cell Timing!E10: %q", cell)
	shot("03-upload-error")

	// 3. A valid change: its row diff and summary, then Publish.
	do("opening the rules", chromedp.Navigate(base+"rules"))
	do("choosing the valid workbook", chromedp.SetUploadFiles(chromedp.ID("workbook"), []string{valid}))
	if st := submit("#upload"); st != 200 {
		t.Fatalf("uploading a valid workbook: %d", st)
	}
	summary := text("#simulate")
	// rtm simulate's summary: rtm dev's simulated shop is the traffic.
	if !strings.Contains(summary, "simulated ") || !strings.Contains(summary, " events from ") ||
		!strings.Contains(summary, "changed timing") || !strings.Contains(summary, "row 11 changed") {
		t.Fatalf("simulate summary: %q", summary)
	}
	if row := text(`section[data-change="timing"] tr.new[data-row="11"]`); !strings.Contains(row, "4") {
		t.Fatalf("the diff's row 11 reads %q", row)
	}
	shot("04-review")
	if st := submit("#publish"); st != 200 {
		t.Fatalf("publishing: %d", st)
	}
	if p := text("#published"); !strings.Contains(p, "timing") {
		t.Fatalf("after publishing: %q", p)
	}
	published := text(`tr[data-table="timing"] .version`)
	if published == liveVersion || text(`tr[data-table="timing"] .author`) != "hanako" {
		t.Fatalf("timing after publishing: version %s (was %s), author %q", published, liveVersion, text(`tr[data-table="timing"] .author`))
	}
	shot("05-published")

	// 4. Roll back, after the confirmation page.
	do("opening timing's versions", chromedp.Navigate(base+"rules/table/timing"))
	if cur := text("#versions tr.current .version"); cur != published {
		t.Fatalf("version in force %s, want the published %s", cur, published)
	}
	do("choosing the previous version", chromedp.Click(chromedp.CSS(`#versions tr:not(.current) a.rollback`)), chromedp.WaitVisible(chromedp.ID("confirm-rollback")))
	shot("06-rollback-confirm")
	if st := submit("#confirm-rollback"); st != 200 {
		t.Fatalf("rolling back: %d", st)
	}
	if cur := text("#versions tr.current .version"); cur != liveVersion {
		t.Fatalf("after the rollback %s is in force, want %s back", cur, liveVersion)
	}
	if !strings.Contains(text("#rolledback"), liveVersion) {
		t.Fatalf("rollback notice: %q", text("#rolledback"))
	}
	shot("07-rolled-back")

	// 5. A member's explanation.
	do("looking up a member", chromedp.Navigate(base+"members"), chromedp.SendKeys(chromedp.ID("member"), member))
	if st := submit("#lookup"); st != 200 {
		t.Fatalf("looking up %s: %d", member, st)
	}
	ex := text("#explanation")
	if !strings.Contains(ex, member) || !strings.Contains(ex, "campaign") || !strings.Contains(ex, "audience") {
		t.Fatalf("explanation of %s: %q", member, ex)
	}
	shot("08-member")

	// 6. Campaign results: rtm report's groups and uplift for the
	// example campaign that holds out 10% (price-drop-home).
	do("opening a campaign's results", chromedp.Navigate(base+"campaigns?campaign=price-drop-home"))
	rep := text("#report")
	for _, want := range []string{"campaign price-drop-home", "treatment", "holdout", "conversion rate"} {
		if !strings.Contains(rep, want) {
			t.Fatalf("campaign results lack %q: %q", want, rep)
		}
	}
	shot("09-campaign")
}

// browser starts headless Chromium with a fresh profile for the test.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// writeWorkbook writes the example workbook with cells changed to path.
func writeWorkbook(t *testing.T, path string, cells map[string]any) string {
	t.Helper()
	b, err := examples.Edited(cells)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// firstOfferMember waits for the campaign stage's first offer and
// returns its member.
func firstOfferMember(t *testing.T, addr string) string {
	t.Helper()
	cl := testkit.Client(t, addr, kgo.ConsumeTopics(explain.Topics[0]), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(testkit.Context(t), 2*time.Minute)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no offer on %s within 2 minutes", explain.Topics[0])
		}
		for it := fs.RecordIter(); !it.Done(); {
			if r := it.Next(); len(r.Key) > 0 {
				return string(r.Key)
			}
		}
	}
}

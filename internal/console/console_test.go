package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/lag"
	"github.com/rtm-project/rtm/internal/ops"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/rules"
	"github.com/rtm-project/rtm/rules/examples"
	"github.com/rtm-project/rtm/topics"
)

const testToken = "test-admin-token-0123456789abcdef0123456789"

// fixture is a console over an in-process broker holding the example
// rules, served by httptest, with a fake clock.
type fixture struct {
	t     *testing.T
	c     *Console
	srv   *httptest.Server
	addrs []string
	clock *testkit.Clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	addrs := cluster.ListenAddrs()
	adm := kadm.NewClient(testkit.Client(t, addrs[0]))
	compact, del := "compact", "delete"
	for topic, policy := range map[string]*string{topics.Rules: &compact, topics.RulesHistory: &del} {
		resp, err := adm.CreateTopic(t.Context(), 1, 1, map[string]*string{"cleanup.policy": policy}, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	specs, err := rules.ReadWorkbook(bytes.NewReader(examples.Workbook), examples.WorkbookName)
	if err != nil {
		t.Fatal(err)
	}
	pub := testkit.Client(t, addrs[0], kgo.TransactionalID("console-test-setup"))
	if _, err := rules.Publish(t.Context(), pub, specs, rules.PublishMeta{Author: "setup"}); err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	h := ops.NewHealth(nil)
	t.Cleanup(h.Close)
	h.Set("filter", ops.Status{State: ops.Running})
	c, err := New(Config{
		AdminToken: testToken,
		SessionTTL: time.Hour,
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
		},
		Partitions: 1,
		Groups:     []string{"filter"},
		Readiness:  LocalReadiness(h),
		Simulate: func(_ context.Context, specs []rules.TableSpec) (string, error) {
			return fmt.Sprintf("simulated %d tables", len(specs)), nil
		},
		Report: func(context.Context, string) (string, error) { return "", fmt.Errorf("no reports here") },
		Log:    testkit.Logger(t),
		Now:    clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return &fixture{t: t, c: c, srv: srv, addrs: addrs, clock: clock}
}

// browser is a client that keeps cookies and does not follow redirects,
// so tests see each answer.
func (f *fixture) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (f *fixture) do(cl *http.Client, method, path string, form url.Values) (*http.Response, string) {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return f.send(cl, req)
}

func (f *fixture) send(cl *http.Client, req *http.Request) (*http.Response, string) {
	f.t.Helper()
	resp, err := cl.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// formToken is the CSRF token of the first form on a page.
func (f *fixture) formToken(body string) string {
	f.t.Helper()
	m := hiddenCSRF.FindStringSubmatch(body)
	if m == nil {
		f.t.Fatalf("no csrf field on the page:\n%s", body)
	}
	return m[1]
}

// signIn signs cl in as user and returns the session's CSRF token.
func (f *fixture) signIn(cl *http.Client, user string) string {
	f.t.Helper()
	_, page := f.do(cl, "GET", Prefix+"/login", nil)
	resp, _ := f.do(cl, "POST", Prefix+"/login", url.Values{"csrf": {f.formToken(page)}, "user": {user}, "token": {testToken}, "next": {Prefix + "/rules"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix+"/rules" {
		f.t.Fatalf("sign-in: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	_, page = f.do(cl, "GET", Prefix+"/rules", nil)
	return f.formToken(page)
}

func (f *fixture) uploadWorkbook(cl *http.Client, csrf, name string, data []byte) (*http.Response, string) {
	f.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if csrf != "" {
		mw.WriteField("csrf", csrf)
	}
	fw, _ := mw.CreateFormFile("workbook", name)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", f.srv.URL+Prefix+"/rules/upload", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return f.send(cl, req)
}

func (f *fixture) live(name string) rules.TableSpec {
	f.t.Helper()
	live, err := rules.List(f.t.Context(), testkit.Client(f.t, f.addrs[0]))
	if err != nil {
		f.t.Fatal(err)
	}
	return live[name]
}

func edited(t *testing.T, cells map[string]any) []byte {
	t.Helper()
	b, err := examples.Edited(cells)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnauthenticatedRequestsGoToSignIn(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ method, path, next string }{
		{"GET", Prefix + "/", Prefix + "/"},
		{"GET", Prefix + "/rules", Prefix + "/rules"},
		{"GET", Prefix + "/rules/table/timing", Prefix + "/rules/table/timing"},
		{"GET", Prefix + "/members?member=M1", Prefix + "/members?member=M1"},
		{"GET", Prefix + "/campaigns", Prefix + "/campaigns"},
		{"POST", Prefix + "/rules/upload", Prefix + "/"},
		{"POST", Prefix + "/rules/table/timing/rollback", Prefix + "/"},
		{"POST", Prefix + "/logout", Prefix + "/"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, _ := f.do(f.browser(), tc.method, tc.path, url.Values{"to": {"x"}})
			want := Prefix + "/login?next=" + url.QueryEscape(tc.next)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
				t.Errorf("%s %s: %s to %q, want 303 to %q", tc.method, tc.path, resp.Status, resp.Header.Get("Location"), want)
			}
		})
	}
}

func TestSignIn(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name        string
		user, token string
		loginCSRF   bool // send the sign-in page's token
		want        int
	}{
		{"right token", "hanako", testToken, true, http.StatusSeeOther},
		{"wrong token", "hanako", testToken + "x", true, http.StatusUnauthorized},
		{"empty token", "hanako", "", true, http.StatusUnauthorized},
		{"no name", "", testToken, true, http.StatusBadRequest},
		{"right token without the sign-in page's token", "hanako", testToken, false, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := f.browser()
			_, page := f.do(cl, "GET", Prefix+"/login", nil)
			form := url.Values{"user": {tc.user}, "token": {tc.token}}
			if tc.loginCSRF {
				form.Set("csrf", f.formToken(page))
			}
			resp, _ := f.do(cl, "POST", Prefix+"/login", form)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %s, want %d", resp.Status, tc.want)
			}
			signedIn := false
			for _, ck := range resp.Cookies() {
				if ck.Name == sessionCookie && ck.MaxAge > 0 {
					signedIn = true
					if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != Prefix {
						t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=%s", ck, Prefix)
					}
				}
			}
			if signedIn != (tc.want == http.StatusSeeOther) {
				t.Errorf("session cookie set: %v", signedIn)
			}
			resp, _ = f.do(cl, "GET", Prefix+"/rules", nil)
			if got := resp.StatusCode == http.StatusOK; got != signedIn {
				t.Errorf("GET rules after sign-in: %s", resp.Status)
			}
		})
	}
}

func TestSessionExpires(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	f.signIn(cl, "hanako")
	f.clock.Advance(time.Hour + time.Second)
	resp, _ := f.do(cl, "GET", Prefix+"/rules", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("an hour after sign-in (session_ttl 1h): %s, want a redirect to sign in", resp.Status)
	}
}

func TestPostNeedsTheSessionsCSRFToken(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	csrf := f.signIn(cl, "hanako")
	other := f.signIn(f.browser(), "taro")
	v := f.live("timing").Meta.Version
	for _, tc := range []struct {
		name, csrf string
		want       int
	}{
		{"no token", "", http.StatusForbidden},
		{"wrong token", "x" + csrf[1:], http.StatusForbidden},
		{"another session's token", other, http.StatusForbidden},
		{"the session's token", csrf, http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{"to": {v}, "from": {v}}
			if tc.csrf != "" {
				form.Set("csrf", tc.csrf)
			}
			resp, _ := f.do(cl, "POST", Prefix+"/rules/table/timing/rollback", form)
			if resp.StatusCode != tc.want {
				t.Errorf("rollback POST: %s, want %d", resp.Status, tc.want)
			}
			resp, _ = f.uploadWorkbook(cl, tc.csrf, "rtm-rules.xlsx", examples.Workbook)
			if want := map[bool]int{true: http.StatusForbidden, false: http.StatusSeeOther}[tc.want == http.StatusForbidden]; resp.StatusCode != want {
				t.Errorf("upload POST: %s, want %d", resp.Status, want)
			}
		})
	}
	if got := f.live("timing").Meta.Author; got != "setup" && got != "hanako" {
		t.Errorf("timing's author is %q", got)
	}
}

func TestUploadShowsEachErrorOnItsCell(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	csrf := f.signIn(cl, "hanako")
	for _, tc := range []struct {
		name  string
		cells map[string]any
		cell  string // Sheet!A1 marked
		value string // shown in the marked cell
		msg   string // part of the message in it
	}{
		{"bad quiet hours", map[string]any{"Timing!E10": "25:00-08:00"}, "Timing!E10", "25:00-08:00", "quiet_hours"},
		{"text in a number column", map[string]any{"Campaigns!D9": "thirty"}, "Campaigns!D9", "thirty", "thirty"},
		{"unknown field", map[string]any{"Filters!C7": "member.nope == $param"}, "Filters!C7", "member.nope == $param", "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.live("timing").Meta.Version
			resp, body := f.uploadWorkbook(cl, csrf, "broken.xlsx", edited(t, tc.cells))
			if resp.StatusCode != http.StatusUnprocessableEntity {
				t.Fatalf("status %s, want 422", resp.Status)
			}
			re := regexp.MustCompile(`<td class="err" data-cell="` + regexp.QuoteMeta(tc.cell) + `">([^<]*)<div class="msg">([^<]*)</div>`)
			m := re.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("no marked cell %s on the page:\n%s", tc.cell, body)
			}
			if m[1] != tc.value || !strings.Contains(m[2], tc.msg) {
				t.Errorf("cell %s shows %q with message %q; want %q and a message about %q", tc.cell, m[1], m[2], tc.value, tc.msg)
			}
			if n := strings.Count(body, `class="err"`); n != 1 {
				t.Errorf("%d cells marked, want 1", n)
			}
			if f.live("timing").Meta.Version != before {
				t.Error("an invalid upload changed the rules in force")
			}
		})
	}
}

// TestPublishAndRollBack: a valid upload is reviewed (its row diff and
// simulate summary), published with the signed-in user as author, and
// rolled back after a confirmation page; a review that someone else's
// publish overtook is refused.
func TestPublishAndRollBack(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	csrf := f.signIn(cl, "hanako")
	orig := f.live("timing")

	resp, _ := f.uploadWorkbook(cl, csrf, "rtm-rules.xlsx", edited(t, map[string]any{"Timing!F11": 4}))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %s", resp.Status)
	}
	review := resp.Header.Get("Location")
	_, page := f.do(cl, "GET", review, nil)
	for _, want := range []string{`<pre id="simulate">simulated 5 tables</pre>`, `data-change="timing"`, `<tr class="new changed" data-row="11">`, `<td class="changed">4</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("review page lacks %s:\n%s", want, page)
		}
	}
	if f.live("timing").Meta.Version != orig.Meta.Version {
		t.Fatal("the upload published before its review was confirmed")
	}
	resp, _ = f.do(cl, "POST", review+"/publish", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != Prefix+"/rules?published=timing" {
		t.Fatalf("publish: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	pub := f.live("timing")
	if pub.Meta.Version == orig.Meta.Version || pub.Meta.Author != "hanako" || pub.Meta.SourceFile != "rtm-rules.xlsx" {
		t.Fatalf("timing after publish: %+v", pub.Meta)
	}
	if resp, _ := f.do(cl, "POST", review+"/publish", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("publishing the same upload again: %s, want 404", resp.Status)
	}

	// The row-level diff between two versions of the history.
	if _, page := f.do(cl, "GET", Prefix+"/rules/table/timing", nil); !strings.Contains(page, `id="compare"`) {
		t.Errorf("table page lacks the form comparing two versions:\n%s", page)
	}
	_, page = f.do(cl, "GET", Prefix+"/rules/table/timing/diff?from="+orig.Meta.Version+"&to="+pub.Meta.Version[:12], nil)
	for _, want := range []string{`<tr class="old changed"><th>11</th><td>before</td>`, `<td class="changed">3</td>`, `<td class="changed">4</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("diff page lacks %s:\n%s", want, page)
		}
	}

	// Roll back: the confirmation page, then the POST it carries.
	_, page = f.do(cl, "GET", Prefix+"/rules/table/timing/rollback?to="+orig.Meta.Version[:12], nil)
	if !strings.Contains(page, `id="confirm-rollback"`) || !strings.Contains(page, `<td class="changed">3</td>`) {
		t.Fatalf("rollback confirmation lacks its button or the row diff:\n%s", page)
	}
	if f.live("timing").Meta.Version != pub.Meta.Version {
		t.Fatal("the confirmation page rolled back")
	}
	form := url.Values{"csrf": {csrf}, "to": {orig.Meta.Version}, "from": {pub.Meta.Version}}
	resp, _ = f.do(cl, "POST", Prefix+"/rules/table/timing/rollback", form)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("rollback: %s", resp.Status)
	}
	if got := f.live("timing"); got.Meta.Version != orig.Meta.Version || got.Meta.Author != "hanako" {
		t.Fatalf("timing after rollback: %+v, want version %s by hanako", got.Meta, orig.Meta.Version)
	}
	// The history lists the original version twice now; only its newest
	// entry is in force, and only the published one offers a rollback.
	_, page = f.do(cl, "GET", Prefix+"/rules/table/timing", nil)
	if n := strings.Count(page, `class="current"`); n != 1 || !strings.Contains(page, `<tr data-version="`+orig.Meta.Version+`" class="current">`) {
		t.Errorf("table page marks %d versions in force, want only %s:\n%s", n, orig.Meta.Version, page)
	}
	if n := strings.Count(page, `class="rollback"`); n != 1 || !strings.Contains(page, "rollback?to="+pub.Meta.Version) {
		t.Errorf("table page offers %d rollbacks, want one, to %s", n, pub.Meta.Version)
	}
	// The same confirmation again is stale: the table is no longer pub.
	if resp, _ := f.do(cl, "POST", Prefix+"/rules/table/timing/rollback", form); resp.StatusCode != http.StatusConflict {
		t.Errorf("a second rollback from a stale page: %s, want 409", resp.Status)
	}

	// A review overtaken by another publish is refused, and nothing is
	// written.
	resp, _ = f.uploadWorkbook(cl, csrf, "rtm-rules.xlsx", edited(t, map[string]any{"Timing!F11": 5}))
	review = resp.Header.Get("Location")
	other := f.browser()
	ocsrf := f.signIn(other, "taro")
	resp, _ = f.uploadWorkbook(other, ocsrf, "rtm-rules.xlsx", edited(t, map[string]any{"Timing!F11": 6}))
	if resp, _ := f.do(other, "POST", resp.Header.Get("Location")+"/publish", url.Values{"csrf": {ocsrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("taro's publish: %s", resp.Status)
	}
	taros := f.live("timing").Meta.Version
	if resp, _ := f.do(cl, "POST", review+"/publish", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusConflict {
		t.Errorf("hanako's overtaken publish: %s, want 409", resp.Status)
	}
	if f.live("timing").Meta.Version != taros {
		t.Error("an overtaken publish was written")
	}

	// A table the review showed unchanged is checked too: publishing the
	// workbook would write it back over what someone published meanwhile.
	resp, _ = f.uploadWorkbook(cl, csrf, "rtm-rules.xlsx", edited(t, map[string]any{"Timing!F11": 7}))
	review = resp.Header.Get("Location")
	resp, _ = f.uploadWorkbook(other, ocsrf, "rtm-rules.xlsx", edited(t, map[string]any{"Timing!F11": 6, "Campaigns!I9": 91}))
	if resp, _ := f.do(other, "POST", resp.Header.Get("Location")+"/publish", url.Values{"csrf": {ocsrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("taro's campaigns publish: %s", resp.Status)
	}
	tarosCampaigns := f.live("campaigns").Meta.Version
	if resp, _ := f.do(cl, "POST", review+"/publish", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusConflict {
		t.Errorf("hanako's publish over taro's campaigns: %s, want 409", resp.Status)
	}
	if f.live("campaigns").Meta.Version != tarosCampaigns {
		t.Error("a publish wrote a table back over a newer one its review showed unchanged")
	}
}

func TestLimiterSlowsDownGuessing(t *testing.T) {
	clock := testkit.NewClock(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	l := newLimiter(clock.Now)
	for i, want := range []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second} {
		l.failed("192.0.2.1")
		if got := l.wait("192.0.2.1"); got != want {
			t.Errorf("after %d failures: wait %v, want %v", i+1, got, want)
		}
		if got := l.wait("192.0.2.2"); got != 0 {
			t.Errorf("another address waits %v", got)
		}
	}
	clock.Advance(3 * time.Second)
	if got := l.wait("192.0.2.1"); got != 5*time.Second {
		t.Errorf("3 s later: wait %v, want 5s", got)
	}
	for range 30 {
		l.failed("192.0.2.1")
	}
	if got := l.wait("192.0.2.1"); got != maxWait {
		t.Errorf("after many failures: wait %v, want the cap %v", got, maxWait)
	}
	l.succeeded("192.0.2.1")
	if got := l.wait("192.0.2.1"); got != 0 {
		t.Errorf("after a success: wait %v", got)
	}
}

// TestSignInThrottled: past the free failures, even the right token is
// not checked until the wait is over.
func TestSignInThrottled(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	try := func(token string) int {
		_, page := f.do(cl, "GET", Prefix+"/login", nil)
		resp, _ := f.do(cl, "POST", Prefix+"/login", url.Values{"csrf": {f.formToken(page)}, "user": {"mallory"}, "token": {token}})
		return resp.StatusCode
	}
	for range freeFailures {
		if got := try("guess"); got != http.StatusUnauthorized {
			t.Fatalf("a wrong guess: %d", got)
		}
	}
	if got := try(testToken); got != http.StatusTooManyRequests {
		t.Fatalf("the right token right after %d failures: %d, want 429", freeFailures, got)
	}
	f.clock.Advance(time.Second)
	if got := try(testToken); got != http.StatusSeeOther {
		t.Fatalf("the right token once the wait is over: %d, want 303", got)
	}
}

// TestErrorsPage: errors are laid out where they belong — on a cell, on
// a whole row ("row N", an error without a column), or above the grid
// (no sheet, or beyond what is drawn).
func TestErrorsPage(t *testing.T) {
	f := newFixture(t)
	data := edited(t, map[string]any{"Timing!E10": "25:00-08:00"})
	errs := &rules.Errors{List: []*rules.CellError{
		{File: "wb.xlsx", Sheet: "Timing", Cell: "E10", Msg: "bad quiet hours"},
		{File: "wb.xlsx", Sheet: "Timing", Cell: "row 11", Msg: "a row problem"},
		{File: "wb.xlsx", Msg: "a workbook problem"},
		{File: "wb.xlsx", Sheet: "Timing", Cell: "ZZ9999", Msg: "far away"},
		{File: "wb.xlsx", Sheet: "Nope", Cell: "A1", Msg: "on a sheet that is not there"},
	}}
	rec := httptest.NewRecorder()
	f.c.render(rec, http.StatusUnprocessableEntity, &session{User: "hanako", Nonce: "n"}, "errors", "Errors", "rules", workbookErrors("wb.xlsx", data, errs))
	body := rec.Body.String()
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d:\n%s", rec.Code, body)
	}
	for _, want := range []string{
		`<td class="err" data-cell="Timing!E10">25:00-08:00<div class="msg">bad quiet hours</div></td>`,
		`<div class="msg" data-row="Timing!11">a row problem</div>`,
		`<li>wb.xlsx: a workbook problem</li>`,
		`<li>wb.xlsx: Timing!ZZ9999: far away</li>`,
		`<li>Nope row 1 column 1: on a sheet that is not there</li>`,
		`<h1>wb.xlsx: 5 errors</h1>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("errors page lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestUploadOfSomethingElse(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	csrf := f.signIn(cl, "hanako")
	for _, tc := range []struct{ name, file, data, want string }{
		{"a CSV", "rules.csv", "a,b\n", `<li>rules.csv: not an .xlsx workbook: want an .xlsx file, got &#34;.csv&#34;</li>`},
		{"not a zip", "rules.xlsx", "hello", `<li>rules.xlsx: not an .xlsx workbook: `},
		{"a path as the name", `..\..\etc\rules.csv`, "x", `<li>rules.csv: not an .xlsx workbook`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.uploadWorkbook(cl, csrf, tc.file, []byte(tc.data))
			if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) {
				t.Errorf("%s: %s, want 422 with %s:\n%s", tc.file, resp.Status, tc.want, body)
			}
		})
	}
}

// TestPipelineRates: the rates are the differences of the last two lag
// readings over the time between them; a group without a reading shows
// none.
func TestPipelineRates(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	f.signIn(cl, "hanako")
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	f.c.samples.add(t0, map[string]lag.Total{"filter": {Lag: 5, End: 100, Committed: 95, Partitions: 4}})
	f.c.samples.add(t0.Add(10*time.Second), map[string]lag.Total{"filter": {Lag: 10, End: 200, Committed: 190, Partitions: 4}})
	_, body := f.do(cl, "GET", Prefix+"/", nil)
	row := regexp.MustCompile(`(?s)<tr data-stage="filter">.*?</tr>`).FindString(body)
	for _, want := range []string{`<span class="state ok">running</span>`, `<td class="num">10</td>`, `<td class="num">10.0</td>`, `<td class="num">9.5</td>`} {
		if !strings.Contains(row, want) {
			t.Errorf("filter's row lacks %s:\n%s", want, row)
		}
	}
	// A stage that no process reports, with no lag reading: said so.
	f.c.cfg.Groups = []string{"filter", "send"}
	_, body = f.do(cl, "GET", Prefix+"/", nil)
	row = regexp.MustCompile(`(?s)<tr data-stage="send">.*?</tr>`).FindString(body)
	if !strings.Contains(row, "not reported") || strings.Count(row, "—") != 3 {
		t.Errorf("send's row:\n%s", row)
	}
}

func TestCampaignsPage(t *testing.T) {
	f := newFixture(t)
	cl := f.browser()
	f.signIn(cl, "hanako")
	_, body := f.do(cl, "GET", Prefix+"/campaigns?campaign=price-drop", nil)
	for _, want := range []string{`<option selected>price-drop</option>`, `<option>cart-reminder</option>`, `<p class="alert" id="report-error">no reports here</p>`} {
		if !strings.Contains(body, want) {
			t.Errorf("campaigns page lacks %s:\n%s", want, body)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		Prefix + "/rules?x=1":        Prefix + "/rules?x=1",
		"//evil.example/console/":    Prefix + "/",
		"https://evil.example/":      Prefix + "/",
		Prefix + `/\evil`:            Prefix + "/",
		"/consolex":                  Prefix + "/",
		"":                           Prefix + "/",
		Prefix + "/members?member=M": Prefix + "/members?member=M",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

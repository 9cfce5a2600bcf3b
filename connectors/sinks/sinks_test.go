package sinks_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/sinks"
	"github.com/rtm-project/rtm/internal/testkit"
)

func start(t *testing.T, cfg sinks.Config) *sinks.Sinks {
	t.Helper()
	cfg.SMTPAddr, cfg.HTTPAddr, cfg.Logger = "127.0.0.1:0", "127.0.0.1:0", testkit.Logger(t)
	s, err := sinks.Start(testkit.Context(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func post(t *testing.T, url string, h map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const (
	key1     = "9d9924f7-09c0-463e-a025-8dc1ac20982b"
	linePush = `{"to":"U1","messages":[{"type":"text","text":"hi"}]}`
)

// The LINE endpoint answers like the Messaging API: auth, retry-key
// format, body shape, and 409 for a retry key it already accepted.
func TestLinePush(t *testing.T) {
	s := start(t, sinks.Config{})
	url := s.HTTP.URL() + "/v2/bot/message/push"
	auth := "Bearer " + s.Config().LineToken
	tests := []struct {
		name       string
		header     map[string]string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"no auth", map[string]string{}, linePush, 401, "Authentication failed"},
		{"wrong token", map[string]string{"Authorization": "Bearer nope"}, linePush, 401, "Authentication failed"},
		{"bad retry key", map[string]string{"Authorization": auth, "X-Line-Retry-Key": "not-a-uuid"}, linePush, 400, "X-Line-Retry-Key"},
		{"not json", map[string]string{"Authorization": auth}, `{"to":`, 400, "not valid JSON"},
		{"bad shape", map[string]string{"Authorization": auth}, `{"messages":[{"type":"text"},{"type":"flex","altText":"a","contents":{"type":"box"}},{"type":"fax"}]}`,
			400, `"property":"to"`},
		{"ok", map[string]string{"Authorization": auth, "X-Line-Retry-Key": key1}, linePush, 200, "sentMessages"},
		{"duplicate retry key", map[string]string{"Authorization": auth, "X-Line-Retry-Key": key1}, linePush, 409, "already accepted"},
		{"no retry key twice is two messages", map[string]string{"Authorization": auth}, linePush, 200, "sentMessages"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, url, tc.header, tc.body)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			if tc.wantStatus == 409 {
				first := s.HTTP.Line.Accepted()[0].ID
				if got := resp.Header.Get("X-Line-Accepted-Request-Id"); got != first {
					t.Errorf("x-line-accepted-request-id = %q, want the first request's %q", got, first)
				}
			}
		})
	}
	if got := len(s.HTTP.Line.Accepted()); got != 2 {
		t.Errorf("accepted %d, want 2", got)
	}
	if got := s.HTTP.Line.Requests(); got != len(tests) {
		t.Errorf("requests %d, want %d", got, len(tests))
	}
	// a person running rtm dev can look
	resp, err := http.Get(s.HTTP.URL() + "/sinks/line")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var listed []sinks.Request
	if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || string(listed[0].Body) != linePush || listed[0].Header.Get("Authorization") != "" {
		t.Errorf("listing = %+v", listed)
	}
}

func TestFCMSend(t *testing.T) {
	s := start(t, sinks.Config{FCMProject: "shop", FCMToken: "tok"})
	auth := map[string]string{"Authorization": "Bearer tok"}
	ok := `{"message":{"token":"t","notification":{"title":"T","body":"B"},"data":{"k":"v"},"android":{"priority":"high"}}}`
	tests := []struct {
		name, project string
		header        map[string]string
		body          string
		wantStatus    int
		wantBody      string
	}{
		{"ok", "shop", auth, ok, 200, `"name":"projects/shop/messages/`},
		{"wrong token", "shop", map[string]string{"Authorization": "Bearer x"}, ok, 401, "UNAUTHENTICATED"},
		{"wrong project", "other", auth, ok, 404, "NOT_FOUND"},
		{"unknown top-level field", "shop", auth, `{"message":{"token":"t"},"extra":1}`, 400, "INVALID_ARGUMENT"},
		{"unknown message field", "shop", auth, `{"message":{"token":"t","colour":"red"}}`, 400, `Unknown name \"colour\"`},
		{"two targets", "shop", auth, `{"message":{"token":"t","topic":"news"}}`, 400, "exactly one of token"},
		{"data not strings", "shop", auth, `{"message":{"token":"t","data":{"n":1}}}`, 400, "data values must be strings"},
		{"no message", "shop", auth, `{}`, 400, "message is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, s.HTTP.URL()+"/v1/projects/"+tc.project+"/messages:send", tc.header, tc.body)
			if resp.StatusCode != tc.wantStatus || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
		})
	}
	if got := len(s.HTTP.Push.Accepted()); got != 1 {
		t.Errorf("accepted %d, want 1", got)
	}
}

func TestFaultsAreServedInOrder(t *testing.T) {
	s := start(t, sinks.Config{})
	h := map[string]string{"Authorization": "Bearer " + s.Config().LineToken, "X-Line-Retry-Key": key1}
	url := s.HTTP.URL() + "/v2/bot/message/push"
	s.HTTP.Line.FailNext(1, 429, 1500*time.Millisecond)
	s.HTTP.Line.LoseNextResponses(1, 500)
	resp, _ := post(t, url, h, linePush)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("first: %d Retry-After %q, want 429 and 2 (rounded up)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp, _ = post(t, url, h, linePush); resp.StatusCode != 500 {
		t.Errorf("second: %d, want 500 (accepted, response lost)", resp.StatusCode)
	}
	if resp, _ = post(t, url, h, linePush); resp.StatusCode != 409 || resp.Header.Get("X-Line-Accepted-Request-Id") == "" {
		t.Errorf("third: %d, want 409 with the accepted request ID", resp.StatusCode)
	}
	if got := len(s.HTTP.Line.Accepted()); got != 1 {
		t.Errorf("accepted %d, want 1", got)
	}
}

func sendMail(t *testing.T, addr, id string) {
	t.Helper()
	msg := "From: a@x.example\r\nTo: b@x.example\r\nSubject: =?UTF-8?B?5YCk5LiL44GS?=\r\nMessage-ID: <" + id + "@rtm>\r\n" +
		"Content-Type: multipart/alternative; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain; charset=UTF-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nprice =E2=86=93\r\n--XX\r\nContent-Type: text/html\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nPHA+aGk8L3A+\r\n--XX--\r\n"
	if err := smtp.SendMail(addr, nil, "a@x.example", []string{"b@x.example"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// The SMTP sink parses what it keeps, keeps only the last Keep, writes
// .eml files, and fails on demand.
func TestSMTPSink(t *testing.T) {
	dir := t.TempDir()
	s := start(t, sinks.Config{Keep: 2, EMLDir: dir})
	for _, id := range []string{"dl-1", "dl-2", "dl-3"} {
		sendMail(t, s.SMTP.Addr(), id)
	}
	msgs := s.SMTP.Messages()
	if len(msgs) != 2 || msgs[0].MessageID != "<dl-2@rtm>" || msgs[1].MessageID != "<dl-3@rtm>" {
		t.Fatalf("kept %+v, want dl-2 and dl-3", msgs)
	}
	m := msgs[1]
	if m.Subject != "値下げ" || m.Text != "price ↓" || m.HTML != "<p>hi</p>" || m.ParseError != "" {
		t.Errorf("parsed subject %q text %q html %q (%s)", m.Subject, m.Text, m.HTML, m.ParseError)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil || len(files) != 3 || filepath.Base(files[2]) != "00000003-dl-3_rtm.eml" {
		t.Errorf("eml files %v (%v)", files, err)
	}
	if b, err := os.ReadFile(files[2]); err != nil || !strings.Contains(string(b), "Message-ID: <dl-3@rtm>") {
		t.Errorf("eml content %q (%v)", b, err)
	}

	s.SMTP.FailNext(1, 451)
	err = smtp.SendMail(s.SMTP.Addr(), nil, "a@x.example", []string{"b@x.example"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "451") {
		t.Errorf("injected fault: %v, want 451", err)
	}
	if got := s.SMTP.Attempts(); got != 4 {
		t.Errorf("attempts %d, want 4", got)
	}
}

func TestConfigValidate(t *testing.T) {
	err := sinks.Config{SMTPAddr: "0.0.0.0:25", HTTPAddr: "nope", Keep: -1}.Validate()
	for _, want := range []string{"smtp_addr: address \"0.0.0.0:25\" is not loopback", "http_addr", "keep -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err := sinks.Defaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// Cancelling Start's context stops both servers.
func TestStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(testkit.Context(t))
	s, err := sinks.Start(ctx, sinks.Config{SMTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	testkit.Eventually(t, 10*time.Second, "sinks to stop listening", func() bool {
		c1, err1 := net.Dial("tcp", s.SMTP.Addr())
		c2, err2 := net.Dial("tcp", s.HTTP.Addr())
		for _, c := range []net.Conn{c1, c2} {
			if c != nil {
				c.Close()
			}
		}
		return err1 != nil && err2 != nil
	})
	if err := s.Close(); err != nil {
		t.Errorf("close after ctx: %v", err)
	}
}

package collector

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/gif"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

const partitions = 4

var secret = []byte("0123456789abcdef0123456789abcdef")

// newCollector starts a broker with behavior.events and a collector in
// front of it.
func newCollector(t testing.TB, cfg Config) (addr string, srv *httptest.Server, stopBroker func()) {
	t.Helper()
	b := testkit.Broker(t, "")
	testkit.CreateTopic(t, b.Addr(), topics.BehaviorEvents, partitions, nil)
	p, err := NewProducer(kafka.Config{Brokers: []string{b.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if cfg.TrackingSecret == nil {
		cfg.TrackingSecret = secret
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	s, err := New(cfg, p, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return b.Addr(), srv, b.Close
}

// client never follows redirects: the tests look at them.
var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func post(t testing.TB, srv *httptest.Server, body string, hdr ...string) (*http.Response, Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decoding response (%d): %v", resp.StatusCode, err)
	}
	return resp, r
}

func get(t testing.TB, url string) *http.Response {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readEvents reads n records of behavior.events from the beginning.
func readEvents(t testing.TB, addr string, n int) []*kgo.Record {
	t.Helper()
	cl := testkit.Client(t, addr, kgo.ConsumeTopics(topics.BehaviorEvents), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(testkit.Context(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestCollectorAcceptsAndKcatReads(t *testing.T) {
	addr, srv, _ := newCollector(t, Config{})
	body := `{"event_id":"e1","member_id":"M1","type":"add_to_cart","item_id":"I1","at":"2026-11-23T09:00:00Z"}
{"event_id":"e2","member_id":"M2","type":"teleport"}
{"event_id":"e3","member_id":"M3","type":"search","attrs":{"q":"boots"}}
`
	resp, r := post(t, srv, body)
	if resp.StatusCode != http.StatusAccepted || r.Accepted != 2 || len(r.Rejected) != 1 || r.Rejected[0].Line != 2 {
		t.Fatalf("status %d, response %+v: want 202, 2 accepted, line 2 rejected", resp.StatusCode, r)
	}
	out := testkit.Kcat(t, "", "-C", "-b", addr, "-t", topics.BehaviorEvents, "-e", "-o", "beginning", "-q",
		"-f", `%k|%p|%s\n`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("kcat read %d records, want 2:\n%s", len(lines), out)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		parts := strings.SplitN(l, "|", 3)
		ev, err := topics.BehaviorEventCodec{}.DecodeValue([]byte(parts[2]))
		if err != nil {
			t.Fatal(err)
		}
		if parts[0] != ev.MemberID {
			t.Errorf("key %q, want member_id %q", parts[0], ev.MemberID)
		}
		if want := fmt.Sprint(topics.Partition([]byte(parts[0]), partitions)); parts[1] != want {
			t.Errorf("key %s on partition %s, want %s", parts[0], parts[1], want)
		}
		seen[ev.EventID] = true
	}
	if !seen["e1"] || !seen["e3"] {
		t.Errorf("events %v, want e1 and e3", seen)
	}
}

func TestCollectorTracking(t *testing.T) {
	addr, srv, _ := newCollector(t, Config{})
	open, err := tracking.SignOpen(secret, "D1", "M1", "C1")
	if err != nil {
		t.Fatal(err)
	}
	click, err := tracking.SignClick(secret, "D1", "M1", "C1", "https://shop.example/items/I1?utm=rtm")
	if err != nil {
		t.Fatal(err)
	}
	// Forgeries first: none may record anything or redirect anywhere.
	evil, _ := tracking.SignClick([]byte("another-secret-another-secret-!!"), "D1", "M1", "C1", "https://evil.example/")
	p, sig, _ := strings.Cut(click, ".")
	b64 := base64.RawURLEncoding
	payload, _ := b64.DecodeString(p)
	altered := b64.EncodeToString(bytes.Replace(payload, []byte("shop.example"), []byte("evil.example"), 1)) + "." + sig
	for name, path := range map[string]string{
		"other secret":      "/t/c/" + evil,
		"altered url":       "/t/c/" + altered,
		"open token clicks": "/t/c/" + open,
		"click token opens": "/t/o/" + click,
		"garbage":           "/t/c/not-a-token",
		"no signature":      "/t/o/" + strings.Split(open, ".")[0],
	} {
		resp := get(t, srv.URL+path)
		if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Location") != "" {
			t.Errorf("%s: status %d location %q, want 404 and no redirect", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp := get(t, srv.URL+"/t/o/"+open)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("open: status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if img, err := gif.Decode(resp.Body); err != nil || img.Bounds().Dx() != 1 || img.Bounds().Dy() != 1 {
		t.Errorf("open pixel is not a 1x1 GIF: %v", err)
	}
	for range 2 { // a double click
		resp = get(t, srv.URL+"/t/c/"+click)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://shop.example/items/I1?utm=rtm" {
			t.Fatalf("click: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A sentinel written last proves everything before it was read.
	if resp, _ := post(t, srv, `{"event_id":"end","member_id":"M1","type":"app_open"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("sentinel: %d", resp.StatusCode)
	}
	recs := readEvents(t, addr, 4)
	var evs []*topics.BehaviorEvent
	for _, r := range recs {
		ev, err := topics.BehaviorEventCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 4 {
		t.Fatalf("got %d events, want open, click, click, sentinel (forgeries record nothing)", len(evs))
	}
	// All four share member M1, so they are in order on one partition.
	if evs[0].Type != "open" || evs[1].Type != "click" || evs[2].Type != "click" || evs[3].EventID != "end" {
		t.Fatalf("events %+v", evs)
	}
	if evs[1].EventID != evs[2].EventID || evs[0].EventID == evs[1].EventID {
		t.Errorf("event ids %s %s %s: a double click must repeat its id, open and click differ", evs[0].EventID, evs[1].EventID, evs[2].EventID)
	}
	if evs[1].DeliveryID != "D1" || evs[1].Attrs["campaign_id"] != "C1" || evs[1].Attrs["url"] == "" {
		t.Errorf("click event %+v", evs[1])
	}
}

func TestCollectorKafkaDown(t *testing.T) {
	_, srv, stopBroker := newCollector(t, Config{ProduceTimeout: 500 * time.Millisecond, RetryAfter: 7 * time.Second})
	stopBroker()
	resp, r := post(t, srv, `{"member_id":"M1","type":"search"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "7" || r.Accepted != 0 {
		t.Fatalf("status %d Retry-After %q response %+v: want 503, 7, nothing accepted", resp.StatusCode, resp.Header.Get("Retry-After"), r)
	}
}

func TestCollectorLimitsAndAuth(t *testing.T) {
	_, srv, _ := newCollector(t, Config{MaxBodyBytes: 200, MaxEvents: 2, APIKeys: []string{"k1"},
		RatePerSecond: 0.001, Burst: 4})
	ev := `{"member_id":"M1","type":"search"}`
	tests := []struct {
		name string
		body string
		key  string
		code int
		msg  string
	}{
		{"no key", ev, "", http.StatusUnauthorized, "missing or unknown X-API-Key"},
		{"wrong key", ev, "k2", http.StatusUnauthorized, "missing or unknown X-API-Key"},
		{"huge body", "[" + strings.Repeat(ev+",", 10) + ev + "]", "k1", http.StatusRequestEntityTooLarge, "body exceeds 200 bytes; split the batch"},
		{"too many events", ev + "\n" + ev + "\n" + ev, "k1", http.StatusRequestEntityTooLarge, "3 events exceed the limit of 2 per request; split the batch"},
		{"all bad", `{"type":"search"}`, "k1", http.StatusBadRequest, "no valid events"},
		{"empty", "", "k1", http.StatusBadRequest, ErrEmptyBody.Error()},
		// the bucket held 4 requests (the unauthorised ones took none)
		{"rate limited", ev, "k1", http.StatusTooManyRequests, "rate limit exceeded; retry later"},
	}
	for _, tt := range tests {
		resp, r := post(t, srv, tt.body, "X-API-Key", tt.key)
		if resp.StatusCode != tt.code || r.Error != tt.msg {
			t.Errorf("%s: %d %q, want %d %q", tt.name, resp.StatusCode, r.Error, tt.code, tt.msg)
		}
	}
}

func TestTokens(t *testing.T) {
	if _, err := tracking.SignClick(secret, "D1", "M1", "C1", "javascript:alert(1)"); err == nil {
		t.Error("SignClick accepted a javascript: URL")
	}
	if _, err := tracking.SignOpen(nil, "D1", "M1", "C1"); err == nil {
		t.Error("SignOpen without a secret: want an error")
	}
	tok, err := tracking.SignClick(secret, "D1", "M1", "C1", "https://shop.example/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tracking.Verify(secret, tok, tracking.KindClick)
	if err != nil || got != (tracking.Tracking{DeliveryID: "D1", MemberID: "M1", CampaignID: "C1", URL: "https://shop.example/", Kind: tracking.KindClick}) {
		t.Errorf("Verify = %+v, %v", got, err)
	}
	if _, err := tracking.Verify(secret, tok+"x", tracking.KindClick); err == nil {
		t.Error("altered signature verified")
	}
}

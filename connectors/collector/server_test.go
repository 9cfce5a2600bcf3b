package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"image/gif"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/tracking"
	"github.com/rtm-project/rtm/internal/kafka"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/member"
	"github.com/rtm-project/rtm/topics"
)

const partitions = 4

var (
	secret    = []byte("0123456789abcdef0123456789abcdef")
	oldSecret = []byte("an-older-secret-an-older-secret!")
	apiKey    = "collector-test-key-0123456789abcdef"
	apiKey2   = "collector-test-key-rotated-0123456"
)

// keys is the collector's keyring in the tests: secret signs, oldSecret
// still verifies (a rotation under way).
func keys(t testing.TB) *tracking.Keyring {
	kr, err := tracking.NewKeyring(secret, oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

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
	if cfg.Keys == nil {
		cfg.Keys = keys(t)
	}
	if cfg.APIKeys == nil {
		cfg.APIKeys = []string{apiKey, apiKey2}
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

// post posts body to /v1/events with apiKey, unless hdr sets X-API-Key.
func post(t testing.TB, srv *httptest.Server, body string, hdr ...string) (*http.Response, Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", apiKey)
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

func TestCollectorKafkaDown(t *testing.T) {
	_, srv, stopBroker := newCollector(t, Config{ProduceTimeout: 500 * time.Millisecond, RetryAfter: 7 * time.Second})
	stopBroker()
	resp, r := post(t, srv, `{"member_id":"M1","type":"search"}`)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "7" || r.Accepted != 0 {
		t.Fatalf("status %d Retry-After %q response %+v: want 503, 7, nothing accepted", resp.StatusCode, resp.Header.Get("Retry-After"), r)
	}
}

// decodeEvents decodes records of behavior.events.
func decodeEvents(t testing.TB, recs []*kgo.Record) []*topics.BehaviorEvent {
	t.Helper()
	var evs []*topics.BehaviorEvent
	for _, r := range recs {
		ev, err := topics.BehaviorEventCodec{}.DecodeValue(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != ev.MemberID {
			t.Errorf("record key %q, member %q", r.Key, ev.MemberID)
		}
		evs = append(evs, ev)
	}
	return evs
}

// sentinel posts an event that, read back, proves everything before it on
// M1's partition was read.
func sentinel(t testing.TB, srv *httptest.Server) {
	t.Helper()
	if resp, r := post(t, srv, `{"event_id":"end","member_id":"M1","type":"app_open"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("sentinel: %d %+v", resp.StatusCode, r)
	}
}

func seal(t testing.TB, kr *tracking.Keyring, tr tracking.Tracking) string {
	t.Helper()
	if tr.Expires.IsZero() {
		tr.Expires = now.Add(24 * time.Hour)
	}
	tok, err := kr.Seal(tr)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestCollectorTracking(t *testing.T) {
	addr, srv, _ := newCollector(t, Config{})
	kr := keys(t)
	open := seal(t, kr, tracking.Tracking{DeliveryID: "D1", MemberID: "M1", CampaignID: "C1", Channel: "mail", Kind: tracking.KindOpen})
	click := seal(t, kr, tracking.Tracking{DeliveryID: "D1", MemberID: "M1", CampaignID: "C1", Channel: "mail",
		URL: "https://shop.example/items/I1?utm=rtm", Kind: tracking.KindClick})
	oldKey, err := tracking.NewKeyring(oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	// Sealed by the previous key, which still verifies during the rotation.
	rotated := seal(t, oldKey, tracking.Tracking{DeliveryID: "D2", MemberID: "M1", URL: "https://shop.example/old", Kind: tracking.KindClick})
	retired, _ := tracking.NewKeyring([]byte("a-retired-secret-a-retired-secr!"))
	evil, _ := tracking.NewKeyring([]byte("another-secret-another-secret-!!"))
	kid, body, _ := strings.Cut(click, ".")
	flipped := []byte(body)
	flipped[len(flipped)/2] ^= 1
	// Forgeries, expired and retired tokens first: none may record
	// anything or redirect anywhere.
	for name, path := range map[string]string{
		"other secret":      "/t/c/" + seal(t, evil, tracking.Tracking{DeliveryID: "D1", MemberID: "M1", URL: "https://evil.example/", Kind: tracking.KindClick}),
		"retired key":       "/t/c/" + seal(t, retired, tracking.Tracking{DeliveryID: "D1", MemberID: "M1", URL: "https://shop.example/", Kind: tracking.KindClick}),
		"expired":           "/t/c/" + seal(t, kr, tracking.Tracking{DeliveryID: "D1", MemberID: "M1", URL: "https://shop.example/", Kind: tracking.KindClick, Expires: now}),
		"tampered":          "/t/c/" + kid + "." + string(flipped),
		"open token clicks": "/t/c/" + open,
		"click token opens": "/t/o/" + click,
		"garbage":           "/t/c/not-a-token",
		"kid only":          "/t/o/" + kid,
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
	if resp = get(t, srv.URL+"/t/c/"+rotated); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://shop.example/old" {
		t.Fatalf("click sealed by the previous key: status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	sentinel(t, srv)
	evs := decodeEvents(t, readEvents(t, addr, 5))
	if len(evs) != 5 {
		t.Fatalf("got %d events, want open, click, click, click, sentinel (forgeries record nothing)", len(evs))
	}
	// All share member M1, so they are in order on one partition.
	if evs[0].Type != "open" || evs[1].Type != "click" || evs[2].Type != "click" || evs[3].DeliveryID != "D2" || evs[4].EventID != "end" {
		t.Fatalf("events %+v", evs)
	}
	if evs[1].EventID != evs[2].EventID || evs[0].EventID == evs[1].EventID {
		t.Errorf("event ids %s %s %s: a double click must repeat its id, open and click differ", evs[0].EventID, evs[1].EventID, evs[2].EventID)
	}
	if evs[1].DeliveryID != "D1" || evs[1].Attrs["campaign_id"] != "C1" || evs[1].Attrs["url"] == "" || evs[1].Attrs["channel"] != "mail" {
		t.Errorf("click event %+v", evs[1])
	}
}

// TestEventsAPIRequiresAKey: without a known X-API-Key nothing is
// accepted, whatever the body.
func TestEventsAPIRequiresAKey(t *testing.T) {
	_, srv, _ := newCollector(t, Config{})
	for name, key := range map[string]string{"no key": "", "unknown key": "not-a-key-not-a-key-not-a-key-123",
		"prefix of a key": apiKey[:len(apiKey)-1], "key with a suffix": apiKey + "x"} {
		resp, r := post(t, srv, `{"member_id":"M1","type":"page_view"}`, "X-API-Key", key)
		if resp.StatusCode != http.StatusUnauthorized || r.Error != "missing or unknown X-API-Key" || r.Accepted != 0 {
			t.Errorf("%s: %d %+v, want 401", name, resp.StatusCode, r)
		}
	}
	for _, key := range []string{apiKey, apiKey2} { // both keys of a rotation work
		if resp, r := post(t, srv, `{"member_id":"M1","type":"page_view"}`, "X-API-Key", key); resp.StatusCode != http.StatusAccepted {
			t.Errorf("key %q: %d %+v, want 202", key[:8], resp.StatusCode, r)
		}
	}
}

// TestEventsAPIRefusesTrackedTypes: an authenticated caller still cannot
// unsubscribe a member or forge opens and clicks; the sealed one-click link
// (TestOneClickUnsubscribe) can.
func TestEventsAPIRefusesTrackedTypes(t *testing.T) {
	addr, srv, _ := newCollector(t, Config{})
	for _, typ := range []string{"unsubscribe", "open", "click"} {
		resp, r := post(t, srv, fmt.Sprintf(`{"member_id":"M1","type":%q,"delivery_id":"D1"}`, typ))
		want := fmt.Sprintf("type %q is not accepted by POST /v1/events: opens, clicks and unsubscribes change consent", typ)
		if resp.StatusCode != http.StatusBadRequest || r.Accepted != 0 || len(r.Rejected) != 1 ||
			!strings.HasPrefix(r.Rejected[0].Error, want) || !strings.Contains(r.Rejected[0].Error, "signed tracking links") {
			t.Errorf("%s: %d %+v, want 400 with the reason", typ, resp.StatusCode, r)
		}
	}
	// Mixed in with valid events, the tracked one is rejected alone.
	resp, r := post(t, srv, `{"member_id":"M1","type":"search"}`+"\n"+`{"member_id":"M1","type":"unsubscribe"}`)
	if resp.StatusCode != http.StatusAccepted || r.Accepted != 1 || len(r.Rejected) != 1 || r.Rejected[0].Line != 2 {
		t.Errorf("mixed: %d %+v", resp.StatusCode, r)
	}
	sentinel(t, srv)
	for _, ev := range decodeEvents(t, readEvents(t, addr, 2)) {
		if slices.Contains(TrackedTypes, ev.Type) {
			t.Errorf("a %s event reached Kafka through the API", ev.Type)
		}
	}
}

// TestOneClickUnsubscribe: the List-Unsubscribe URL render writes
// unsubscribes its member from the channel with one POST (RFC 8058), which
// turns the opt-out on in the member's profile; a GET (a link scanner)
// changes nothing, and a bad token or body is refused.
func TestOneClickUnsubscribe(t *testing.T) {
	addr, srv, _ := newCollector(t, Config{})
	tok := seal(t, keys(t), tracking.Tracking{DeliveryID: "D9", MemberID: "M1", Channel: topics.ChannelMail, Kind: tracking.KindUnsubscribe})
	click := seal(t, keys(t), tracking.Tracking{DeliveryID: "D9", MemberID: "M1", URL: "https://shop.example/", Kind: tracking.KindClick})
	postForm := func(tok, body string) int {
		resp, err := client.Post(srv.URL+"/t/u/"+tok, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if resp := get(t, srv.URL+"/t/u/"+tok); resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET: %d %q, want the confirmation form", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for name, tt := range map[string]struct {
		tok, body string
		code      int
	}{
		"no body":          {tok, "", http.StatusBadRequest},
		"other body":       {tok, "List-Unsubscribe=Yes", http.StatusBadRequest},
		"click token":      {click, "List-Unsubscribe=One-Click", http.StatusNotFound},
		"tampered token":   {tok[:len(tok)-2] + "AA", "List-Unsubscribe=One-Click", http.StatusNotFound},
		"one-click (RFC)":  {tok, "List-Unsubscribe=One-Click", http.StatusOK},
		"again (repeated)": {tok, "List-Unsubscribe=One-Click", http.StatusOK},
	} {
		if code := postForm(tt.tok, tt.body); code != tt.code {
			t.Errorf("%s: %d, want %d", name, code, tt.code)
		}
	}
	sentinel(t, srv)
	evs := decodeEvents(t, readEvents(t, addr, 3))
	if len(evs) != 3 || evs[0].Type != "unsubscribe" || evs[0].EventID != evs[1].EventID || evs[0].Attrs["channel"] != topics.ChannelMail || evs[0].MemberID != "M1" {
		t.Fatalf("events %+v, want two identical unsubscribes of M1 from mail and the sentinel", evs)
	}
	// member-state turns the opt-out on.
	p := &member.Profile{MemberID: "M1", MailOptIn: true, LineOptIn: true}
	p.ApplyBehavior(evs[0])
	if p.MailOptIn || p.OptOuts[topics.ChannelMail].IsZero() || !p.LineOptIn {
		t.Errorf("after the one-click unsubscribe: mail %v (opt-outs %v), line %v; want mail off and held, line on", p.MailOptIn, p.OptOuts, p.LineOptIn)
	}
}

func TestCollectorLimitsAndAuth(t *testing.T) {
	_, srv, _ := newCollector(t, Config{MaxBodyBytes: 200, MaxEvents: 2, RatePerSecond: 0.001, Burst: 4})
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
		{"huge body", "[" + strings.Repeat(ev+",", 10) + ev + "]", apiKey, http.StatusRequestEntityTooLarge, "body exceeds 200 bytes; split the batch"},
		{"too many events", ev + "\n" + ev + "\n" + ev, apiKey, http.StatusRequestEntityTooLarge, "3 events exceed the limit of 2 per request; split the batch"},
		{"all bad", `{"type":"search"}`, apiKey, http.StatusBadRequest, "no valid events"},
		{"empty", "", apiKey, http.StatusBadRequest, ErrEmptyBody.Error()},
		// The key's budget is 4 events: 1 + 1 above, 2 here.
		{"two events", ev + "\n" + ev, apiKey, http.StatusAccepted, ""},
		{"rate limited", ev, apiKey, http.StatusTooManyRequests, "rate limit exceeded; retry later"},
		// Each key has its own budget.
		{"the other key", ev + "\n" + ev, apiKey2, http.StatusAccepted, ""},
	}
	for _, tt := range tests {
		resp, r := post(t, srv, tt.body, "X-API-Key", tt.key)
		if resp.StatusCode != tt.code || r.Error != tt.msg {
			t.Errorf("%s: %d %q, want %d %q", tt.name, resp.StatusCode, r.Error, tt.code, tt.msg)
		}
	}
}

// TestTrackingRateLimitPerClient: one address over its budget gets 429 on
// the tracking routes; the memory of addresses is bounded, forgetting the
// least recently seen.
func TestTrackingRateLimitPerClient(t *testing.T) {
	_, srv, _ := newCollector(t, Config{TrackingRate: 0.001, TrackingBurst: 2})
	for i, want := range []int{http.StatusNotFound, http.StatusNotFound, http.StatusTooManyRequests} {
		if resp := get(t, srv.URL+"/t/o/not-a-token"); resp.StatusCode != want || (want == 429 && resp.Header.Get("Retry-After") == "") {
			t.Errorf("hit %d: %d, want %d", i+1, resp.StatusCode, want)
		}
	}
	c := newClientLimits(0.001, 1, 3)
	for _, a := range []string{"A", "B", "C"} {
		if !c.allow(a, now) {
			t.Fatalf("first hit of %s refused", a)
		}
	}
	if c.allow("A", now) {
		t.Fatal("A's second hit allowed with a burst of 1")
	}
	c.allow("D", now) // evicts B, the least recently seen
	if c.len() != 3 {
		t.Errorf("%d addresses remembered, want at most 3", c.len())
	}
	if c.allow("A", now) || c.allow("C", now) || !c.allow("B", now) {
		t.Error("want A and C still limited, B forgotten (a fresh bucket)")
	}
}

func TestNewRefusesAnOpenCollector(t *testing.T) {
	kr := keys(t)
	for name, tt := range map[string]struct {
		cfg  Config
		want string
	}{
		"no api keys":   {Config{Keys: kr}, "api_keys: at least one API key is required"},
		"short api key": {Config{Keys: kr, APIKeys: []string{"k1"}}, "api_keys[0] has 2 bytes; use at least 32"},
		"no tracking":   {Config{APIKeys: []string{apiKey}}, "tracking keys are required"},
		"small burst":   {Config{Keys: kr, APIKeys: []string{apiKey}, MaxEvents: 100, Burst: 10}, "burst 10 must be at least max_events (100)"},
	} {
		_, err := New(tt.cfg, noProducer{}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
	}
}

type noProducer struct{}

func (noProducer) ProduceSync(context.Context, ...*kgo.Record) kgo.ProduceResults { return nil }

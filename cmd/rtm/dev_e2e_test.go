package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtm-project/rtm/connectors/simulator"
	"github.com/rtm-project/rtm/internal/kafka"
	"github.com/rtm-project/rtm/internal/report"
	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/processors/pipeline"
	"github.com/rtm-project/rtm/topics"
	"github.com/twmb/franz-go/pkg/kgo"
)

func cdcLine(t *testing.T, table, key string, keyCols map[string]any, op string, version int64, row any) string {
	t.Helper()
	rb, _ := json.Marshal(row)
	v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: op, Version: version, Key: keyCols, Row: rb, TS: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return key + "\t" + string(v) + "\n"
}

// TestDevFromOutside runs `rtm dev --no-simulator` as a process, its
// embedded broker requiring SASL/SCRAM-SHA-256 over TLS (so every client in
// the process, franz-go and sarama alike, authenticates and encrypts), and
// drives it only through Kafka, as an outside client over SASL_SSL: change rows in,
// delivery results out — for exactly the members the example rules target,
// and nobody else. A client with a wrong password fails at once, naming the
// broker and the mechanism.
func TestDevFromOutside(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	addr, httpAddr, collectorAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cert, key := testkit.SelfSignedCert(t)
	const user, pass = "rtm-e2e", "e2e-s3cret-password"
	// The outside client is franz-go, not kcat: Debian's librdkafka 2.0.2
	// will not authenticate with SASL to the embedded broker (kfake
	// advertises SaslHandshake from v1 only, librdkafka wants v0 to be
	// listed: "SASL Handshake not supported by broker").
	secure := kafka.Config{Brokers: []string{addr}, TLS: kafka.TLS{Enabled: true, CAFile: cert},
		SASL: kafka.SASL{Mechanism: kafka.MechanismSCRAM256, Username: user, Password: pass}}
	sec, err := secure.Opts()
	if err != nil {
		t.Fatal(err)
	}
	outside := testkit.Client(t, addr, append(sec, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))...)
	cmd := exec.Command(rtmBin, "dev", "--no-simulator", "--data-dir", t.TempDir(), "--broker-addr", addr,
		"--http-addr", httpAddr, "--collector-addr", collectorAddr, "--partitions", "4",
		"--sink-smtp-addr", freeAddr(t), "--sink-http-addr", freeAddr(t), "--log-level", "warn",
		"--broker-tls-cert-file", cert, "--broker-tls-key-file", key,
		"--broker-sasl-mechanism", "SCRAM-SHA-256", "--broker-sasl-username", user)
	cmd.Env = append(os.Environ(), "RTM_BROKER_SASL_PASSWORD="+pass)
	stdout := startDev(t, cmd)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "RTM dev is running") {
				close(ready)
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-time.After(90 * time.Second):
		t.Fatal("rtm dev did not start within 90s")
	}

	// Four members: M1 and M2 favourite the item; M3 too, but is a debug
	// user (excluded by the example filter); M4 does not favourite it.
	tz := simulator.NoonZone()
	var members, favs strings.Builder // one topic each
	v := int64(1)
	member := func(m string, debug bool, item string) {
		members.WriteString(cdcLine(t, "members", m, map[string]any{"member_id": m}, "i", v, topics.MemberRow{
			MemberID: m, Email: m + "@example.jp", MailOptIn: true, LineUserID: "U" + m, LineOptIn: true,
			Status: "active", IsDebug: debug, Timezone: tz}))
		v++
		if item != "" {
			favs.WriteString(cdcLine(t, "favorites", m, map[string]any{"member_id": m, "item_id": item}, "i", v,
				topics.FavoriteRow{MemberID: m, ItemID: item, CreatedAt: time.Now().UTC()}))
			v++
		}
	}
	for i, debug := range []bool{false, false, true, false} {
		item := "E2E-I1"
		if i == 3 {
			item = ""
		}
		member(fmt.Sprintf("E2E-M%d", i+1), debug, item)
	}
	produce := func(topic string, b *strings.Builder) {
		produceLines(t, outside, topic, b.String())
		b.Reset()
	}
	produce(topics.CDCMembers, &members)
	produce(topics.CDCFavorites, &favs)
	// The price drop must find the favourites: wait until member-state has
	// written all seven rows' effects to its changelog.
	waitFor(t, addr, topics.TableOf(topics.GroupMemberState), 7, sec...)

	// Every stage reads its own copy of that table, which follows the
	// changelog by a fetch and is invisible from outside. Sentinels make it
	// visible: one member per partition, written to the changelog after the
	// rows above, favouriting an item of their own. Once price drops of
	// that item have reached all of them, every stage's copy of every
	// partition holds the rows above too. A drop can overtake the
	// sentinels' own rows (it takes other topics, and a busy machine
	// delays any of them), so it is repeated until every sentinel has a
	// delivery.
	sentinels := topics.PartitionKeys("E2E-S", 4)
	for _, m := range sentinels {
		member(m, false, "E2E-I0")
	}
	produce(topics.CDCMembers, &members)
	produce(topics.CDCFavorites, &favs)
	waitFor(t, addr, topics.TableOf(topics.GroupMemberState), 7+2*len(sentinels), sec...)
	item := func(id, op string, version int64, price float64) string {
		return cdcLine(t, "items", id, map[string]any{"item_id": id}, op, version, topics.ItemRow{
			ItemID: id, Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: price, Stock: 5})
	}
	produceItems := func(s string) {
		produceLines(t, outside, topics.CDCItems, s)
	}
	sentinelsReached := func() bool {
		reached := map[string]bool{}
		for _, line := range readAll(t, addr, topics.DeliveryResults, sec...) {
			var r topics.DeliveryResult
			if json.Unmarshal([]byte(line), &r) == nil {
				reached[r.MemberID] = true
			}
		}
		for _, m := range sentinels {
			if !reached[m] {
				return false
			}
		}
		return true
	}
	version := int64(1000)
	produceItems(item("E2E-I0", "i", version, 5000))
	var nextDrop time.Time
	for deadline := time.Now().Add(90 * time.Second); !sentinelsReached(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("price drops of E2E-I0 did not reach all of %v within 90s", sentinels)
		}
		if time.Now().After(nextDrop) {
			// Back to 5,000 (no event), then down to 2,900: a new price
			// drop of 42% to at least 1,000 yen, which the example
			// campaigns send as price-drop-big, now.
			produceItems(item("E2E-I0", "u", version+1, 5000) + item("E2E-I0", "u", version+2, 2900))
			version += 2
			nextDrop = time.Now().Add(15 * time.Second)
		}
	}
	sentinelResults := len(readAll(t, addr, topics.DeliveryResults, sec...))

	produceItems(item("E2E-I1", "i", 102, 5000) + item("E2E-I1", "u", 103, 2900))
	results := waitFor(t, addr, topics.DeliveryResults, sentinelResults+2, sec...)
	// Nobody else: once every stage, upstream first, has consumed all its
	// input, no further delivery can be under way. The timer stages' loop
	// topics tick on the wall clock and are left out: nothing here is held
	// (it is noon for every member) and no cart is open.
	testkit.WaitCaughtUpWith(t, outside, []string{topics.LoopOf(topics.GroupDetect), topics.LoopOf(topics.GroupTiming), topics.LoopOf(topics.GroupSend)}, pipeline.Stages()...)
	results = readAll(t, addr, topics.DeliveryResults, sec...)
	var got []string
	for _, line := range results {
		var r topics.DeliveryResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("delivery result %q: %v", line, err)
		}
		if r.Status != topics.StatusSent || r.CampaignID != "price-drop-big" {
			t.Errorf("result %+v", r)
		}
		if !slices.Contains(sentinels, r.MemberID) {
			got = append(got, r.MemberID)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"E2E-M1", "E2E-M2"}) {
		t.Fatalf("delivery results for %v besides the sentinels, want [E2E-M1 E2E-M2]", got)
	}

	// rtm explain, from outside: the debug user's offer was excluded by
	// the example filter table, named with its version and row; M1's was
	// sent.
	explainMember := func(m string) string {
		t.Helper()
		ex := exec.Command(rtmBin, "explain", "--member", m, "--since", "10m", "--brokers", addr, "--partitions", "4",
			"--kafka-tls", "--kafka-tls-ca-file", cert, "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", user)
		ex.Env = append(os.Environ(), "RTM_KAFKA_SASL_PASSWORD="+pass)
		out, err := ex.CombinedOutput()
		if err != nil {
			t.Fatalf("rtm explain --member %s: %v: %s", m, err, out)
		}
		t.Logf("rtm explain --member %s:\n%s", m, out)
		return string(out)
	}
	if out := explainMember("E2E-M3"); !strings.Contains(out, "excluded by filter") || !strings.Contains(out, "table member-filters@") ||
		!strings.Contains(out, " row ") || !strings.Contains(out, "campaign price-drop-big") {
		t.Errorf("explain of the debug user does not name the filter table, row and campaign")
	}
	// The item's creation fired no campaign: explain shows it to its
	// favouriters, with the campaign table that was evaluated.
	if out := explainMember("E2E-M1"); !strings.Contains(out, "outcome   sent on ") ||
		!strings.Contains(out, "no campaign matched") || !strings.Contains(out, "new_item items/E2E-I1/102/new_item (favourited E2E-I1)") ||
		!strings.Contains(out, "no row matched in campaigns@") {
		t.Errorf("explain of E2E-M1 does not show the sent delivery and the unmatched new_item event")
	}
	// A test render of the same campaign for M1, from its current profile,
	// as a mail this time: addressed to M1, with the price drop in it.
	rr := exec.Command(rtmBin, "rules", "render", "--member", "E2E-M1", "--campaign", "price-drop-big", "--channel", "MAIL",
		"--brokers", addr, "--partitions", "4",
		"--kafka-tls", "--kafka-tls-ca-file", cert, "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", user)
	rr.Env = append(os.Environ(), "RTM_KAFKA_SASL_PASSWORD="+pass)
	rendered, err := rr.Output()
	t.Logf("rtm rules render --member E2E-M1 --campaign price-drop-big --channel MAIL:\n%s", rendered)
	if err != nil {
		t.Fatalf("rtm rules render: %v", err)
	}
	for _, want := range []string{"MAIL to E2E-M1", `"to": "E2E-M1@example.jp"`, "¥5,000 → ¥2,900"} {
		if !strings.Contains(string(rendered), want) {
			t.Errorf("the test render lacks %q", want)
		}
	}

	// rtm report, from outside: every price-drop-big delivery was sent
	// (the example campaign holds nobody out), so there is no uplift.
	rp := exec.Command(rtmBin, "report", "--campaign", "price-drop-big", "--since", "1d", "--json", "--brokers", addr,
		"--kafka-tls", "--kafka-tls-ca-file", cert, "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", user)
	rp.Env = append(os.Environ(), "RTM_KAFKA_SASL_PASSWORD="+pass)
	reported, err := rp.Output()
	t.Logf("rtm report --campaign price-drop-big --json:\n%s", reported)
	var rep report.Report
	if err != nil || json.Unmarshal(reported, &rep) != nil {
		t.Fatalf("rtm report: %v", err)
	}
	if n := len(sentinels) + 2; rep.Treatment.Members != n || rep.Treatment.Sends != len(results) || rep.Holdout.Members != 0 || rep.Uplift != nil {
		t.Errorf("rtm report: treatment %+v, holdout %+v, uplift %+v; want %d members sent to %d times, nobody held out, no uplift",
			rep.Treatment, rep.Holdout, rep.Uplift, n, len(results))
	}

	// A wrong password fails fast and says where and how.
	start := time.Now()
	bad := exec.Command(rtmBin, "topics", "apply", "--brokers", addr, "--partitions", "4", "--kafka-tls", "--kafka-tls-ca-file", cert,
		"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", user)
	bad.Env = append(os.Environ(), "RTM_KAFKA_SASL_PASSWORD=wrong")
	out, err := bad.CombinedOutput()
	t.Logf("wrong password: failed after %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	if err == nil {
		t.Fatal("rtm topics apply with a wrong password succeeded")
	}
	for _, w := range []string{addr, "SASL SCRAM-SHA-256 over TLS", "check kafka.sasl"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("the error does not name %q", w)
		}
	}
}

// readAll reads a topic from the start (conn: the connection options).
func readAll(t *testing.T, addr, topic string, conn ...kgo.Opt) []string {
	var out []string
	for _, r := range testkit.ReadCommittedWith(t, addr, conn, topic) {
		out = append(out, string(r.Value))
	}
	return out
}

// produceLines produces kcat-style "key<TAB>value" lines.
func produceLines(t *testing.T, cl *kgo.Client, topic, lines string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimRight(lines, "\n"), "\n") {
		k, v, _ := strings.Cut(l, "\t")
		if err := cl.ProduceSync(testkit.Context(t), &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls a topic until it holds at least n records.
func waitFor(t *testing.T, addr, topic string, n int, conn ...kgo.Opt) []string {
	t.Helper()
	var recs []string
	testkit.Eventually(t, 90*time.Second, fmt.Sprintf("%d records on %s", n, topic), func() bool {
		recs = readAll(t, addr, topic, conn...)
		return len(recs) >= n
	})
	return recs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startDev starts an rtm dev command with its stderr in the test log and
// returns its stdout; at cleanup it stops it with Ctrl-C and fails the
// test unless it exits cleanly within 30 s.
func startDev(t *testing.T, cmd *exec.Cmd) io.Reader {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("rtm dev exited with %v after Ctrl-C", err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Error("rtm dev did not stop within 30s of Ctrl-C")
		}
	})
	return stdout
}

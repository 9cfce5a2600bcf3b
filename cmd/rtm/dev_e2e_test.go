package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtm-project/rtm/internal/testkit"
	"github.com/rtm-project/rtm/topics"
)

// noonZone returns a fixed-offset time zone where it is about noon now, so
// the example rules' quiet hours (22:00-08:00) never hold the test's offers.
func noonZone() string {
	k := 12 - time.Now().UTC().Hour()
	switch {
	case k > 0:
		return fmt.Sprintf("Etc/GMT-%d", k)
	case k < 0:
		return fmt.Sprintf("Etc/GMT+%d", -k)
	}
	return "UTC"
}

func cdcLine(t *testing.T, table, key string, keyCols map[string]any, op string, version int64, row any) string {
	t.Helper()
	rb, _ := json.Marshal(row)
	v, err := topics.CDCCodec{}.Encode(&topics.CDCRecord{Table: table, Op: op, Version: version, Key: keyCols, Row: rb, TS: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return key + "\t" + string(v) + "\n"
}

// TestDevFromOutside runs `rtm dev --no-simulator` as a process and drives
// it only through Kafka with kcat: change rows in, delivery results out —
// for exactly the members the example rules target, and nobody else.
func TestDevFromOutside(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	addr, httpAddr, collectorAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cmd := exec.Command(rtmBin, "dev", "--no-simulator", "--data-dir", t.TempDir(), "--broker-addr", addr,
		"--http-addr", httpAddr, "--collector-addr", collectorAddr, "--partitions", "4",
		"--sink-smtp-addr", freeAddr(t), "--sink-http-addr", freeAddr(t), "--log-level", "warn")
	stdout, _ := cmd.StdoutPipe()
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
	tz := noonZone()
	var in strings.Builder
	v := int64(1)
	for i, debug := range []bool{false, false, true, false} {
		m := fmt.Sprintf("E2E-M%d", i+1)
		in.WriteString(cdcLine(t, "members", m, map[string]any{"member_id": m}, "i", v, topics.MemberRow{
			MemberID: m, Email: m + "@example.jp", MailOptIn: true, LineUserID: "U" + m, LineOptIn: true,
			Status: "active", IsDebug: debug, Timezone: tz}))
		v++
		if i < 3 {
			in.WriteString(cdcLine(t, "favorites", m, map[string]any{"member_id": m, "item_id": "E2E-I1"}, "i", v,
				topics.FavoriteRow{MemberID: m, ItemID: "E2E-I1", CreatedAt: time.Now().UTC()}))
			v++
		}
	}
	// kcat -t takes one topic per run: members, then favourites.
	var members, favs strings.Builder
	for _, l := range strings.SplitAfter(in.String(), "\n") {
		if strings.Contains(l, `"table":"favorites"`) {
			favs.WriteString(l)
		} else {
			members.WriteString(l)
		}
	}
	testkit.Kcat(t, members.String(), "-b", addr, "-P", "-K\t", "-X", "partitioner=murmur2_random", "-t", topics.CDCMembers)
	testkit.Kcat(t, favs.String(), "-b", addr, "-P", "-K\t", "-X", "partitioner=murmur2_random", "-t", topics.CDCFavorites)
	// The price drop must find the favourites: wait until member-state has
	// written all seven rows' effects to its changelog.
	waitFor(t, addr, topics.TableOf(topics.GroupMemberState), 7)
	// The audience stage reads its own copy of the table, which follows the
	// changelog by a fetch; nothing outside the process can see it, so wait
	// the few fetch intervals that takes.
	time.Sleep(2 * time.Second)

	item := func(op string, version int64, price float64) string {
		return cdcLine(t, "items", "E2E-I1", map[string]any{"item_id": "E2E-I1"}, op, version, topics.ItemRow{
			ItemID: "E2E-I1", Name: "土鍋", Brand: "ナチュラルライフ", Category: "キッチン", Price: price, Stock: 5})
	}
	testkit.Kcat(t, item("i", 100, 5000)+item("u", 101, 2900), "-b", addr, "-P", "-K\t", "-X", "partitioner=murmur2_random", "-t", topics.CDCItems)

	results := waitFor(t, addr, topics.DeliveryResults, 2)
	var got []string
	for _, line := range results {
		var r topics.DeliveryResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("delivery result %q: %v", line, err)
		}
		if r.Status != topics.StatusSent || r.CampaignID != "price-drop-big" {
			t.Errorf("result %+v", r)
		}
		got = append(got, r.MemberID)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"E2E-M1", "E2E-M2"}) {
		t.Fatalf("delivery results for %v, want [E2E-M1 E2E-M2]", got)
	}
	// Nobody else: give a straggler the time one more delivery would take.
	time.Sleep(2 * time.Second)
	if n := len(readAll(t, addr, topics.DeliveryResults)); n != 2 {
		t.Fatalf("%d delivery results, want 2", n)
	}
}

// readAll reads a topic from the start with kcat.
func readAll(t *testing.T, addr, topic string) []string {
	out := testkit.Kcat(t, "", "-b", addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
	return strings.FieldsFunc(out, func(r rune) bool { return r == '\n' })
}

// waitFor polls a topic with kcat until it holds at least n records.
func waitFor(t *testing.T, addr, topic string, n int) []string {
	t.Helper()
	var recs []string
	testkit.Eventually(t, 90*time.Second, fmt.Sprintf("%d records on %s", n, topic), func() bool {
		recs = readAll(t, addr, topic)
		return len(recs) >= n
	})
	return recs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

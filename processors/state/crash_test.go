//go:build unix

package state

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The crash tests run the writing side in a child process (this test
// binary, re-executed with STATE_TEST_HELPER set) that kills itself with
// SIGKILL: no deferred code, no Close, exactly like an OOM kill.
const helperEnv = "STATE_TEST_HELPER"

// TestHelperProcess is not a test: it is the child process of the crash
// tests, and skips itself when run normally.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("child process of the crash tests")
	case "store":
		helperStore(t)
	case "goka":
		helperGoka(t)
	default:
		t.Fatalf("unknown helper %q", os.Getenv(helperEnv))
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGKILL); err != nil {
		t.Fatalf("killing myself: %v", err)
	}
	select {} // wait for the signal
}

// runHelper runs the child and checks that it died of SIGKILL.
func runHelper(t *testing.T, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child process was not killed (err %v):\n%s", err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child process did not die of SIGKILL: %v\n%s", err, out)
	}
}

// helperStore writes rows r0..r(n-1) with offsets 0..n-1 into the store in
// $STATE_DIR, the $STATE_MODE way, and flushes them to sstables so the
// killed store really holds them on disk.
func helperStore(t *testing.T) {
	dir, mode := os.Getenv("STATE_DIR"), os.Getenv("STATE_MODE")
	n, err := strconv.Atoi(os.Getenv("STATE_ROWS"))
	must(t, err)
	first, err := strconv.Atoi(os.Getenv("STATE_FIRST"))
	must(t, err)
	opts := testOptions(t)
	if b := os.Getenv("STATE_BATCH"); b != "" {
		opts.RecoveryBatchBytes, err = strconv.Atoi(b) // small: recovery batches are ingested
		must(t, err)
	}
	st, err := New(dir, opts)
	must(t, err)
	must(t, st.Open())
	if mode != "recovering" && mode != "close-recovering" {
		must(t, st.MarkRecovered())
	}
	for i := first; i < first+n; i++ {
		must(t, st.Set(fmt.Sprintf("r%03d", i), []byte(fmt.Sprintf("fav=item-%d", i%3))))
		must(t, st.SetOffset(int64(i)))
	}
	if os.Getenv("STATE_BATCH") != "" && st.Stats().Ingests == 0 {
		t.Fatal("no recovery batch was ingested")
	}
	if mode == "close" || mode == "close-recovering" {
		must(t, st.Close())
		return
	}
	st.mu.Lock()
	must(t, st.commitPendingLocked())
	must(t, st.db.Flush())
	st.mu.Unlock()
}

func TestUncleanShutdownDiscardsStore(t *testing.T) {
	type session struct {
		mode        string // recovering, recovered, close, close-recovering
		first, rows int
		batch       string // RecoveryBatchBytes; "" for the default
	}
	for _, tc := range []struct {
		name     string
		sessions []session
		wantRows int   // rows after reopen
		wantOff  int64 // offset after reopen; -1: the default
	}{
		{"killed while recovering", []session{{"recovering", 0, 50, ""}}, 0, -1},
		{"killed while recovering, batches ingested", []session{{"recovering", 0, 300, "256"}}, 0, -1},
		{"closed cleanly while recovering, batches ingested, then killed while recovering",
			[]session{{"close-recovering", 0, 300, "256"}, {"recovering", 300, 100, "256"}}, 0, -1},
		{"closed cleanly while recovering twice, batches ingested",
			[]session{{"close-recovering", 0, 300, "256"}, {"close-recovering", 300, 100, "256"}}, 400, 399},
		{"killed after recovery", []session{{"recovered", 0, 50, ""}}, 0, -1},
		{"closed cleanly", []session{{"close", 0, 50, ""}}, 50, 49},
		{"closed cleanly, then killed", []session{{"close", 0, 50, ""}, {"recovered", 50, 10, ""}}, 0, -1},
		{"closed cleanly twice", []session{{"close", 0, 50, ""}, {"close", 50, 10, ""}}, 60, 59},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, s := range tc.sessions {
				runHelper(t, helperEnv+"=store", "STATE_DIR="+dir, "STATE_MODE="+s.mode,
					"STATE_FIRST="+strconv.Itoa(s.first), "STATE_ROWS="+strconv.Itoa(s.rows), "STATE_BATCH="+s.batch)
			}
			_, err := os.Stat(filepath.Join(dir, markerName))
			if clean := err == nil; clean != (tc.wantRows > 0) {
				t.Fatalf("clean-shutdown marker present = %v after the child exited", clean)
			}
			st := openStore(t, dir, testOptions(t))
			if off, err := st.GetOffset(-1); err != nil || off != tc.wantOff {
				t.Fatalf("GetOffset = %d, %v; want %d", off, err, tc.wantOff)
			}
			wantDiscards := uint64(0)
			if tc.wantRows == 0 {
				wantDiscards = 1
			}
			if d := st.Stats().Discards; d != wantDiscards {
				t.Fatalf("Discards = %d, want %d", d, wantDiscards)
			}
			must(t, st.MarkRecovered())
			it, err := st.Iterator()
			must(t, err)
			rows := 0
			for it.Next() {
				rows++
			}
			it.Release()
			if rows != tc.wantRows {
				t.Fatalf("%d rows after reopen, want %d", rows, tc.wantRows)
			}
			checkIndexes(t, st)
			if got := len(lookup(t, st, "fav", "item-0")); got != (tc.wantRows+2)/3 {
				t.Fatalf("Lookup(item-0) found %d rows, want %d", got, (tc.wantRows+2)/3)
			}
		})
	}
}

// TestOpenLockedDirectoryKeepsIt: a second store opened on a directory in
// use fails on the LOCK before it looks at (and would discard) the contents.
func TestOpenLockedDirectoryKeepsIt(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir, testOptions(t))
	must(t, st.MarkRecovered())
	must(t, st.Set("k", []byte("fav=a")))
	must(t, st.SetOffset(7))
	other, err := New(dir, testOptions(t))
	must(t, err)
	if err := other.Open(); err == nil {
		t.Fatal("second Open of a directory in use succeeded")
	}
	if d := other.Stats().Discards; d != 0 {
		t.Fatalf("second Open: Discards = %d, want 0", d)
	}
	if v, err := st.Get("k"); err != nil || string(v) != "fav=a" {
		t.Fatalf("Get after a second Open = %q, %v; want the row", v, err)
	}
	must(t, st.Close())
	st = openStore(t, dir, testOptions(t))
	if off, err := st.GetOffset(-1); err != nil || off != 7 {
		t.Fatalf("reopened: GetOffset = %d, %v; want 7 (kept, not discarded)", off, err)
	}
}

// helperGoka runs the processor in $STATE_ROOT against the brokers in
// $STATE_BROKERS until it has processed the whole workload, flushes its
// stores to disk and returns (to be killed).
func helperGoka(t *testing.T) {
	k := connectCluster(t, strings.Split(os.Getenv("STATE_BROKERS"), ","))
	p := newProcessor(t, k.brokers, os.Getenv("STATE_ROOT"))
	p.waitProcessed(t, crashWorkload())
	for part := range int32(numPartitions) {
		st := p.reg.Store(string(favTable), part)
		st.mu.Lock()
		must(t, st.db.Flush())
		st.mu.Unlock()
	}
}

func crashWorkload() favWorkload { return newFavWorkload(200, 600) }

// TestGokaUncleanShutdownRestoresFromChangelog: a processor is killed
// after processing; its successor discards the local stores, restores them
// from the changelog, and ends with rows, offsets and indexes equal to
// what the changelog says.
func TestGokaUncleanShutdownRestoresFromChangelog(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the killed member's session to time out")
	}
	k := newCluster(t)
	k.createTopic(t, string(favInput), numPartitions)
	w := crashWorkload()
	k.produce(t, string(favInput), w.updates)
	root := t.TempDir()
	runHelper(t, helperEnv+"=goka", "STATE_BROKERS="+strings.Join(k.brokers, ","), "STATE_ROOT="+root)

	for part := range numPartitions {
		dir := filepath.Join(root, string(favTable), strconv.Itoa(part))
		if ok, err := markerExists(vfs.Default, dir); err != nil || ok {
			t.Fatalf("partition %d after kill: marker %v, %v; want none", part, ok, err)
		}
	}

	p := newProcessor(t, k.brokers, root)
	p.waitProcessed(t, w)
	for part := range int32(numPartitions) {
		st := p.reg.Store(string(favTable), part)
		if d := st.Stats().Discards; d != 1 {
			t.Errorf("partition %d: Discards = %d, want 1", part, d)
		}
	}
	// Re-delivered input may still be re-applied (and re-logged), so poll
	// until local state and changelog agree.
	var diff string
	waitFor(t, "local state equal to the changelog", func() bool {
		rows, last := k.changelog(t, string(favTable))
		diff = ""
		for part := range int32(numPartitions) {
			st := p.reg.Store(string(favTable), part)
			if off, err := st.GetOffset(-1); err != nil || off != last[part] {
				diff += fmt.Sprintf("partition %d: offset %d (%v), changelog ends at %d; ", part, off, err, last[part])
			}
			local := map[string]string{}
			it, err := st.Iterator()
			must(t, err)
			for it.Next() {
				v, err := it.Value()
				must(t, err)
				local[string(it.Key())] = string(v)
			}
			it.Release()
			if fmt.Sprint(local) != fmt.Sprint(rows[part]) {
				diff += fmt.Sprintf("partition %d: %d local rows, %d in the changelog; ", part, len(local), len(rows[part]))
			}
		}
		return diff == ""
	})
	for part := range int32(numPartitions) {
		waitIndexesConsistent(t, p.reg.Store(string(favTable), part))
	}
}

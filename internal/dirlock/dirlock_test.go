package dirlock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestSecondLockIsRefusedAndReleased(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "inst")
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open files: a second open in this process
	// conflicts exactly as another process would.
	if _, err := Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock2, err := Lock(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

// TestLockHeldByAnotherProcess checks the lock against a real second
// process (flock(1) from util-linux), and that it names the holder's pid.
func TestLockHeldByAnotherProcess(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock(1) not installed")
	}
	dir := t.TempDir()
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	out, err := exec.Command("flock", "-n", filepath.Join(dir, "LOCK"), "true").CombinedOutput()
	if err == nil {
		t.Fatalf("flock -n got the lock we hold: %s", out)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "LOCK"))
	if len(data) == 0 {
		t.Error("LOCK does not record the holder's pid")
	}
}

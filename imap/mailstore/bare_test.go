package mailstore

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The last release of a folder whose only waiting renames are bare names
// does not wait for another process's uidlist lock: the names are left
// for a later sync, and nothing waited with the folder's mutex held.
func TestReleaseDoesNotWaitForBareNames(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	deliverFile(t, st, "", 1)
	reg := NewRegistry()
	reg.flagLockWait = time.Minute // a wait would time the test out
	var waits atomic.Int32
	reg.syncHook = func(event string) {
		if event == "flush lock wait" {
			waits.Add(1)
		}
	}
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	cur := filepath.Join(st.Path(), "cur")
	base := deliverFileBase(1)
	lock := filepath.Join(st.Path(), "dovecot-uidlist.lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(lock)
	rename(t, filepath.Join(cur, base+":2,"), filepath.Join(cur, base))
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	mb.mu.Lock()
	n := len(mb.bare)
	mb.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d bare names noted, want 1", n)
	}
	mb.Release()
	if n := waits.Load(); n != 0 {
		t.Errorf("the release waited %d times for the lock with only a bare name left", n)
	}
	if now := curNames(t, st, ""); !slices.Equal(now, []string{base}) {
		t.Errorf("cur/ %q, want the bare name as it was", now)
	}
}

// A bare name whose rename fails otherwise than by the file being gone
// keeps its name: it is not tried again at the next syncs, the message is
// read under it, and the folder's state is saved and read back with it,
// so that the next open neither lists cur/ nor loses the name.
func TestBareNameKeptAfterRenameFailure(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 2; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	var tries atomic.Int32
	reg.bareFault = func(string) error {
		tries.Add(1)
		return &os.LinkError{Op: "renameat", Err: syscall.EPERM}
	}
	mb := openBox(t, reg, st, "INBOX")
	cur := filepath.Join(st.Path(), "cur")
	base1 := deliverFileBase(1)
	lock := filepath.Join(st.Path(), "dovecot-uidlist.lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rename(t, filepath.Join(cur, base1+":2,"), filepath.Join(cur, base1))
	if err := mb.Sync(true); err != nil { // lock held: noted, not renamed
		t.Fatal(err)
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := mb.Sync(true); err != nil {
			t.Fatal(err)
		}
	}
	if n := tries.Load(); n != 1 {
		t.Errorf("the rename was tried %d times, want once", n)
	}
	mb.mu.Lock()
	nb, nk := len(mb.bare), len(mb.bareKept)
	mb.mu.Unlock()
	if nb != 0 || nk != 1 {
		t.Errorf("%d names to rename, %d kept; want 0 and 1", nb, nk)
	}
	if b, _, err := mb.ReadMessage(1, nil, 0); err != nil || !strings.HasPrefix(string(b), "Subject: 1\n") {
		t.Fatalf("read the message of a kept bare name: %q, %v", b, err)
	}

	// Saved with the name, and read back from courriel-state alone.
	mb.mu.Lock()
	mb.saveStateLocked()
	saved := mb.savedState == mb.stateSummaryLocked()
	mb.mu.Unlock()
	if !saved {
		t.Fatal("courriel-state not written with a kept bare name")
	}
	data, err := os.ReadFile(filepath.Join(st.Path(), StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	s, err := decodeState(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.bareKept[base1]; !ok || len(s.bareKept) != 1 {
		t.Errorf("courriel-state kept bare names %v, want %s", s.bareKept, base1)
	}
	if now := curNames(t, st, ""); !slices.Contains(now, base1) {
		t.Errorf("cur/ %q: the bare name changed", now)
	}
}

package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// One file's two links under one base (Dovecot leaves them for a while)
// are one message, and not a pair to settle at every change of the
// folder: once a listing under the lock has found them one file, a
// listing without it does not take the lock to list the folder again.
// Two files of one base still are split (TestDuplicateBaseShownAsDovecot).
func TestLinkedNamesNotSettledAgain(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	cur := filepath.Join(st.Path(), "cur")
	const b = "1700000000.M9P1.test,S=20"
	if err := os.WriteFile(filepath.Join(cur, b+":2,S"), []byte("Subject: 9\n\nbody 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(cur, b+":2,S"), filepath.Join(cur, b+":2,FS")); err != nil {
		t.Fatal(err)
	}
	mb := openBox(t, stateRegistry(nil, 0), st, "INBOX")
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	count := func() uint64 {
		mb.mu.Lock()
		defer mb.mu.Unlock()
		return mb.listings
	}
	for i := 1; i <= 3; i++ {
		// Another program's change in cur/: a file of its own.
		if err := os.WriteFile(filepath.Join(cur, fmt.Sprintf("1700000000.M%dP1.test,S=20:2,", i)), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		before := count()
		if err := mb.Sync(true); err != nil {
			t.Fatal(err)
		}
		if got := count() - before; got > 2 {
			t.Errorf("change %d: %d listings, want new/ and cur/ once (2)", i, got)
		}
	}
	if got := mb.Status().Messages; got != 4 {
		t.Errorf("%d messages, want 4 (the linked pair is one)", got)
	}
	for _, n := range []string{b + ":2,S", b + ":2,FS"} {
		if _, err := os.Stat(filepath.Join(cur, n)); err != nil {
			t.Errorf("a link is gone: %v", err)
		}
	}
}

package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testStore opens a fresh maildir owned by the test's user.
func testStore(t *testing.T) *Store {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "Maildir"), Owner{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// openBox opens folder name through reg and releases it at cleanup.
func openBox(t *testing.T, reg *Registry, st *Store, name string) *Mailbox {
	t.Helper()
	mb, err := reg.Open(st, name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(mb.Release)
	return mb
}

// deliverFile drops a message into folder dir's new/ as a delivery agent
// does (written elsewhere, then placed) and returns its file name.
func deliverFile(t *testing.T, st *Store, dir string, n int) string {
	t.Helper()
	name := fmt.Sprintf("1700000000.M%dP1.test,S=20", n)
	body := fmt.Sprintf("Subject: %d\n\nbody %d\n", n, n)
	p := filepath.Join(st.Path(), dir, "new", name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// readUIDList returns the dovecot-uidlist of folder dir as lines.
func readUIDList(t *testing.T, st *Store, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(st.Path(), dir, "dovecot-uidlist"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// lingeringBoxes counts the folders that nobody has open and that are
// waiting for their stamps to settle (not kept yet).
func lingeringBoxes(reg *Registry) int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	n := 0
	for _, mb := range reg.boxes {
		if mb.refs == 0 && !mb.kept {
			n++
		}
	}
	return n
}

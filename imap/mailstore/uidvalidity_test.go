package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/imap/uidlist"
)

// DELETE and CREATE of the same name, over and over within one second,
// give a greater UIDVALIDITY each time, kept in Dovecot's counter files.
func TestUIDValidityRecreate(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	reg := NewRegistry()
	var prev uint32
	for i := range 5 {
		if err := st.Create("Work"); err != nil {
			t.Fatalf("round %d: create: %v", i, err)
		}
		mb, err := reg.Open(st, "Work")
		if err != nil {
			t.Fatal(err)
		}
		v := mb.UIDValidity()
		mb.Release()
		if v <= prev {
			t.Errorf("round %d: UIDVALIDITY %d after %d", i, v, prev)
		}
		prev = v
		// The value is on disk at once, even for an empty folder, so that
		// the next SELECT sees the same one.
		if l := readUIDList(t, st, ".Work"); !strings.HasPrefix(l[0], fmt.Sprintf("3 V%d N1 G", v)) || len(l) != 1 {
			t.Errorf("round %d: uidlist %q", i, l)
		}
		main, _ := os.ReadFile(filepath.Join(st.Path(), uidlist.UIDValidityFileName))
		if string(main) != fmt.Sprintf("%08x", v) {
			t.Errorf("round %d: counter %q, want %08x", i, main, v)
		}
		if _, err := os.Stat(filepath.Join(st.Path(), fmt.Sprintf("%s.%08x", uidlist.UIDValidityFileName, v))); err != nil {
			t.Errorf("round %d: companion: %v", i, err)
		}
		mb, err = reg.Open(st, "Work")
		if err != nil {
			t.Fatal(err)
		}
		if again := mb.UIDValidity(); again != v {
			t.Errorf("round %d: reopened with UIDVALIDITY %d, want %d", i, again, v)
		}
		mb.Release()
		if err := st.Delete("Work"); err != nil {
			t.Fatal(err)
		}
		reg.Forget(st.Path(), ".Work", false)
	}
}

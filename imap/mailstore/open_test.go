package mailstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// A hostile user who can write their home plants ~/mailbox (or the home
// itself) as a symlink to another user's maildir: IMAP must not follow.
func TestOpenStoreUnderRefusesSymlinks(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	alice := filepath.Join(base, "example.org", "alice", "mailbox")
	if _, err := OpenStoreUnder(base, "example.org/alice/mailbox", Owner{}); err != nil {
		t.Fatal(err)
	}
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(base, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		if err := os.Symlink(target, filepath.Join(base, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("example.org/mallory")
	link(alice, "example.org/mallory/mailbox")                        // absolute
	link("../alice", "example.org/eve")                               // relative, the home itself
	link(filepath.Join(base, "example.org"), "other.org")             // a domain directory
	os.WriteFile(filepath.Join(base, "example.org/file"), nil, 0o600) // not a directory
	link("/nonexistent", "example.org/dangling")

	tests := []struct {
		rel     string
		symlink bool // ErrSymlink expected; else another error
	}{
		{"example.org/mallory/mailbox", true},
		{"example.org/eve/mailbox", true},
		{"other.org/alice/mailbox", true},
		{"example.org/dangling/mailbox", true},
		{"example.org/file/mailbox", false},
		{"example.org/../example.org/alice/mailbox", false},
		{"", false},
	}
	for _, tc := range tests {
		st, err := OpenStoreUnder(base, tc.rel, Owner{})
		if err == nil {
			st.Close()
			t.Errorf("%q: opened", tc.rel)
			continue
		}
		if errors.Is(err, ErrSymlink) != tc.symlink {
			t.Errorf("%q: %v, ErrSymlink want %v", tc.rel, err, tc.symlink)
		}
	}
	// Nothing was created through the links.
	if _, err := os.Lstat("/nonexistent"); err == nil {
		t.Error("created the dangling link's target")
	}
	ents, _ := os.ReadDir(alice)
	if len(ents) != 3 {
		t.Errorf("alice's maildir now holds %d entries, want cur new tmp", len(ents))
	}
	// The user's own maildir opens, here or through the trusted base.
	st, err := OpenStoreUnder(base, "/example.org/alice/mailbox/", Owner{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Path() != alice {
		t.Errorf("Path() = %s", st.Path())
	}
	st.Close()
	linkedBase := filepath.Join(t.TempDir(), "base")
	os.Symlink(base, linkedBase)
	if st, err := OpenStoreUnder(linkedBase, "example.org/alice/mailbox", Owner{}); err != nil {
		t.Errorf("a symlink in the administrator's base refused: %v", err)
	} else {
		st.Close()
	}
}

// The first open of a large folder (every file numbered) allocates a few
// objects whatever its size: the names listed are slices of a block a
// directory read, the messages one array, and the map by name is made
// only when something needs it.
func TestFirstOpenAllocations(t *testing.T) {
	const n = 3000
	st := testStore(t)
	for i := range n {
		name := fmt.Sprintf("%d.M%dP1.test,S=20:2,S", 1700000000+i, i)
		if err := os.WriteFile(filepath.Join(st.Path(), "cur", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reg := NewRegistry()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	mb, err := reg.Open(st, "INBOX")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Release()
	if s := mb.Status(); s.Messages != n {
		t.Fatalf("%d messages, want %d", s.Messages, n)
	}
	if allocs := after.Mallocs - before.Mallocs; allocs >= n/10 {
		t.Errorf("first open of %d messages: %d allocations, want fewer than %d (none a message)", n, allocs, n/10)
	}
}

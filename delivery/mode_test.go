package delivery

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseUmask(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status string
		mask   uint32
		ok     bool
	}{
		{"Name:\tcourriel\nUmask:\t0022\nState:\tS\n", 0o22, true},
		{"Umask:\t0277\n", 0o277, true},
		{"Name:\tcourriel\nState:\tS\n", 0, false}, // before Linux 4.7
		{"Umask:\tzz\n", 0, false},
	} {
		mask, ok := parseUmask(strings.NewReader(tc.status))
		if mask != tc.mask || ok != tc.ok {
			t.Errorf("%q: %o %v, want %o %v", tc.status, mask, ok, tc.mask, tc.ok)
		}
	}
}

// TestCopyModeUnderDefaultACL: a default ACL on new/ takes the umask's
// place for files created there; one that would narrow a copy's mode
// (the owner may only read) must not, so the copy is chmodded to 0600.
func TestCopyModeUnderDefaultACL(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	maildir := base + "/u/mailbox/"
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(maildir+sub, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// posix_acl_xattr: version 2, then (tag, perm, id) entries:
	// user::r--, group::---, other::---.
	acl := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct{ tag, perm uint16 }{{0x01, 4}, {0x04, 0}, {0x20, 0}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, 0xffffffff)
	}
	if err := unix.Setxattr(maildir+"new", "system.posix_acl_default", acl, 0); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			skipOutsideCI(t, "no POSIX ACLs on this file system")
		}
		t.Fatal(err)
	}
	s := newStore(t, Options{AllowedBase: base})
	for range 2 { // the first opens the maildir, the second finds it cached
		if errs := s.Deliver(context.Background(), testMessage("A1"), []Recipient{{Address: "x@y.z", Maildir: maildir}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	ents, err := os.ReadDir(maildir + "new")
	if err != nil || len(ents) != 2 {
		t.Fatalf("new/: %v %v", ents, err)
	}
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(maildir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}

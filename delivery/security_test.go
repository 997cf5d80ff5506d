package delivery

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDeliverRefusesBadPaths(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	tests := []struct {
		name    string
		maildir string
	}{
		{"empty", ""},
		{"relative", "vmail/xomail/mailbox/"},
		{"dot relative", "./xomail/mailbox/"},
		{"dot-dot inside", base + "/xomail/../other/mailbox/"},
		{"dot-dot escaping", base + "/../etc/mailbox/"},
		{"double slash", base + "//xomail/mailbox/"},
		{"dot component", base + "/./xomail/mailbox/"},
		{"two trailing slashes", base + "/xomail/mailbox//"},
		{"root", "/"},
		{"the base itself", base + "/"},
		{"outside the base", "/tmp/xomail/mailbox/"},
		{"base as a name prefix", base + "x/mailbox/"},
		{"newline", base + "/xo\nmail/mailbox/"},
		{"NUL", base + "/xo\x00mail/mailbox/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t, Options{AllowedBase: base})
			errs := s.Deliver(context.Background(), testMessage("P1"), []Recipient{{Address: "x@y.z", Maildir: tc.maildir}})
			checkBadMaildir(t, errs[0])
		})
	}
	t.Cleanup(func() { treeEmpty(t, base) })
}

func checkBadMaildir(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v, want *Error", err)
	}
	if !e.Temporary || !errors.Is(err, ErrBadMaildir) {
		t.Errorf("error %v: Temporary=%v, ErrBadMaildir=%v; want a temporary ErrBadMaildir", err, e.Temporary, errors.Is(err, ErrBadMaildir))
	}
}

// TestDeliverRefusesSymlinkEscape plants symlinks that would lead a write
// out of the maildir (or out of the base) and checks that nothing is written
// outside and the copy is a temporary ErrBadMaildir.
func TestDeliverRefusesSymlinkEscape(t *testing.T) {
	t.Parallel()
	mkMaildir := func(t *testing.T, dir string) {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	symlink := func(t *testing.T, target, link string) {
		if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, base, maildir, outside string)
	}{
		{"tmp absolute symlink outside", func(t *testing.T, base, md, out string) {
			mkMaildir(t, md)
			os.Remove(md + "tmp")
			symlink(t, out, md+"tmp")
		}},
		{"tmp relative symlink outside", func(t *testing.T, base, md, out string) {
			mkMaildir(t, md)
			os.Remove(md + "tmp")
			rel, _ := filepath.Rel(md, out)
			symlink(t, rel, md+"tmp")
		}},
		{"new symlink outside", func(t *testing.T, base, md, out string) {
			mkMaildir(t, md)
			os.Remove(md + "new")
			symlink(t, out, md+"new")
		}},
		{"new relative symlink to a sibling maildir", func(t *testing.T, base, md, out string) {
			mkMaildir(t, md)
			mkMaildir(t, base+"/other/mailbox")
			os.Remove(md + "new")
			symlink(t, "../../other/mailbox/new", md+"new")
		}},
		{"tmp symlink to new inside the maildir", func(t *testing.T, base, md, out string) {
			mkMaildir(t, md)
			os.Remove(md + "tmp")
			symlink(t, "new", md+"tmp")
		}},
		{"maildir symlink outside", func(t *testing.T, base, md, out string) {
			mkMaildir(t, out)
			symlink(t, out, filepath.Clean(md))
		}},
		{"maildir relative symlink outside", func(t *testing.T, base, md, out string) {
			mkMaildir(t, out)
			rel, _ := filepath.Rel(filepath.Dir(filepath.Clean(md)), out)
			symlink(t, rel, filepath.Clean(md))
		}},
		{"home symlink outside", func(t *testing.T, base, md, out string) {
			mkMaildir(t, out+"/mailbox")
			symlink(t, out, base+"/xomail")
		}},
		{"home symlink outside, maildir missing", func(t *testing.T, base, md, out string) {
			symlink(t, out, base+"/xomail")
		}},
		{"home relative symlink outside", func(t *testing.T, base, md, out string) {
			rel, _ := filepath.Rel(base, out)
			symlink(t, rel, base+"/xomail")
		}},
		{"home is a file", func(t *testing.T, base, md, out string) {
			if err := os.WriteFile(base+"/xomail", nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"new is a file", func(t *testing.T, base, md, out string) {
			mkMaildir(t, md)
			os.Remove(md + "new")
			if err := os.WriteFile(md+"new", nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, outside := t.TempDir(), t.TempDir()
			outside = filepath.Join(outside, "target")
			if err := os.Mkdir(outside, 0o700); err != nil {
				t.Fatal(err)
			}
			maildir := base + "/xomail/mailbox/"
			tc.setup(t, base, maildir, outside)
			before := countFiles(t, outside)
			s := newStore(t, Options{AllowedBase: base})
			// Twice: the first delivery takes the creation path, the second
			// the fast path.
			for range 2 {
				errs := s.Deliver(context.Background(), testMessage("S1"), []Recipient{{Address: "x@y.z", Maildir: maildir}})
				checkBadMaildir(t, errs[0])
			}
			if after := countFiles(t, outside); after != before {
				t.Errorf("%d regular files outside the maildir, %d before", after, before)
			}
			if n := countFiles(t, base); n != 0 && tc.name != "home is a file" && tc.name != "new is a file" {
				t.Errorf("%d regular files left under the base", n)
			}
		})
	}
}

// TestDeliverSymlinkAfterFirstDelivery swaps tmp/ for an escaping symlink
// once the Store knows the maildir (the fast path must check too).
func TestDeliverSymlinkAfterFirstDelivery(t *testing.T) {
	t.Parallel()
	base, outside := t.TempDir(), t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	md := base + "/u/mailbox/"
	rcpt := []Recipient{{Address: "x@y.z", Maildir: md}}
	deliverOK(t, s, testMessage("S2"), rcpt...)
	for _, sub := range []string{"tmp", "new"} {
		if err := os.Rename(md+sub, md+sub+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, md+sub); err != nil {
			t.Fatal(err)
		}
		checkBadMaildir(t, s.Deliver(context.Background(), testMessage("S3"), rcpt)[0])
		treeEmpty(t, outside)
		os.Remove(md + sub)
		os.Rename(md+sub+".old", md+sub)
	}
	deliverOK(t, s, testMessage("S4"), rcpt...)
}

// countFiles counts regular files under dir, without following symlinks.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeliverRefusesSymlinkToAnotherUser: a symlink below the base that
// stays inside it is refused too. The user owns the entries of their home,
// and ~/mailbox -> ../victim/mailbox would have mail stored, as root, in
// another user's maildir. Planted before the first delivery (creation path)
// and after one (the fast path of a known maildir).
func TestDeliverRefusesSymlinkToAnotherUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		link, to    string // relative to the base
		deliveredOK bool   // a delivery before the link is planted
	}{
		{"home to another home", "evil", "victim", false},
		{"maildir to another maildir", "evil/mailbox", "../victim/mailbox", false},
		{"maildir swapped after a delivery", "evil/mailbox", "../victim/mailbox", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base})
			deliver := func(maildir string) error {
				return s.Deliver(context.Background(), testMessage("S1"), []Recipient{{Address: "x@y.z", Maildir: maildir}})[0]
			}
			if err := deliver(base + "/victim/mailbox/"); err != nil {
				t.Fatal(err)
			}
			if tc.deliveredOK {
				if err := deliver(base + "/evil/mailbox/"); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(base + "/evil/mailbox"); err != nil {
					t.Fatal(err)
				}
			} else if err := os.MkdirAll(filepath.Dir(base+"/"+tc.link), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.to, base+"/"+tc.link); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				checkBadMaildir(t, deliver(base+"/evil/mailbox/"))
			}
			if n := countFiles(t, base+"/victim"); n != 1 {
				t.Errorf("the victim's maildir holds %d files, want its own 1", n)
			}
		})
	}
}

// TestDeliverRefusesAnotherUsersMaildir: a directory entry whose
// homeDirectory points into another user's home (or at its maildir) gets
// a temporary ErrBadMaildir, as Postfix's virtual(8), working as that
// entry's uid, would get EACCES; nothing is written or created there, and
// nothing changes owner. Directories of root and of the recipient's group
// are usable as the kernel would let them be.
func TestDeliverRefusesAnotherUsersMaildir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give directories owners")
	}
	const aliceUID, evilUID, gid = 20001, 20099, 20000
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base, Chown: true})
	aliceMD := filepath.Join(base, "alice", "mailbox") + "/"
	deliverOK(t, s, testMessage("P1"), Recipient{Address: "alice@x", Maildir: aliceMD, UID: aliceUID, GID: gid})
	before := files(t, base)

	tests := []struct {
		name    string
		maildir string
		uid     int
	}{
		{"alice's maildir, known to this store, for another uid of her group", aliceMD, evilUID},
		{"a maildir to be made inside another user's", filepath.Join(base, "alice", "mailbox", ".Sent", "mailbox") + "/", evilUID},
	}
	for _, tc := range tests {
		t.Log(tc.name)
		errs := s.Deliver(context.Background(), testMessage("P2"), []Recipient{{Address: "evil@x", Maildir: tc.maildir, UID: tc.uid, GID: gid}})
		checkBadMaildir(t, errs[0])
	}
	if after := files(t, base); !slices.Equal(before, after) {
		t.Errorf("files changed: before %q, after %q", before, after)
	}
	for _, dir := range []string{"alice/mailbox", "alice/mailbox/new", "alice/mailbox/cur", "alice/mailbox/tmp"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(base, dir), &st); err != nil || st.Uid != aliceUID {
			t.Errorf("%s: owner %d, err %v; want %d", dir, st.Uid, err, aliceUID)
		}
	}

	// The administrator's layout: a domain directory of root, and one of
	// a vmail user shared by the recipient's group (0750), are usable.
	for _, tc := range []struct {
		dir        string
		uid, mode  int
		wantRefuse bool
	}{
		{"root-domain", 0, 0o755, false},
		{"group-domain", 5000, 0o750, false},
		{"private-domain", 5000, 0o700, true},
	} {
		dir := filepath.Join(base, tc.dir)
		if err := os.Mkdir(dir, os.FileMode(tc.mode)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, tc.uid, gid); err != nil {
			t.Fatal(err)
		}
		md := filepath.Join(dir, "bob", "mailbox") + "/"
		errs := s.Deliver(context.Background(), testMessage("P3"), []Recipient{{Address: "bob@x", Maildir: md, UID: 20002, GID: gid}})
		if tc.wantRefuse {
			checkBadMaildir(t, errs[0])
			if _, err := os.Lstat(filepath.Join(dir, "bob")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: bob's home made in a directory he may not search: %v", tc.dir, err)
			}
		} else if errs[0] != nil {
			t.Errorf("%s: %v", tc.dir, errs[0])
		}
	}
}

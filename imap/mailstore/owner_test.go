package mailstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Directories made at first login belong to the user, mode 0700, as those
// delivery makes: the maildir, its parents and cur/ new/ tmp/.
func TestFirstLoginOwnership(t *testing.T) {
	t.Parallel()
	owner := Owner{}
	if os.Getuid() == 0 {
		owner = Owner{UID: 4242, GID: 4343, Chown: true}
	}
	base := t.TempDir()
	for _, open := range []struct {
		name string
		fn   func() (*Store, error)
		dirs []string
	}{
		{"OpenStoreUnder", func() (*Store, error) {
			return OpenStoreUnder(base, "a.example/bob/Maildir", owner)
		}, []string{"a.example", "a.example/bob", "a.example/bob/Maildir"}},
		{"OpenStore", func() (*Store, error) {
			return OpenStore(filepath.Join(base, "b.example/carol/Maildir"), owner)
		}, []string{"b.example", "b.example/carol", "b.example/carol/Maildir"}},
	} {
		st, err := open.fn()
		if err != nil {
			t.Fatalf("%s: %v", open.name, err)
		}
		st.Close()
		last := open.dirs[len(open.dirs)-1]
		for _, d := range append(open.dirs, last+"/cur", last+"/new", last+"/tmp") {
			fi, err := os.Lstat(filepath.Join(base, d))
			if err != nil {
				t.Fatalf("%s: %v", open.name, err)
			}
			if fi.Mode() != os.ModeDir|0o700 {
				t.Errorf("%s: %s mode %v", open.name, d, fi.Mode())
			}
			if sys := fi.Sys().(*syscall.Stat_t); owner.Chown && (int(sys.Uid) != owner.UID || int(sys.Gid) != owner.GID) {
				t.Errorf("%s: %s owned by %d:%d, want %d:%d", open.name, d, sys.Uid, sys.Gid, owner.UID, owner.GID)
			}
		}
	}
	// The base itself is not the user's.
	fi, _ := os.Lstat(base)
	if sys := fi.Sys().(*syscall.Stat_t); owner.Chown && int(sys.Uid) == owner.UID {
		t.Error("the base was given to the user")
	}
}

// courriel-index holds envelopes (subjects, addresses): 0600 whatever the
// umask, as Dovecot's index files in a 0700 maildir. Not parallel: the
// umask is the process's.
func TestIndexFileMode(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	st := testStore(t)
	deliverFile(t, st, "", 1)
	mb := openBox(t, NewRegistry(), st, "INBOX")
	mb.UpdateCached(1, Cached{Size: 20, Envelope: &Envelope{Subject: "private"}})
	mb.Release() // writes courriel-index
	fi, err := os.Stat(filepath.Join(st.Path(), IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", IndexFileName, fi.Mode().Perm())
	}
}

// An entry whose homeDirectory points at another user's maildir, or into
// it, is refused (ErrNotUsable) as Dovecot, working as that entry's uid,
// would get EACCES; nothing is made there and nothing changes owner.
func TestAnotherUsersMaildirRefused(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("needs root to give directories owners")
	}
	alice := Owner{UID: 20001, GID: 20000, Chown: true}
	evil := Owner{UID: 20099, GID: 20000, Chown: true}
	base := t.TempDir()
	st, err := OpenStoreUnder(base, "alice/mailbox", alice)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, tc := range []struct {
		name string
		open func() (*Store, error)
	}{
		{"under the base, her maildir", func() (*Store, error) { return OpenStoreUnder(base, "alice/mailbox", evil) }},
		{"under the base, inside her maildir", func() (*Store, error) { return OpenStoreUnder(base, "alice/mailbox/.x/mailbox", evil) }},
		{"no base, her maildir", func() (*Store, error) { return OpenStore(filepath.Join(base, "alice/mailbox"), evil) }},
		{"no base, inside her maildir", func() (*Store, error) { return OpenStore(filepath.Join(base, "alice/mailbox/.x/mailbox"), evil) }},
	} {
		st, err := tc.open()
		if !errors.Is(err, ErrNotUsable) {
			if st != nil {
				st.Close()
			}
			t.Errorf("%s: %v, want ErrNotUsable", tc.name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(base, "alice/mailbox/.x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a directory was made in alice's maildir: %v", err)
	}
	filepath.WalkDir(filepath.Join(base, "alice"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 20001 {
			t.Errorf("%s owned by %d", p, uid)
		}
		return nil
	})
	// Her own login still works.
	if st, err := OpenStore(filepath.Join(base, "alice/mailbox"), alice); err != nil {
		t.Errorf("alice: %v", err)
	} else {
		st.Close()
	}
}

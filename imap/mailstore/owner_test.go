package mailstore

import (
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

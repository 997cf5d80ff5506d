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

package mailstore

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"courriel/internal/testenv"
)

// A CREATE cut short at any step for want of an inode (a directory, or
// the maildirfolder marker) takes back what it made: the folder does not
// exist, is not listed, and is made whole once there is room.
func TestCreateCutShortTakesBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		left uint64 // inodes free when the CREATE starts
	}{
		{"no inode for the folder", 0},
		{"no inode for cur/", 1},
		{"no inode for new/", 2},
		{"no inode for tmp/", 3},
		{"no inode for maildirfolder", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			testenv.MountTmpfs(t, base, "size=256k,nr_inodes=100,mode=0700")
			st, err := OpenStore(filepath.Join(base, "Maildir"), Owner{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			free := testenv.FillInodes(t, base, tc.left)
			err = st.Create("Projects")
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Create with %d inodes: %v, want ENOSPC", tc.left, err)
			}
			if _, err := os.Lstat(filepath.Join(st.Path(), ".Projects")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf(".Projects after the failed Create: %v", err)
			}
			if names, err := st.Folders(); err != nil || len(names) != 0 {
				t.Errorf("Folders after the failed Create: %q, %v", names, err)
			}
			if st.Exists("Projects") {
				t.Error("the folder exists after the failed Create")
			}
			free()
			if err := st.Create("Projects"); err != nil {
				t.Fatalf("Create with room again: %v", err)
			}
			for _, f := range []string{"cur", "new", "tmp", "maildirfolder"} {
				if _, err := os.Lstat(filepath.Join(st.Path(), ".Projects", f)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// A folder directory without cur/, new/ and tmp/ is a folder (Folders
// lists it, Create finds it there), and opening it makes them, as Dovecot
// does; its messages then come and go as anywhere.
func TestHalfMadeFolderCompletedAtOpen(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for _, d := range []string{".Half", ".Gone", ".Old"} {
		if err := os.Mkdir(filepath.Join(st.Path(), d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if names, err := st.Folders(); err != nil || len(names) != 3 || !st.Exists("Half") {
		t.Fatalf("Folders %q, %v; Exists(Half) %v", names, err, st.Exists("Half"))
	}
	if err := st.Create("Half"); !errors.Is(err, ErrFolderExists) {
		t.Errorf("Create over it: %v, want ErrFolderExists", err)
	}
	reg := NewRegistry()
	mb := openBox(t, reg, st, "Half")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if fi, err := os.Stat(filepath.Join(st.Path(), ".Half", sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s/ after Open: %v", sub, err)
		}
	}
	deliverFile(t, st, ".Half", 1)
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	if n := mb.Status().Messages; n != 1 {
		t.Errorf("%d messages after a delivery, want 1", n)
	}
	if err := st.Delete("Gone"); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if err := st.Rename("Old", "New"); err != nil {
		t.Errorf("Rename: %v", err)
	}
	if names, _ := st.Folders(); len(names) != 2 || names[0] != "Half" || names[1] != "New" {
		t.Errorf("Folders after Delete and Rename: %q", names)
	}
}

package mailstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"courriel/imap/uidlist"
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

// fullBlockFixture makes, on a small tmpfs, a maildir whose INBOX holds
// one numbered message and one new one not numbered yet, with a
// dovecot-uidlist that ends a few bytes short of a block boundary: the
// new message's record does not fit in the file's last block. It returns
// the store, the uidlist's content and a function that fills the disk.
func fullBlockFixture(t *testing.T) (st *Store, list string, fill func() (free func())) {
	t.Helper()
	base := t.TempDir()
	testenv.MountTmpfs(t, base, "size=256k,mode=0700")
	st, err := OpenStore(filepath.Join(base, "Maildir"), Owner{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	first := "1700000000.M1P1.test,S=20"
	if err := os.WriteFile(filepath.Join(st.Path(), "cur", first+":2,S"), []byte("Subject: 1\n\nbody 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	head := "3 V1700000000 N2 G0123456789abcdef0123456789abcdef X"
	rec := "\n1 :" + first + "\n"
	block := os.Getpagesize()
	list = head + strings.Repeat("p", block-5-len(head)-len(rec)) + rec
	if err := os.WriteFile(filepath.Join(st.Path(), uidlist.FileName), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	deliverFile(t, st, "", 2)
	return st, list, func() func() { return testenv.FillSpace(t, filepath.Join(base, "fill")) }
}

// An append to dovecot-uidlist that runs out of room half-way leaves the
// file as it was, not with a torn record that Dovecot's next append would
// turn into a corrupt line.
func TestUIDListAppendOutOfRoomLeavesNoTornRecord(t *testing.T) {
	t.Parallel()
	st, list, fill := fullBlockFixture(t)
	free := fill()
	reg := NewRegistry()
	if mb, err := reg.Open(st, "INBOX"); err == nil {
		mb.Release()
	} else if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("open on a full disk: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(st.Path(), uidlist.FileName)); string(b) != list {
		t.Errorf("uidlist after the append ran out of room: %d bytes, ends %q; want it as it was", len(b), b[max(0, len(b)-60):])
	}
	free()
	mb := openBox(t, NewRegistry(), st, "INBOX")
	if n := mb.Status().Messages; n != 2 {
		t.Errorf("%d messages with room again, want 2", n)
	}
	l := readUIDList(t, st, "")
	if len(l) != 3 || !strings.HasPrefix(l[2], "2 :1700000000.M2P1.test") {
		t.Errorf("uidlist records with room again: %q", l[1:])
	}
}

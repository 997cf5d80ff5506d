package mailstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
			st, base := storeOnTmpfs(t, "size=256k,nr_inodes=100,mode=0700")
			free := testenv.FillInodes(t, base, tc.left)
			err := st.Create("Projects")
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
	st, base := storeOnTmpfs(t, "size=256k,mode=0700")
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

// On a full disk a folder whose new messages cannot be numbered (their
// records need a block) still opens, read as it is: the numbered
// messages are there, the others wait untouched in new/, no UID given,
// the uidlist unchanged. Once there is room, the next sync numbers them,
// though no directory changed since, or one after a delivery that
// Delivered numbered (it trusts new/ held nothing else: not so here).
func TestFullDiskFolderOpensAsItIs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		deliver bool
		want    uint32
	}{
		{"then a sync", false, 2},
		{"then a delivery", true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, list, fill := fullBlockFixture(t)
			free := fill()
			reg := NewRegistry()
			mb := openBox(t, reg, st, "INBOX")
			if s := mb.Status(); s.Messages != 1 || s.UIDNext != 2 {
				t.Errorf("on a full disk: %d messages, UIDNEXT %d; want the numbered one, UIDNEXT 2", s.Messages, s.UIDNext)
			}
			if err := mb.Sync(true); err != nil || mb.Status().Messages != 1 {
				t.Errorf("a sync on a full disk: %v, %d messages", err, mb.Status().Messages)
			}
			if b, _ := os.ReadFile(filepath.Join(st.Path(), uidlist.FileName)); string(b) != list {
				t.Error("uidlist changed on a full disk")
			}
			if _, err := os.Stat(filepath.Join(st.Path(), "new", "1700000000.M2P1.test,S=20")); err != nil {
				t.Errorf("the waiting message left new/: %v", err)
			}
			free()
			if tc.deliver {
				if err := reg.Delivered(st.Path(), "", deliverFile(t, st, "", 3)); err != nil {
					t.Fatal(err)
				}
			}
			if err := mb.Sync(false); err != nil {
				t.Fatal(err)
			}
			if s := mb.Status(); s.Messages != tc.want || s.UIDNext != tc.want+1 {
				t.Errorf("with room again: %d messages, UIDNEXT %d; want %d, %d", s.Messages, s.UIDNext, tc.want, tc.want+1)
			}
			found := false
			for _, u := range mb.UIDs() {
				if m, _ := mb.Get(u); m.Base == "1700000000.M2P1.test,S=20" {
					found = true
				}
			}
			if !found {
				t.Error("the waiting message is still not numbered with room again")
			}
		})
	}
}

// With no inode left even the uidlist lock cannot be made: the folder
// opens as it is all the same, with the messages another program (here:
// Dovecot's record, read without the lock as Dovecot reads it) numbered,
// and the rest waiting.
func TestNoInodeFolderOpensAsItIs(t *testing.T) {
	t.Parallel()
	st, base := storeOnTmpfs(t, "size=256k,nr_inodes=100,mode=0700")
	one, two := "1700000000.M1P1.test,S=20", "1700000001.M2P1.dovecot,S=20"
	for _, n := range []string{"cur/" + one + ":2,S", "cur/" + two + ":2,"} {
		if err := os.WriteFile(filepath.Join(st.Path(), n), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(st.Path(), uidlist.FileName), []byte("3 V1700000000 N2 G0123456789abcdef0123456789abcdef\n1 :"+one+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	mb := openBox(t, reg, st, "INBOX")
	mb.Release() // kept: a later open takes it back after a listing
	// Dovecot numbers its file, then a delivery comes; no inode is left.
	if err := os.WriteFile(filepath.Join(st.Path(), uidlist.FileName), []byte("3 V1700000000 N3 G0123456789abcdef0123456789abcdef\n1 :"+one+"\n2 :"+two+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deliverFile(t, st, "", 3)
	free := testenv.FillInodes(t, base, 0)
	mb = openBox(t, reg, st, "INBOX")
	if s := mb.Status(); s.Messages != 2 || s.UIDNext != 3 {
		t.Errorf("with no inode: %d messages, UIDNEXT %d; want Dovecot's 2, UIDNEXT 3", s.Messages, s.UIDNext)
	}
	free()
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	if s := mb.Status(); s.Messages != 3 || s.UIDNext != 4 {
		t.Errorf("with inodes again: %d messages, UIDNEXT %d; want 3, 4", s.Messages, s.UIDNext)
	}
}

// Without the lock (no inode for it), records another program appended
// are adopted as read, in ascending order: a message whose file is not
// found yet holds back the later ones, and UIDNEXT stays at its UID, so
// that the session is never told a UIDNEXT above a message it will be
// shown; once its file shows up (a rename, which needs no inode), both
// come, in order.
func TestNoInodePendingRecordHoldsBackLaterOnes(t *testing.T) {
	t.Parallel()
	st, base := storeOnTmpfs(t, "size=256k,nr_inodes=100,mode=0700")
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	w, view := mb.Watch()
	defer w.Close()
	s := &sessionModel{w: w, view: view, uidNext: mb.Status().UIDNext}
	const x, y = "1700000200.M1P7.other", "1700000201.M1P7.other"
	// The other program's: x on its way (written aside), y in cur/.
	if err := os.WriteFile(filepath.Join(st.Path(), "tmp", x), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	putFile(t, st, y, true)
	appendRecord(t, st, 4, x)
	appendRecord(t, st, 5, y)
	testenv.FillInodes(t, base, 0)
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	s.update(t, "x missing")
	if sum := mb.Status(); sum.Messages != 3 || sum.UIDNext != 4 {
		t.Errorf("x not found: %d messages, UIDNEXT %d; want 3, 4 (y waits for x)", sum.Messages, sum.UIDNext)
	}
	if err := os.Rename(filepath.Join(st.Path(), "tmp", x), filepath.Join(st.Path(), "cur", x+":2,")); err != nil {
		t.Fatal(err)
	}
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	s.update(t, "x found")
	if got := mb.UIDs(); !slices.Equal(got, []uint32{1, 2, 3, 4, 5}) || !slices.Equal(s.view, got) {
		t.Errorf("x found: UIDs %v, the session shows %v; want 1 to 5", got, s.view)
	}
}

// A folder no IMAP server has numbered yet (messages in new/ and cur/, no
// dovecot-uidlist, or one that no longer parses) cannot be opened on a
// full disk: its UIDVALIDITY and UIDs cannot be written, and shown
// without them it would be empty (QA: an empty INBOX under a UIDVALIDITY
// that the next open changed). The open is refused for want of room
// (ErrNoRoomToOpen, and the errno), nothing is written, and every file
// stays where it was; with room again the folder opens with all its
// messages, numbered and saved. An empty folder still opens: empty is
// what it is.
func TestNeverNumberedFolderOnFullDisk(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		list   string // dovecot-uidlist's content; "": none
		inodes bool   // out of inodes (no uidlist lock), not of blocks
		empty  bool
	}{
		{name: "no uidlist"},
		{name: "no uidlist, no inode", inodes: true},
		{name: "uidlist that does not parse", list: "3 V0 garbage\nnot a record\n"},
		{name: "empty folder", empty: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, base := storeOnTmpfs(t, "size=256k,nr_inodes=100,mode=0700")
			var files []string
			if !tc.empty {
				deliverFile(t, st, "", 1)
				deliverFile(t, st, "", 2)
				for i, fl := range []string{"S", "FS"} {
					n := fmt.Sprintf("1600000000.M%dP9.other,S=20:2,%s", i, fl)
					if err := os.WriteFile(filepath.Join(st.Path(), "cur", n), []byte("Subject: old\n\nold\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.list != "" {
				if err := os.WriteFile(filepath.Join(st.Path(), uidlist.FileName), []byte(tc.list), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			files = folderFiles(t, st)
			var free func()
			if tc.inodes {
				free = testenv.FillInodes(t, base, 0)
			} else {
				free = testenv.FillSpace(t, filepath.Join(base, "fill"))
			}
			for range 2 { // and again: nothing of the first try is kept
				mb, err := NewRegistry().Open(st, "INBOX")
				if tc.empty {
					if err != nil {
						t.Fatalf("empty folder on a full disk: %v, want it open", err)
					}
					if s := mb.Status(); s.Messages != 0 {
						t.Errorf("empty folder: %d messages", s.Messages)
					}
					mb.Release()
					continue
				}
				if err == nil {
					s := mb.Status()
					mb.Release()
					t.Fatalf("opened on a full disk with %d messages (UIDVALIDITY %d not saved); want the open refused", s.Messages, s.UIDValidity)
				}
				if !errors.Is(err, ErrNoRoomToOpen) || !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("open on a full disk: %v, want ErrNoRoomToOpen and ENOSPC", err)
				}
			}
			if got := folderFiles(t, st); !slices.Equal(got, files) {
				t.Errorf("files after the refused opens:\n%q\nwant as they were:\n%q", got, files)
			}
			free()
			mb := openBox(t, NewRegistry(), st, "INBOX")
			if tc.empty {
				return
			}
			if s := mb.Status(); s.Messages != 4 || s.UIDNext != 5 {
				t.Errorf("with room again: %d messages, UIDNEXT %d; want 4, 5", s.Messages, s.UIDNext)
			}
			l := readUIDList(t, st, "")
			if len(l) != 5 || !strings.Contains(l[0], fmt.Sprintf(" V%d ", mb.Status().UIDValidity)) {
				t.Errorf("uidlist with room again: %q", l)
			}
		})
	}
}

// folderFiles lists the files of INBOX's new/ and cur/ and its top
// directory (the courriel-* and dovecot-* files but the UIDVALIDITY
// counter), sorted.
func folderFiles(t *testing.T, st *Store) []string {
	t.Helper()
	var out []string
	for _, d := range []string{".", "new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(st.Path(), d))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			// dovecot-uidvalidity is the maildir's counter: advanced
			// by a try, as Dovecot advances it.
			if n := e.Name(); !e.IsDir() && !strings.HasPrefix(n, ".fill") && n != "fill" && !strings.HasPrefix(n, "dovecot-uidvalidity") {
				out = append(out, d+"/"+e.Name())
			}
		}
	}
	slices.Sort(out)
	return out
}

// storeOnTmpfs is a store in a tmpfs of its own mounted with opts, and
// the mount's directory (for testenv.FillSpace, FillInodes).
func storeOnTmpfs(t *testing.T, opts string) (*Store, string) {
	t.Helper()
	base := t.TempDir()
	testenv.MountTmpfs(t, base, opts)
	st, err := OpenStore(filepath.Join(base, "Maildir"), Owner{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, base
}

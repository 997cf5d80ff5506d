package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// curFile returns the path of the one file in folder dir's cur/ whose name
// contains base, failing unless there is exactly one.
func curFile(t *testing.T, st *Store, dir, base string) string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(st.Path(), dir, "cur"))
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), base) {
			out = append(out, filepath.Join(st.Path(), dir, "cur", e.Name()))
		}
	}
	if len(out) != 1 {
		t.Fatalf("%s/cur: %d files for %q", dir, len(out), base)
	}
	return out[0]
}

func curCount(t *testing.T, st *Store, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(st.Path(), dir, "cur"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// copyFixture is an INBOX with three messages, the second flagged \Seen and
// Work (keyword b in INBOX: $Junk took a), and an empty Archive.
func copyFixture(t *testing.T, reg *Registry) (st *Store, inbox, archive *Mailbox) {
	t.Helper()
	st = testStore(t)
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	old := time.Date(2020, 5, 1, 12, 0, 0, 0, time.UTC)
	os.Chtimes(filepath.Join(st.Path(), "new", "1700000000.M2P1.test,S=20"), old, old)
	if err := st.Create("Archive"); err != nil {
		t.Fatal(err)
	}
	inbox = openBox(t, reg, st, "INBOX")
	archive = openBox(t, reg, st, "Archive")
	if _, _, err := inbox.StoreFlags([]uint32{1}, StoreAdd, []string{"$Junk"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := inbox.StoreFlags([]uint32{2}, StoreAdd, []string{Seen, "Work"}, nil); err != nil {
		t.Fatal(err)
	}
	return st, inbox, archive
}

// COPY keeps flags (keywords renamed to the destination's letters) and the
// internal date, and the copy is a hard link where the file system allows.
func TestCopyTo(t *testing.T) {
	t.Parallel()
	for _, links := range []bool{true, false} {
		name := "hard link"
		if !links {
			name = "no hard links"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := NewRegistry()
			reg.noHardLinks = !links
			st, inbox, archive := copyFixture(t, reg)
			w, _ := archive.Watch()
			defer w.Close()
			src, dst, err := inbox.CopyTo(archive, []uint32{2, 3})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(src, []uint32{2, 3}) || !slices.Equal(dst, []uint32{1, 2}) {
				t.Fatalf("COPYUID %v -> %v, want [2 3] -> [1 2]", src, dst)
			}
			m, _ := archive.Get(1)
			if got := archive.FlagNames(m.Flags); !slices.Equal(got, []string{Seen, "Work"}) {
				t.Errorf("copy's flags %q", got)
			}
			copyPath := curFile(t, st, ".Archive", m.Base)
			if !strings.HasSuffix(copyPath, ":2,Sa") {
				t.Errorf("copy's name %s: want Work as the Archive's keyword a", copyPath)
			}
			orig, _ := inbox.Get(2)
			fo, _ := os.Stat(curFile(t, st, "", orig.Base))
			fc, _ := os.Stat(copyPath)
			if os.SameFile(fo, fc) != links {
				t.Errorf("same file = %v, want %v", os.SameFile(fo, fc), links)
			}
			if !fc.ModTime().Equal(time.Date(2020, 5, 1, 12, 0, 0, 0, time.UTC)) {
				t.Errorf("internal date %v not kept", fc.ModTime())
			}
			if _, d, _ := archive.Meta(1); !d.Equal(fo.ModTime()) {
				t.Errorf("Meta date %v, want %v", d, fo.ModTime())
			}
			if b, _ := os.ReadFile(copyPath); string(b) != "Subject: 2\n\nbody 2\n" {
				t.Errorf("copy's content %q", b)
			}
			if l := readUIDList(t, st, ".Archive"); len(l) != 3 || !strings.HasPrefix(l[1], "1 :") || !strings.HasPrefix(l[2], "2 :") {
				t.Errorf("Archive's uidlist %q", l)
			}
			if ch := w.Changes(true); len(ch) != 2 || ch[0].Kind != Added || ch[1].UID != 2 {
				t.Errorf("Archive's watcher saw %+v", ch)
			}
			if inbox.Status().Messages != 3 {
				t.Error("COPY removed a source message")
			}
		})
	}
}

// A COPY of a set one of which is gone since the caller looked copies
// nothing (RFC 9051 §6.4.7: a failed COPY leaves the destination as it
// was; Dovecot rolls back): no file in the destination, none left in its
// tmp/, no UID used. The same for a MOVE to another maildir, which
// copies.
func TestCopyToAllOrNothing(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		gone func(t *testing.T, st *Store, inbox *Mailbox) uint32
	}{
		{"expunged by another session", func(t *testing.T, st *Store, inbox *Mailbox) uint32 {
			if _, err := inbox.Expunge(func(u uint32) bool { return u == 3 }, false); err != nil {
				t.Fatal(err)
			}
			return 3
		}},
		{"removed by another program", func(t *testing.T, st *Store, inbox *Mailbox) uint32 {
			m, _ := inbox.Get(3)
			p := filepath.Join(st.Path(), "new", m.Base)
			if _, err := os.Stat(p); err != nil {
				p = curFile(t, st, "", m.Base)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return 3
		}},
	} {
		for _, links := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/links=%v", c.name, links), func(t *testing.T) {
				t.Parallel()
				reg := NewRegistry()
				reg.noHardLinks = !links
				st, inbox, archive := copyFixture(t, reg)
				c.gone(t, st, inbox)
				src, dst, err := inbox.CopyTo(archive, []uint32{1, 2, 3})
				if err != nil {
					t.Fatal(err)
				}
				if len(src) != 0 || len(dst) != 0 {
					t.Fatalf("COPYUID %v -> %v, want nothing copied", src, dst)
				}
				if n := curCount(t, st, ".Archive"); n != 0 {
					t.Errorf("Archive/cur holds %d files", n)
				}
				if ents, _ := os.ReadDir(filepath.Join(st.Path(), ".Archive", "tmp")); len(ents) != 0 {
					t.Errorf("Archive/tmp holds %d files", len(ents))
				}
				if s := archive.Status(); s.Messages != 0 || s.UIDNext != 1 {
					t.Errorf("Archive: %d messages, UIDNEXT %d", s.Messages, s.UIDNext)
				}
				// What is left copies as before.
				if src, _, err := inbox.CopyTo(archive, []uint32{1, 2}); err != nil || len(src) != 2 {
					t.Fatalf("copy of the rest: %v, %v", src, err)
				}
			})
		}
	}
}

// MOVE within a maildir renames: same inode, gone from the source (for
// every session, through the log), numbered in the destination.
func TestMoveTo(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	st, inbox, archive := copyFixture(t, reg)
	orig, _ := inbox.Get(2)
	before, _ := os.Stat(curFile(t, st, "", orig.Base))
	wi, _ := inbox.Watch()
	defer wi.Close()
	wa, _ := archive.Watch()
	defer wa.Close()
	src, dst, err := inbox.MoveTo(archive, []uint32{2, 3, 42})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src, []uint32{2, 3}) || !slices.Equal(dst, []uint32{1, 2}) {
		t.Fatalf("COPYUID %v -> %v", src, dst)
	}
	if n := curCount(t, st, ""); n != 1 {
		t.Errorf("INBOX/cur has %d files, want 1", n)
	}
	if n := curCount(t, st, ".Archive"); n != 2 {
		t.Errorf("Archive/cur has %d files, want 2", n)
	}
	m, _ := archive.Get(1)
	after, _ := os.Stat(curFile(t, st, ".Archive", m.Base))
	if !os.SameFile(before, after) {
		t.Error("MOVE copied the file instead of renaming it")
	}
	if got := archive.FlagNames(m.Flags); !slices.Equal(got, []string{Seen, "Work"}) {
		t.Errorf("moved flags %q", got)
	}
	if ch := wi.Changes(true); len(ch) != 2 || ch[0].Kind != Expunged || ch[0].UID != 2 || ch[1].UID != 3 {
		t.Errorf("INBOX watcher saw %+v", ch)
	}
	if ch := wa.Changes(true); len(ch) != 2 || ch[0].Kind != Added {
		t.Errorf("Archive watcher saw %+v", ch)
	}
	// A fresh server reads the same from disk.
	reg2 := NewRegistry()
	if s := openBox(t, reg2, st, "INBOX").Status(); s.Messages != 1 {
		t.Errorf("INBOX from disk: %+v", s)
	}
	a2 := openBox(t, reg2, st, "Archive")
	if got := a2.UIDs(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("Archive from disk: UIDs %v", got)
	}
}

// Moves in both directions at once do not deadlock, and every message ends
// up in exactly one folder.
func TestMoveBothWays(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	st, inbox, archive := copyFixture(t, reg)
	if _, _, err := inbox.CopyTo(archive, []uint32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to := inbox, archive
			if i == 1 {
				from, to = archive, inbox
			}
			for range 20 {
				uids := from.UIDs()
				if len(uids) > 1 {
					uids = uids[:1]
				}
				if _, _, err := from.MoveTo(to, uids); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	in, ar := inbox.Status().Messages, archive.Status().Messages
	if in+ar != 6 || curCount(t, st, "")+curCount(t, st, ".Archive") != 6 {
		t.Errorf("after moves: %d + %d messages, %d + %d files", in, ar, curCount(t, st, ""), curCount(t, st, ".Archive"))
	}
}

// MOVE of a file another program renamed (its flags changed) moves it with
// the flags it has now, UIDs paired in the source's order.
func TestMoveRenamedByOtherProgram(t *testing.T) {
	t.Parallel()
	st, inbox, archive := copyFixture(t, NewRegistry())
	m, _ := inbox.Get(1)
	if err := os.Rename(filepath.Join(st.Path(), inbox.pathLocked(&m)), filepath.Join(st.Path(), "cur", m.Base+":2,FSa")); err != nil {
		t.Fatal(err)
	}
	src, dst, err := inbox.MoveTo(archive, []uint32{1, 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src, []uint32{1, 3}) || !slices.Equal(dst, []uint32{1, 2}) {
		t.Fatalf("COPYUID %v -> %v, want [1 3] -> [1 2]", src, dst)
	}
	moved, _ := archive.Get(1)
	if got := archive.FlagNames(moved.Flags); !slices.Equal(got, []string{Flagged, Seen, "$Junk"}) {
		t.Errorf("moved with flags %q", got)
	}
	if n := curCount(t, st, ""); n != 1 {
		t.Errorf("INBOX/cur holds %d files, want 1", n)
	}
}

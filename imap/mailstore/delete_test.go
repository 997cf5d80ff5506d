package mailstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// Delete while others write into the folder: a program with the folder's
// directory open (as a session's Mailbox has it, through an os.Root)
// makes and removes its lock and state files in a loop, and a Mailbox
// syncs and appends. Delete removed the files in place, and failed with
// "directory not empty" when one was made behind its listing, leaving the
// folder half deleted (listed, its messages gone). Now the name goes at
// once, whatever the writers do: the directory is renamed into the trash,
// where their files land, and nothing brings the name back.
func TestDeleteWhileWritersInside(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	reg := NewRegistry()
	dir := filepath.Join(st.Path(), ".Work")
	for round := range 20 {
		if err := st.Create("Work"); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i := range 50 {
			deliverFile(t, st, ".Work", i)
		}
		mb, err := reg.Open(st, "Work")
		if err != nil {
			t.Fatal(err)
		}
		froot, err := st.root.OpenRoot(".Work")
		if err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		var made atomic.Int64
		wg.Go(func() { // another program's files in the folder
			for i := 0; !stop.Load(); i++ {
				for _, name := range []string{"dovecot-uidlist.lock", "courriel-modseq", fmt.Sprintf("tmp/w%d", i)} {
					if froot.WriteFile(name, []byte("x"), 0o600) == nil {
						made.Add(1)
					}
				}
				_ = froot.Remove("dovecot-uidlist.lock")
			}
		})
		wg.Go(func() { // a session's: syncs (its uidlist lock) and appends
			for i := 0; !stop.Load(); i++ {
				_ = mb.Sync(true)
				_, _ = mb.Append(strings.NewReader("Subject: a\n\nb\n"), nil, time.Time{})
			}
		})
		for made.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		if err := st.Delete("Work"); err != nil {
			t.Fatalf("round %d: Delete: %v", round, err)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("round %d: the folder's directory after Delete: %v", round, err)
		}
		if names, _ := st.Folders(); slices.Contains(names, "Work") || st.Exists("Work") {
			t.Fatalf("round %d: Work still listed: %q", round, names)
		}
		// The writers go on meanwhile, in the trash: the name stays
		// free, a CREATE makes a folder of its own.
		if err := st.Create("Work"); err != nil {
			t.Fatalf("round %d: CREATE again: %v", round, err)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "new")); len(ents) != 0 {
			t.Errorf("round %d: the new folder has %d files in new/", round, len(ents))
		}
		stop.Store(true)
		wg.Wait()
		reg.Forget(st.Path(), ".Work", false)
		mb.Release()
		if err := st.RemoveTrash(); err != nil {
			t.Errorf("round %d: RemoveTrash once the writers stopped: %v", round, err)
		}
		// What still has the trashed directory open writes nowhere.
		if err := froot.WriteFile("late", nil, 0o600); err == nil {
			t.Errorf("round %d: a file made in the removed directory", round)
		}
		froot.Close()
		if _, err := os.Lstat(filepath.Join(st.Path(), TrashDir)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("round %d: the trash: %v", round, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 4 { // cur, new, tmp, maildirfolder
			t.Errorf("round %d: the new folder holds %d entries", round, len(ents))
		}
		if err := st.Delete("Work"); err != nil {
			t.Fatal(err)
		}
	}
}

// A folder detached by Registry.Forget (DELETE once its name is gone)
// writes nothing more into its directory: a sync, an append, a flag
// change or an expunge makes no file there, so that its removal
// (RemoveTrash) cannot be stopped by one.
func TestDetachedFolderWritesNothing(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	reg := NewRegistry()
	if err := st.Create("Work"); err != nil {
		t.Fatal(err)
	}
	deliverFile(t, st, ".Work", 1)
	mb := openBox(t, reg, st, "Work")
	if err := st.Trash("Work"); err != nil {
		t.Fatal(err)
	}
	reg.Forget(st.Path(), ".Work", false)
	trashed := filepath.Join(st.Path(), TrashDir)
	before := treeOf(t, trashed)
	deliverFile(t, st, TrashDir, 2)
	before = append(before, "new/1700000000.M2P1.test,S=20")
	slices.Sort(before)
	if err := mb.Sync(true); err != nil {
		t.Errorf("Sync: %v", err)
	}
	if _, err := mb.Append(strings.NewReader("Subject: a\n\nb\n"), nil, time.Time{}); !errors.Is(err, ErrNoFolder) {
		t.Errorf("Append: %v, want ErrNoFolder", err)
	}
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{`\Seen`, "kw"}, nil); !errors.Is(err, ErrNoFolder) {
		t.Errorf("StoreFlags: %v, want ErrNoFolder", err)
	}
	if after := treeOf(t, trashed); !slices.Equal(after, before) {
		t.Errorf("the trashed folder changed: %q, was %q", after, before)
	}
	if err := st.RemoveTrash(); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Open(st, "Work"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("Open after Delete: %v", err)
	}
}

// treeOf lists the files under dir, relative, sorted (directories
// apart).
func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// A deletion cut short (a crash between the rename into the trash and
// the removal, or files a writer made that RemoveTrash could not catch
// up with) leaves the trash: never listed as a folder, it goes at the
// next deletion, or at a listing once left alone for a while, as Dovecot
// removes its own. A deletion while the trash is there goes inside it.
func TestTrashLeftoversRemovedLater(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	trash := filepath.Join(st.Path(), TrashDir)
	for _, n := range []string{"A", "B", "C", "A.Child"} {
		if err := st.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	deliverFile(t, st, ".A", 1)
	// Crash after the rename: the trash holds A.
	if err := st.Trash("A"); err != nil {
		t.Fatal(err)
	}
	if names, _ := st.Folders(); !slices.Equal(names, []string{"A.Child", "B", "C"}) {
		t.Errorf("Folders with the trash: %q", names)
	}
	if _, err := os.Stat(filepath.Join(trash, "new")); err != nil {
		t.Fatalf("the trash after a Trash alone: %v", err)
	}
	// Another deletion meanwhile goes into it, under a name of its own;
	// crashed too.
	if err := st.Trash("B"); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(trash)
	var inside []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != "cur" && e.Name() != "new" && e.Name() != "tmp" {
			inside = append(inside, e.Name())
		}
	}
	if len(inside) != 1 || !strings.Contains(inside[0], fmt.Sprintf(".%d.", os.Getpid())) {
		t.Errorf("B in the trash as %q", inside)
	}
	if st.Exists("A") || st.Exists("B") || !st.Exists("A.Child") {
		t.Errorf("Exists A %v B %v A.Child %v", st.Exists("A"), st.Exists("B"), st.Exists("A.Child"))
	}
	// A listing leaves a trash just touched to its own removal...
	if _, err := st.Folders(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(trash); err != nil {
		t.Errorf("a listing removed a trash just made: %v", err)
	}
	// ... and removes one left alone.
	st.trashAge = time.Nanosecond
	if _, err := st.Folders(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(trash); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a listing left the trash: %v", err)
	}
	st.trashAge = 0
	// The next deletion removes what an earlier one left.
	if err := st.Trash("C"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trash, "left"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.Create("D"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete("D"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(trash); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a deletion left the trash: %v", err)
	}
	if names, _ := st.Folders(); !slices.Equal(names, []string{"A.Child"}) {
		t.Errorf("Folders at the end: %q", names)
	}
	if err := st.Delete("A"); !errors.Is(err, ErrNoFolder) {
		t.Errorf("Delete of a deleted folder: %v", err)
	}
	// No folder name reaches the trash.
	if _, ok := FolderName(TrashDir); ok {
		t.Error("FolderName takes the trash for a folder")
	}
	for _, n := range []string{".DOVECOT-TRASHED", "..DOVECOT-TRASHED", "&AC4-DOVECOT-TRASHED"} {
		if dir, err := FolderDir(n); err == nil && dir == TrashDir {
			t.Errorf("FolderDir(%q) is the trash", n)
		}
	}
}

// DELETE detaches the deleted folder's Mailbox, not its children's:
// Maildir++ children are folders of their own, and stay.
func TestForgetDeletedLeavesChildren(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	reg := NewRegistry()
	for _, n := range []string{"A", "A.B"} {
		if err := st.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	openBox(t, reg, st, "A")
	child := openBox(t, reg, st, "A.B")
	if err := st.Delete("A"); err != nil {
		t.Fatal(err)
	}
	reg.Forget(st.Path(), ".A", false)
	if reg.Lookup(st.Path(), ".A") != nil {
		t.Error("the deleted folder is still registered")
	}
	if reg.Lookup(st.Path(), ".A.B") != child {
		t.Error("the child was detached")
	}
	if _, err := child.Append(strings.NewReader("Subject: a\n\nb\n"), nil, time.Time{}); err != nil {
		t.Errorf("append to the child: %v", err)
	}
}

// The trash is Dovecot's own: Dovecot 2.3 does not list it, and its
// DELETE while our deletion's leftover is there puts its folder inside it
// and removes the lot, as ours does with a trash Dovecot left.
func TestDovecotSharesTrash(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	st := testStore(t)
	for _, n := range []string{"Ours", "Theirs", "Kept"} {
		if err := st.Create(n); err != nil {
			t.Fatal(err)
		}
	}
	deliverFile(t, st, ".Ours", 1)
	if err := st.Trash("Ours"); err != nil { // a deletion cut short
		t.Fatal(err)
	}
	out := testenv.RunDovecot(t, st.Path(), "", "a LIST \"\" \"*\"\r\nb DELETE Theirs\r\nc LIST \"\" \"*\"\r\nd LOGOUT\r\n")
	if strings.Contains(out, "TRASHED") || strings.Contains(out, "Ours") {
		t.Errorf("Dovecot lists the trash:\n%s", out)
	}
	if !strings.Contains(out, "b OK") || !strings.Contains(out, `"." Kept`) {
		t.Errorf("Dovecot's DELETE or LIST:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(st.Path(), TrashDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the trash after Dovecot's DELETE: %v", err)
	}
	if names, _ := st.Folders(); !slices.Equal(names, []string{"Kept"}) {
		t.Errorf("Folders after Dovecot's DELETE: %q", names)
	}
}

package mailstore

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// keepRegistry is a registry that keeps every released folder (however
// small) and sees stamps settled at once (its clock runs ahead), so that
// the release of a folder keeps it without waiting.
func keepRegistry() *Registry {
	clock := &skewClock{}
	clock.skew.Store(int64(10 * time.Second))
	reg := stateRegistry(clock, 0)
	reg.lingerMin = 1
	return reg
}

// keptFolder gives a fresh folder some history through reg and returns
// once its release kept it, past a tick of the kernel's clock (a change
// made now gives the directories another mtime).
func keptFolder(t *testing.T, reg *Registry, st *Store) *Mailbox {
	t.Helper()
	useFolder(t, reg, st)
	viewOf(t, reg, st) // the session after the changes: lists them once, settled
	reg.mu.Lock()
	mb := reg.boxes[regKey{st.Path(), ""}]
	kept := mb != nil && mb.kept
	reg.mu.Unlock()
	if !kept {
		t.Fatal("folder not kept after its release")
	}
	time.Sleep(30 * time.Millisecond)
	return mb
}

func keptCount(reg *Registry) (n int, bytes int64) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return len(reg.kept), reg.keptBytes
}

// A large folder stays loaded after its last session: the next open
// shares it as it is, with no listing and no file read, and what it
// shows is what a load from the files shows.
func TestKeptFolderReused(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	reg := keepRegistry()
	kept := keptFolder(t, reg, st)
	if reg.Lookup(st.Path(), "") != nil {
		t.Error("Lookup gives a folder nobody has open")
	}
	kept.mu.Lock()
	listings, reads := kept.listings, kept.fileReads
	kept.mu.Unlock()
	mb := openBox(t, reg, st, "INBOX")
	if mb != kept {
		t.Fatal("the kept folder was loaded again, want it shared")
	}
	mb.mu.Lock()
	if mb.listings != listings || mb.fileReads != reads {
		t.Errorf("reopening the kept folder listed %d directories, read %d files; want none", mb.listings-listings, mb.fileReads-reads)
	}
	mb.mu.Unlock()
	if n, _ := keptCount(reg); n != 0 {
		t.Errorf("%d folders kept while it is open, want 0", n)
	}
	got, _ := viewOf(t, reg, st)
	if want := fullView(t, st); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kept folder:\n%+v\nwant (full way):\n%+v", got, want)
	}
}

// A kept folder that anything outside changed meanwhile is seen as a
// fresh load sees it: every change is in the next session's view.
func TestKeptFolderSeesOutsideChanges(t *testing.T) {
	t.Parallel()
	curFile := func(t *testing.T, st *Store, suffix string) string {
		t.Helper()
		ents, err := os.ReadDir(filepath.Join(st.Path(), "cur"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), suffix) {
				return filepath.Join(st.Path(), "cur", e.Name())
			}
		}
		t.Fatalf("no file in cur/ ends in %q", suffix)
		return ""
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, st *Store) *Store // the store the next session opens
	}{
		{"delivery into new/", func(t *testing.T, st *Store) *Store {
			deliverFile(t, st, "", 7)
			return st
		}},
		{"flag set by another program", func(t *testing.T, st *Store) *Store {
			p := curFile(t, st, ":2,")
			if err := os.Rename(p, p+"F"); err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"message removed by another program", func(t *testing.T, st *Store) *Store {
			if err := os.Remove(curFile(t, st, ":2,")); err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"uidlist renumbered by another program", func(t *testing.T, st *Store) *Store {
			p := filepath.Join(st.Path(), "dovecot-uidlist")
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			first, rest, _ := strings.Cut(string(data), "\n")
			f := strings.Fields(first)
			f[1] = "V1234"
			if err := os.WriteFile(p+".new", []byte(strings.Join(f, " ")+"\n"+rest), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"courriel-modseq lost", func(t *testing.T, st *Store) *Store {
			if err := os.Remove(filepath.Join(st.Path(), ModSeqFileName)); err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"home replaced by a copy (moved away and back)", func(t *testing.T, st *Store) *Store {
			p := st.Path()
			if out, err := exec.Command("cp", "-a", p, p+".copy").CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			ents, err := os.ReadDir(filepath.Join(p+".copy", "cur"))
			if err != nil || len(ents) == 0 {
				t.Fatal("copy has no cur/ files", err)
			}
			if err := os.Remove(filepath.Join(p+".copy", "cur", ents[0].Name())); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p, p+".gone"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".copy", p); err != nil {
				t.Fatal(err)
			}
			st2, err := OpenStore(p, Owner{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st2.Close() })
			return st2
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := testStore(t)
			reg := keepRegistry()
			keptFolder(t, reg, st)
			before, _ := viewOf(t, NewRegistry(), st)
			time.Sleep(30 * time.Millisecond) // that open settled nothing new
			st = tc.change(t, st)
			// As opened, before any look at the directories: what
			// a load from the files gives.
			got, _, _ := viewSynced(t, reg, st, false)
			want := fullView(t, st)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("kept folder after the change:\n%+v\nwant (full way):\n%+v", got, want)
			}
			if fmt.Sprint(want) == fmt.Sprint(before) {
				t.Errorf("the change changed nothing a session sees: %+v", want)
			}
		})
	}
}

// Kept folders hold at most the memory budget: keeping one more closes
// the oldest, and one larger than the budget is not kept. Each is closed
// after the keeping time.
func TestKeptFolderBudget(t *testing.T) {
	t.Parallel()
	reg := keepRegistry()
	a, b := testStore(t), testStore(t)
	mbA := keptFolder(t, reg, a)
	_, sizeA := keptCount(reg)
	if sizeA <= 0 {
		t.Fatalf("kept folder's size %d, want > 0", sizeA)
	}
	reg.mu.Lock()
	reg.keepBudget = sizeA + sizeA/2 // one folder, not two
	reg.mu.Unlock()
	keptFolder(t, reg, b)
	if n, bytes := keptCount(reg); n != 1 || bytes > sizeA+sizeA/2 {
		t.Errorf("%d folders kept in %d bytes, want 1 within %d", n, bytes, sizeA+sizeA/2)
	}
	mbA.mu.Lock()
	closed := mbA.closed
	mbA.mu.Unlock()
	if !closed {
		t.Error("the oldest kept folder is still open beyond the budget")
	}
	if mb := openBox(t, reg, a, "INBOX"); mb == mbA {
		t.Error("the evicted folder was shared again")
	}

	small := keepRegistry()
	small.keepBudget = 1
	useFolder(t, small, testStore(t))
	if n, _ := keptCount(small); n != 0 {
		t.Errorf("%d folders kept over a budget of 1 byte, want 0", n)
	}

	brief := keepRegistry()
	brief.keepFor = 50 * time.Millisecond
	c := testStore(t)
	useFolder(t, brief, c)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		brief.mu.Lock()
		n := len(brief.boxes)
		brief.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("kept folder still loaded 10 s after a keeping time of 50 ms")
		}
	}
}

// DropUser (a move of the user's home) and Forget (the folder deleted)
// close a kept folder at once, and only that user's.
func TestKeptFolderDropped(t *testing.T) {
	t.Parallel()
	reg := keepRegistry()
	alice, bob := testStore(t), testStore(t)
	alice.SetUser("alice")
	bob.SetUser("bob")
	mbA := keptFolder(t, reg, alice)
	mbB := keptFolder(t, reg, bob)
	reg.DropUser("alice")
	isClosed := func(mb *Mailbox) bool {
		mb.mu.Lock()
		defer mb.mu.Unlock()
		return mb.closed
	}
	if !isClosed(mbA) {
		t.Error("alice's kept folder is open after DropUser(alice)")
	}
	if isClosed(mbB) {
		t.Error("bob's kept folder was closed by DropUser(alice)")
	}
	if n, _ := keptCount(reg); n != 1 {
		t.Errorf("%d folders kept, want bob's", n)
	}
	reg.Forget(bob.Path(), "", true)
	if !isClosed(mbB) {
		t.Error("bob's kept folder is open after Forget")
	}
	if n, bytes := keptCount(reg); n != 0 || bytes != 0 {
		t.Errorf("%d folders of %d bytes kept, want none", n, bytes)
	}
}

// A kept folder keeps its metadata cache when the budget has room for it
// beside the folders already kept: the next session reads ENVELOPE from
// memory, even with courriel-index gone. Without that room, the cache goes
// and the folder kept before stays.
func TestKeptFolderKeepsItsCache(t *testing.T) {
	t.Parallel()
	// A subject that makes the cache the bulk of a folder's memory.
	long := "kept in memory " + strings.Repeat("x", 16<<10)
	subject := func(mb *Mailbox) string {
		if e := mb.Cached(1).Envelope; e != nil {
			return e.Subject
		}
		return ""
	}
	// keptWithCache keeps st's INBOX in reg with an envelope cached for
	// UID 1, then removes courriel-index: only memory has the envelope.
	keptWithCache := func(t *testing.T, reg *Registry, st *Store) *Mailbox {
		t.Helper()
		kept := keptFolder(t, reg, st)
		mb, err := reg.Open(st, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if mb != kept {
			t.Fatal("the kept folder was loaded again, want it shared")
		}
		mb.UpdateCached(1, Cached{Size: 20, Envelope: &Envelope{Subject: long}})
		mb.Release() // writes courriel-index, kept again
		if n, _ := keptCount(reg); n == 0 {
			t.Fatal("folder not kept after its release")
		}
		if err := os.Remove(filepath.Join(st.Path(), IndexFileName)); err != nil {
			t.Fatal(err)
		}
		return kept
	}

	reg := keepRegistry()
	a := testStore(t)
	keptA := keptWithCache(t, reg, a)
	if mb := openBox(t, reg, a, "INBOX"); mb != keptA {
		t.Fatal("the kept folder was loaded again, want it shared")
	} else if got := subject(mb); got != long {
		t.Errorf("kept folder's cached subject %.20q, want it kept in memory", got)
	}

	// Room for a second folder, not for its cache beside the first.
	tight := keepRegistry()
	b, c := testStore(t), testStore(t)
	keptB := keptWithCache(t, tight, b)
	_, sizeB := keptCount(tight)
	tight.mu.Lock()
	tight.keepBudget = sizeB + sizeB/2
	tight.mu.Unlock()
	keptC := keptWithCache(t, tight, c)
	if n, bytes := keptCount(tight); n != 2 || bytes > sizeB+sizeB/2 {
		t.Errorf("%d folders kept in %d bytes, want both within %d", n, bytes, sizeB+sizeB/2)
	}
	if mb := openBox(t, tight, c, "INBOX"); mb != keptC {
		t.Fatal("the second kept folder was loaded again, want it shared")
	} else if got := subject(mb); got != "" {
		t.Errorf("cache kept over the budget: subject %.20q", got)
	}
	if mb := openBox(t, tight, b, "INBOX"); mb != keptB {
		t.Fatal("the first kept folder was evicted for the second's cache")
	} else if got := subject(mb); got != long {
		t.Errorf("first kept folder's cached subject %.20q, want it kept", got)
	}
}

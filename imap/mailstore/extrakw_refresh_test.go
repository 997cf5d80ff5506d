package mailstore

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"courriel/imap/uidlist"
)

// openWriter opens INBOX of the folder at path in a Store and Registry
// of its own, as another courriel process has it.
func openWriter(t *testing.T, path string) *Mailbox {
	t.Helper()
	return openWriterIn(t, path, NewRegistry())
}

// openWriterIn is openWriter with the process's registry reg.
func openWriterIn(t *testing.T, path string, reg *Registry) *Mailbox {
	t.Helper()
	st, err := OpenStore(path, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return openBox(t, reg, st, "INBOX")
}

// flagChangeOf reports whether w was woken and has a flag change of uid
// made by another process (no session's), reading its changes.
func flagChangeOf(w *Watcher, uid uint32) bool {
	select {
	case <-w.C:
	default:
		return false
	}
	return slices.ContainsFunc(w.Changes(true), func(c Change) bool {
		return c.Kind == FlagsChanged && c.UID == uid && c.Source == nil
	})
}

// extraFileStat is courriel-keywords' information (nil: no file).
func extraFileStat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(filepath.Join(path, ExtraKeywordsFileName))
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestExtraKeywordsSeenAtSync: a store that has the folder open and
// writes nothing (its sessions in NOOP or IDLE) sees the keywords beyond
// the letters another store gives or takes at its next sync, as flag
// changes its sessions are told of, and writes nothing for them. It saw
// them only when it next wrote courriel-keywords itself, or opened the
// folder again.
func TestExtraKeywordsSeenAtSync(t *testing.T) {
	t.Parallel()
	path := writersFolder(t)
	a, b := openWriter(t, path), openWriter(t, path)
	w, _ := b.Watch()
	defer w.Close()
	if err := b.Sync(false); err != nil {
		t.Fatal(err)
	}
	w.Changes(true)

	if _, _, err := a.StoreFlags([]uint32{2}, StoreAdd, []string{"fromA"}, nil); err != nil {
		t.Fatal(err)
	}
	written := extraFileStat(t, path)
	if err := b.Sync(false); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "after the other's STORE +fromA and a sync", b, 2, "fromA")
	if !flagChangeOf(w, 2) {
		t.Errorf("the other store's keyword is no flag change for the sessions")
	}
	if fi := extraFileStat(t, path); fi == nil || !os.SameFile(fi, written) || !fi.ModTime().Equal(written.ModTime()) {
		t.Errorf("%s written by the store that only read it", ExtraKeywordsFileName)
	}
	if !defines(b, "fromA") {
		t.Errorf("FLAGS/PERMANENTFLAGS lack the other's keyword: %q", b.extraOrder)
	}

	// Nothing changed: nothing read, no change logged.
	if err := b.Sync(false); err != nil {
		t.Fatal(err)
	}
	if c := w.Changes(true); len(c) > 0 {
		t.Errorf("a sync with %s unchanged logged %v", ExtraKeywordsFileName, c)
	}

	if _, _, err := a.StoreFlags([]uint32{2}, StoreRemove, []string{"FROMA"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(false); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "after the other's STORE -fromA and a sync", b, 2)
	if !flagChangeOf(w, 2) {
		t.Errorf("the other store's removal is no flag change for the sessions")
	}
	if extraFileStat(t, path) != nil {
		t.Errorf("%s written again by the store that only read it", ExtraKeywordsFileName)
	}
}

// TestExtraKeywordsSyncKeepsUnsaved: the store that reads the other's
// change at a sync has one of its own to the same message not written
// yet, nor written by the sync (the file's dotlock is held, by a third
// writer in the middle of its write): both are kept, and its write, once
// it can, neither brings back a keyword the other took away meanwhile
// nor loses its own.
func TestExtraKeywordsSyncKeepsUnsaved(t *testing.T) {
	t.Parallel()
	path := writersFolder(t)
	a := openWriter(t, path)
	reg := NewRegistry()
	reg.extraLockWait = 10 * time.Millisecond
	b := openWriterIn(t, path, reg)
	w, _ := b.Watch()
	defer w.Close()

	if _, _, err := a.StoreFlags([]uint32{1}, StoreAdd, []string{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	lk, err := uidlist.Acquire(b.root, ExtraKeywordsFileName, 0, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	base := b.findLocked(1).Base
	b.setExtraLocked(base, append(slices.Clone(b.extraOfLocked(base)), "y"))
	b.mu.Unlock()

	if err := b.Sync(false); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "the other's +x and this one's unwritten +y", b, 1, "x", "y")
	if !flagChangeOf(w, 1) {
		t.Errorf("the other store's keyword is no flag change for the sessions")
	}
	if err := a.Sync(false); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "the other, before this one could write", a, 1, "x")

	// The other takes x away; this one's next sync writes y, not x.
	lk.Release()
	if _, _, err := a.StoreFlags([]uint32{1}, StoreRemove, []string{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(false); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "after the other's -x and a sync", b, 1, "y")
	if err := a.Sync(false); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "the other, after a sync", a, 1, "y")
	wantNames(t, "opened again", openWriter(t, path), 1, "y")
}

// TestExtraKeywordsStoreUndoneKeepsTheirs: a STORE whose write of
// courriel-keywords fails after it read the other store's keywords there
// is undone for its own change only: the other's keyword stays, in
// memory and at the next write, even one this STORE gave too (the
// STORE's undoing put back what the message had before the read, which
// the next write took for a removal).
func TestExtraKeywordsStoreUndoneKeepsTheirs(t *testing.T) {
	t.Parallel()
	path := writersFolder(t)
	a, b := openWriter(t, path), openWriter(t, path)
	if _, _, err := a.StoreFlags([]uint32{1}, StoreAdd, []string{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(path, ExtraKeywordsFileName+".tmp")
	if err := os.MkdirAll(filepath.Join(blocker, "full"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.StoreFlags([]uint32{1}, StoreAdd, []string{"y", "x"}, nil); err == nil {
		t.Fatal("STORE +y +x written through a directory")
	}
	wantNames(t, "the STORE undone", b, 1, "x")
	if err := os.RemoveAll(blocker); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.StoreFlags([]uint32{2}, StoreAdd, []string{"z"}, nil); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "the next write", openWriter(t, path), 1, "x")
	wantNames(t, "the next write", openWriter(t, path), 2, "z")
}

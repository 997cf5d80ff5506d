package mailstore

import (
	"os"
	"path/filepath"
	"testing"
)

// openWriter opens INBOX of the folder at path in a Store and Registry
// of its own, as another courriel process has it.
func openWriter(t *testing.T, path string) *Mailbox {
	t.Helper()
	st, err := OpenStore(path, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return openBox(t, NewRegistry(), st, "INBOX")
}

// TestExtraKeywordsStoreUndoneKeepsTheirs: a STORE whose write of
// courriel-keywords fails after it read the other store's keywords there
// is undone for its own change only: the other's keyword stays, in
// memory and at the next write (the STORE's undoing put back what the
// message had before the read, which the next write took for a removal).
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
	if _, _, err := b.StoreFlags([]uint32{1}, StoreAdd, []string{"y"}, nil); err == nil {
		t.Fatal("STORE +y written through a directory")
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

package delivery

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestFolder: a copy for a Maildir++ folder lands in that folder's new/
// (created on first use, INBOX untouched) and OnDelivered names the folder;
// a folder name that could leave the maildir is refused as a bad maildir
// (temporary, like every directory mistake) and nothing is written.
func TestFolder(t *testing.T) {
	base := t.TempDir()
	var rec recorder
	s := newStore(t, Options{AllowedBase: base, OnDelivered: rec.notify})
	md := filepath.Join(base, "u", "mailbox") + "/"
	deliverOK(t, s, testMessage("j1"), Recipient{Address: "u@example.org", Maildir: md, Folder: ".Junk"})
	onlyNew(t, filepath.Join(md, ".Junk"))
	treeEmpty(t, filepath.Join(md, "new"))
	if len(rec.get()) != 1 || len(rec.missing) != 0 {
		t.Errorf("OnDelivered: %v, missing %v", rec.get(), rec.missing)
	}
	for _, f := range []string{"Junk", "..", ".Junk/../..", "./x", "..Junk", ".a b", "."} {
		errs := s.Deliver(context.Background(), testMessage("bad"), []Recipient{{Address: "u@example.org", Maildir: md, Folder: f}})
		if !errors.Is(errs[0], ErrBadMaildir) {
			t.Errorf("folder %q: %v, want ErrBadMaildir", f, errs[0])
		}
	}
	treeEmpty(t, filepath.Join(md, "new"))
	if got := files(t, md); len(got) != 1 || got[0] != ".Junk" {
		t.Errorf("maildir holds %v", got)
	}
}

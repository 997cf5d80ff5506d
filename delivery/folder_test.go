package delivery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A copy with a Folder goes to the Maildir++ folder (created with its
// maildirfolder marker), not the INBOX, and OnDelivered names that folder's
// new file (IMAP takes it in there).
func TestDeliverToFolder(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	var rec recorder
	var created []Recipient // OnFolderCreated runs under Deliver, one copy here at a time
	s := newStore(t, Options{AllowedBase: base, OnDelivered: rec.notify,
		OnFolderCreated: func(r Recipient) { created = append(created, r) }})
	inbox := base + "/a/mailbox/"
	deliverOK(t, s, testMessage("J1"), Recipient{Address: "a@x.y", Maildir: inbox, Folder: "Junk"})
	onlyNew(t, filepath.Join(inbox, ".Junk"))
	treeEmpty(t, filepath.Join(inbox, "new"))
	if _, err := os.Stat(filepath.Join(inbox, ".Junk", "maildirfolder")); err != nil {
		t.Errorf("no maildirfolder marker: %v", err)
	}
	for _, sub := range []string{"cur", "tmp"} {
		if fi, err := os.Stat(filepath.Join(inbox, ".Junk", sub)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", sub, err)
		}
	}
	if calls := rec.get(); len(calls) != 1 || calls[0] != inbox || len(rec.missing) != 0 {
		t.Errorf("OnDelivered calls %v (files not found: %v), want one for %s's .Junk", calls, rec.missing, inbox)
	}
	if len(created) != 1 || created[0].Folder != "Junk" || created[0].Maildir != inbox {
		t.Errorf("OnFolderCreated calls %+v, want one for Junk", created)
	}
	// The INBOX and the folder side by side, in one Deliver.
	deliverOK(t, s, testMessage("J2"), Recipient{Address: "a@x.y", Maildir: inbox},
		Recipient{Address: "a@x.y", Maildir: inbox, Folder: "Junk"})
	if n, m := len(files(t, inbox+"new")), len(files(t, inbox+".Junk/new")); n != 1 || m != 2 {
		t.Errorf("INBOX %d, Junk %d messages; want 1 and 2", n, m)
	}
	if len(created) != 1 {
		t.Errorf("OnFolderCreated called again for an existing folder: %+v", created)
	}
}

func TestDeliverToFolderRefusesPaths(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	inbox := base + "/a/mailbox/"
	for _, folder := range []string{"../b", "Junk/x", ".Junk", "a..b", "a.", "Junk\x00", " Junk", "a. b", "J\nunk", "Ünk", `a\b`, "a*", "%", strings.Repeat("x", 251)} {
		errs := s.Deliver(context.Background(), testMessage("J3"), []Recipient{{Address: "a@x.y", Maildir: inbox, Folder: folder}})
		if errs[0] == nil {
			t.Errorf("folder %q accepted", folder)
		}
	}
	treeEmpty(t, base)
}

// A hierarchy (Maildir++ "Work.2026"), a folder that must exist
// (NoCreate: ErrNoFolder, nothing created) and flags (cur/ with the info
// letters, keywords through KeywordLetters) as Sieve delivery uses them.
func TestDeliverFolderHierarchyFlags(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	var kwCalls [][]string
	s := newStore(t, Options{AllowedBase: base, KeywordLetters: func(dir *os.Root, kws []string, uid, gid int) (string, error) {
		kwCalls = append(kwCalls, kws)
		return "b", nil
	}})
	inbox := base + "/a/mailbox/"
	errs := s.Deliver(context.Background(), testMessage("H1"), []Recipient{{Address: "a@x.y", Maildir: inbox, Folder: "Missing", NoCreate: true}})
	if !errors.Is(errs[0], ErrNoFolder) {
		t.Fatalf("NoCreate into a missing folder: %v, want ErrNoFolder", errs[0])
	}
	if _, err := os.Stat(inbox + ".Missing"); !os.IsNotExist(err) {
		t.Errorf("NoCreate created the folder: %v", err)
	}
	deliverOK(t, s, testMessage("H2"), Recipient{Address: "a@x.y", Maildir: inbox, Folder: "Work.2026",
		Flags: []string{`\Seen`, `\Flagged`, "$Label1", `\Recent`}})
	cur := files(t, inbox+".Work.2026/cur")
	if len(cur) != 1 || !strings.HasSuffix(cur[0], ":2,FSb") || len(files(t, inbox+".Work.2026/new")) != 0 {
		t.Errorf("cur/ %v, want one file ending :2,FSb and new/ empty", cur)
	}
	if _, err := os.Stat(inbox + ".Work.2026/maildirfolder"); err != nil {
		t.Errorf("maildirfolder marker: %v", err)
	}
	if len(kwCalls) != 1 || len(kwCalls[0]) != 1 || kwCalls[0][0] != "$Label1" {
		t.Errorf("KeywordLetters calls %v, want one for $Label1", kwCalls)
	}
	// Now it exists: NoCreate delivers.
	deliverOK(t, s, testMessage("H3"), Recipient{Address: "a@x.y", Maildir: inbox, Folder: "Work.2026", NoCreate: true})
	if n := len(files(t, inbox+".Work.2026/new")); n != 1 {
		t.Errorf("new/ holds %d, want 1", n)
	}
}

package imap

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
)

func TestFolderCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.login(nil)
	for _, n := range []string{"Archive", "Archive.2024", "Entwürfe"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatalf("create %s: %v", n, err)
		}
	}
	for _, d := range []string{".Archive", ".Archive.2024", ".Entw&APw-rfe"} {
		if _, err := os.Stat(filepath.Join(e.maildir, d, "cur")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	if err := c.Create("Archive", nil).Wait(); imapCode(err) != goimap.ResponseCodeAlreadyExists {
		t.Errorf("create twice: %v", err)
	}
	list, err := c.List("", "Archive%", nil).Collect()
	if err != nil || len(list) != 1 || !slices.Contains(list[0].Attrs, goimap.MailboxAttrHasChildren) {
		t.Errorf("LIST Archive%% = %+v, %v", list, err)
	}
	if err := c.Rename("Archive", "Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.maildir, ".Old.2024")); err != nil {
		t.Errorf("child not renamed: %v", err)
	}
	if err := c.Subscribe("Old.2024").Wait(); err != nil {
		t.Fatal(err)
	}
	lsub, err := c.List("", "Old*", &goimap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil || len(lsub) != 1 || lsub[0].Mailbox != "Old.2024" {
		t.Errorf("LIST (SUBSCRIBED) = %+v, %v", lsub, err)
	}
	if err := c.Unsubscribe("Old.2024").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Old.2024").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Old.2024").Wait(); imapCode(err) != goimap.ResponseCodeNonExistent {
		t.Errorf("delete missing: %v", err)
	}
	if _, err := c.Select("Nope", nil).Wait(); imapCode(err) != goimap.ResponseCodeNonExistent {
		t.Errorf("select missing: %v", err)
	}
	// LIST-STATUS.
	ls, err := c.List("", "INBOX", &goimap.ListOptions{ReturnStatus: &goimap.StatusOptions{NumMessages: true, UIDValidity: true}}).Collect()
	if err != nil || len(ls) != 1 || ls[0].Status == nil || *ls[0].Status.NumMessages != 0 {
		t.Errorf("LIST RETURN (STATUS) = %+v, %v", ls, err)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '.' {
		t.Errorf("NAMESPACE = %+v, %v", ns, err)
	}
}

func TestHostileFolderNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := filepath.Join(e.base, "outside")
	os.MkdirAll(filepath.Join(outside, "cur"), 0o700)
	// A symlink planted in the maildir must not lead out of it.
	os.Symlink(outside, filepath.Join(e.maildir, ".Escape"))
	c := e.login(nil)
	for _, name := range []string{"..", "a..b", ".hidden", "trailing..", "a/b", "../../etc", "bad\x01name", "*", "x%y", string(make([]byte, 300))} {
		if err := c.Create(name, nil).Wait(); err == nil {
			t.Errorf("CREATE %q accepted", name)
		}
	}
	if _, err := c.Select("Escape", nil).Wait(); err == nil {
		t.Error("SELECT through a symlink leading outside the maildir succeeded")
	}
	ents, _ := os.ReadDir(e.base)
	for _, en := range ents {
		if en.Name() != "alice" && en.Name() != "bob" && en.Name() != "outside" {
			t.Errorf("something created outside the maildir: %s", en.Name())
		}
	}
	// Another user's mail is not reachable by name.
	bob := filepath.Join(e.base, "bob", "mailbox")
	writeMaildirMsg(t, bob, "new", "1700000000.M1P1.bob", "Subject: private\n\nbob's\n")
	if _, err := c.Select("../../bob/mailbox", nil).Wait(); err == nil {
		t.Error("selected another user's maildir")
	}
}

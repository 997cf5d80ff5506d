package integration

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"courriel/internal/testenv"
)

// The binary, real slapd and go-imap's client: login by LDAP bind, the
// special folders, a delivery by SMTP pushed to an IDLE client at once, and
// the everyday commands on that message.
func TestIMAPClientEndToEnd(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	newExists := make(chan uint32, 16)
	c, err := imapclient.DialTLS(s.IMAPS, &imapclient.Options{
		TLSConfig: &tls.Config{ServerName: "localhost", RootCAs: s.ca.Pool()},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					newExists <- *d.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.org", "wrong").Wait(); err == nil {
		t.Fatal("a wrong password logged in")
	}
	if err := c.Login("alice@example.org", testenv.AlicePassword).Wait(); err != nil {
		t.Fatal(err)
	}
	lists, err := c.List("", "*", &goimap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range lists {
		names = append(names, l.Mailbox)
	}
	for _, want := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk"} {
		if !strings.Contains(strings.Join(names, ","), want) {
			t.Errorf("LIST lacks %s: %v", want, names)
		}
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 0 {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}

	// IDLE, then deliver over SMTP: the client hears EXISTS.
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if out := swaksTo(t, s, "contact@example.org"); !accepted(out) {
		t.Fatalf("swaks:\n%s", out)
	}
	select {
	case n := <-newExists:
		if n != 1 {
			t.Errorf("EXISTS %d, want 1", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("IDLE was not told about the delivery")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	msgs, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, BodyStructure: &goimap.FetchItemBodyStructure{},
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v %d", err, len(msgs))
	}
	m := msgs[0]
	var body []byte
	for _, b := range m.BodySection {
		body = b.Bytes
	}
	if m.UID != 1 || m.Envelope == nil || m.RFC822Size != int64(len(body)) || !strings.Contains(string(body), "Delivered-To: alice@xoyize.xyz\r\n") {
		t.Errorf("FETCH: uid %d size %d/%d envelope %+v\n%s", m.UID, m.RFC822Size, len(body), m.Envelope, body)
	}
	if err := c.Store(goimap.UIDSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Copy(goimap.UIDSetNum(1), "Trash").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(goimap.UIDSetNum(1), "Sent").Wait(); err != nil {
		t.Fatal(err)
	}
	for folder, want := range map[string]uint32{"INBOX": 0, "Sent": 1, "Trash": 1} {
		st, err := c.Status(folder, &goimap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || st.NumMessages == nil || *st.NumMessages != want {
			t.Errorf("STATUS %s: %+v %v; want %d", folder, st, err, want)
		}
	}
	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fl, err := c.Fetch(goimap.SeqSetNum(1), &goimap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(fl) != 1 || !hasFlag(fl[0].Flags, goimap.FlagFlagged) {
		t.Errorf("flag lost in MOVE: %+v %v", fl, err)
	}
	// The file is in alice's own maildir, owned by her.
	files := s.maildirFiles(t, "alice", ".Sent/cur")
	if len(files) != 1 || !strings.Contains(files[0], ":2,F") {
		t.Errorf("Sent/cur: %v", files)
	} else {
		checkOwnerMode(t, files[0], 20001, 20001, 0o600)
	}

	// Folders: create a nested one, append with a flag and a date, search,
	// rename, expunge, delete.
	if err := c.Create("Archive.2024", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.vmail, "alice", "mailbox", ".Archive.2024", "cur")); err != nil {
		t.Errorf("Maildir++ folder not on disk: %v", err)
	}
	msg := "From: bob@example.org\r\nSubject: kept for the record\r\n\r\nhello\r\n"
	date := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	ap := c.Append("Archive.2024", int64(len(msg)), &goimap.AppendOptions{Flags: []goimap.Flag{goimap.FlagSeen}, Time: date})
	ap.Write([]byte(msg))
	ap.Close()
	apd, err := ap.Wait()
	if err != nil || apd.UID != 1 {
		t.Fatalf("APPEND: %+v %v", apd, err)
	}
	if _, err := c.Select("Archive.2024", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	found, err := c.UIDSearch(&goimap.SearchCriteria{Header: []goimap.SearchCriteriaHeaderField{{Key: "Subject", Value: "RECORD"}}}, nil).Wait()
	if err != nil || len(found.AllUIDs()) != 1 {
		t.Errorf("UID SEARCH SUBJECT: %+v %v", found, err)
	}
	fd, err := c.Fetch(goimap.UIDSetNum(1), &goimap.FetchOptions{InternalDate: true, Flags: true}).Collect()
	if err != nil || len(fd) != 1 || !fd[0].InternalDate.Equal(date) || !hasFlag(fd[0].Flags, goimap.FlagSeen) {
		t.Errorf("APPEND date/flags: %+v %v", fd, err)
	}
	if err := c.Store(goimap.UIDSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if exp, err := c.UIDExpunge(goimap.UIDSetNum(1)).Collect(); err != nil || len(exp) != 1 {
		t.Errorf("UID EXPUNGE: %v %v", exp, err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("Archive.2024", "Archive.Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Archive.Old").Wait(); err != nil {
		t.Fatal(err)
	}
	if ns, err := c.Namespace().Wait(); err != nil || len(ns.Personal) != 1 {
		t.Errorf("NAMESPACE: %+v %v", ns, err)
	}
	// Names that would leave the maildir are refused.
	for _, bad := range []string{"../bob", "a/../../x", ".hidden", "a..b"} {
		if err := c.Create(bad, nil).Wait(); err == nil {
			t.Errorf("CREATE %q accepted", bad)
		}
	}
	if err := c.Logout().Wait(); err != nil {
		t.Error(err)
	}
}

func hasFlag(flags []goimap.Flag, f goimap.Flag) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// A message another program drops into the maildir (as Dovecot's LDA or a
// script would: written in tmp/, renamed into new/) reaches a client in
// IDLE, and so does another program's expunge.
func TestIDLESeesAnotherProgram(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	if out := swaksTo(t, s, "alice@example.org"); !accepted(out) { // creates alice's maildir
		t.Fatalf("swaks:\n%s", out)
	}
	exists := make(chan uint32, 16)
	expunged := make(chan uint32, 16)
	c, err := imapclient.DialTLS(s.IMAPS, &imapclient.Options{
		TLSConfig: &tls.Config{ServerName: "localhost", RootCAs: s.ca.Pool()},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			},
			Expunge: func(seq uint32) { expunged <- seq },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice@example.org", testenv.AlicePassword).Wait(); err != nil {
		t.Fatal(err)
	}
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	mailbox := filepath.Join(s.vmail, "alice", "mailbox")
	name := "1796600000.M1P1.elsewhere"
	if err := os.WriteFile(filepath.Join(mailbox, "tmp", name), []byte("From: a@example.net\nSubject: dropped\n\nby another program\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mailbox, "tmp", name), filepath.Join(mailbox, "new", name)); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("EXISTS %d, want 2", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("IDLE was not told of another program's delivery")
	}
	// The server may have moved it to cur/ meanwhile.
	found, _ := filepath.Glob(filepath.Join(mailbox, "[nc][eu][wr]", name+"*"))
	if len(found) != 1 {
		t.Fatalf("the dropped file: %v", found)
	}
	if err := os.Remove(found[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 2 {
			t.Errorf("EXPUNGE %d, want 2", seq)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("IDLE was not told of another program's expunge")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

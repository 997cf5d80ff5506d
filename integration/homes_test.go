package integration

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

const aliceUID = 20001 // fixture.ldif

// An entry whose homeDirectory is another user's home gets neither her
// mail nor her maildir: its mail waits in the queue (the 250 is kept, as
// Postfix's virtual(8), working as that uid, would defer on EACCES), its
// IMAP login is refused, and alice's files stay hers. Through the binary,
// real slapd, smtp and go-imap's client.
func TestHomeOfAnotherUserRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: maildirs are given their users")
	}
	s := startServer(t)
	msg := []byte("Subject: for alice\r\n\r\nhello\r\n")
	if err := sendPlain(s.SMTP, "sender@example.net", "alice@xoyize.xyz", msg); err != nil {
		t.Fatal(err)
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 1 {
		t.Fatalf("alice has %d messages, want 1", n)
	}
	home := filepath.Join(s.vmail, "alice")
	s.slapd.Add(t, "dn: uid=evil,ou=mail,dc=xoyize,dc=xyz\nobjectClass: account\nobjectClass: posixAccount\nobjectClass: postfixUser\n"+
		"uid: evil\ncn: evil\nuidNumber: 20099\ngidNumber: 20001\nhomeDirectory: "+home+"\nmaildrop: evil@xoyize.xyz\n"+
		"mailacceptinggeneralid: evil@xoyize.xyz\nuserPassword: evilpw\n")

	// Deferred, never bounced: the sender keeps it (4xx) or the queue does.
	err := sendPlain(s.SMTP, "sender@example.net", "evil@xoyize.xyz", []byte("Subject: for evil\r\n\r\nhi\r\n"))
	if err != nil && !strings.HasPrefix(err.Error(), "451") {
		t.Errorf("evil's mail: %v, want 451 4.3.0 or 250", err)
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 1 {
		t.Errorf("alice's maildir has %d messages, want her 1: evil's copy went into it", n)
	}
	waitFor(t, "the log line saying why evil's mail waits", func() bool {
		return strings.Contains(s.logs(), "maildir path has a directory of another user that uid 20099 may not use")
	})

	c, err := imapclient.DialTLS(s.IMAPS, &imapclient.Options{TLSConfig: &tls.Config{ServerName: "localhost", RootCAs: s.ca.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("evil", "evilpw").Wait(); err == nil {
		t.Error("evil logged in to alice's maildir")
	}
	filepath.WalkDir(home, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		if st := fi.Sys().(*syscall.Stat_t); p != home && st.Uid != aliceUID {
			t.Errorf("%s owned by %d", p, st.Uid)
		}
		return nil
	})
}

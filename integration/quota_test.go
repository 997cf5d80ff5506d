package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// TestQuota: the quota comes from the directory attribute the
// configuration names (here description, which the fixture's classes
// allow). A delivery past it gets 452 4.2.2 from swaks's point of view,
// directly; a copy past it in a message for several maildrops waits in the
// queue (the others are stored, the answer is 250) and goes in once the
// admin raises the limit in LDAP. Usage is kept in maildirsize.
func TestQuota(t *testing.T) {
	requireTool(t, "swaks")
	const dn = ",ou=mail,dc=xoyize,dc=xyz"
	s := startServer(t, withLDAPTOML("quota_attribute = \"description\"\n"),
		withSlapd(testenv.WithExtraLDIF("dn: uid=xomail"+dn+"\nchangetype: modify\nadd: description\ndescription: 6K\n\n"+
			"dn: uid=alice"+dn+"\nchangetype: modify\nadd: description\ndescription: 1K\n")))
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 50) // 3,200 octets
	send := func(to string) string {
		out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", to,
			"--ehlo", "client.example.net", "--body", body)
		return out
	}
	if out := send("test0@hosted-domain.com"); !accepted(out) {
		t.Fatalf("first message, under the quota:\n%s", out)
	}
	if out := send("test0@hosted-domain.com"); !strings.Contains(out, "<** 452 4.2.2") {
		t.Errorf("second message, past the quota: want 452 4.2.2\n%s", out)
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 1 {
		t.Errorf("xomail has %d messages, want 1", n)
	}
	b, err := os.ReadFile(filepath.Join(s.vmail, "xomail", "mailbox", "maildirsize"))
	if err != nil || !strings.HasPrefix(string(b), "6144S\n") {
		t.Errorf("maildirsize %q (%v)", b, err)
	}
	// The user sees the same quota over IMAP (Python's imaplib).
	if python, err := lookPath("python3"); err == nil {
		out, err := run(t, "", python, "-c", fmt.Sprintf(`
import imaplib, ssl
ctx = ssl.create_default_context(cafile=%q)
m = imaplib.IMAP4_SSL("localhost", %s, ssl_context=ctx)
m.login("xomail", %q)
print(m.getquotaroot("INBOX"))
`, s.ca.CertFile(), port(s.IMAPS), testenv.XomailPassword))
		// One message of some 3.5 KiB: 4 KiB used, rounded up as Dovecot.
		if err != nil || !strings.Contains(out, `STORAGE 4 6`) {
			t.Errorf("imaplib getquotaroot: %v\n%s", err, out)
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("python3 is missing")
	}

	// The list: bob's copy is stored, alice's (1K) waits in the queue.
	if out := send("team@hosted-domain.com"); !accepted(out) {
		t.Fatalf("message to the list:\n%s", out)
	}
	if a, b := len(s.maildirFiles(t, "alice", "new")), len(s.maildirFiles(t, "bob", "new")); a != 0 || b != 1 {
		t.Fatalf("alice %d, bob %d copies; want 0 and 1", a, b)
	}
	out, _ := run(t, "", binary, "queue", "-config", s.config, "list")
	if !strings.Contains(out, "<alice@xoyize.xyz> pending") || !strings.Contains(out, "(mailbox over quota)") {
		t.Errorf("queue list does not show alice's copy waiting for room:\n%s", out)
	}
	s.slapd.Modify(t, "dn: uid=alice"+dn+"\nchangetype: modify\nreplace: description\ndescription: 1M\n")
	time.Sleep(2500 * time.Millisecond) // the test server's directory cache TTL is 2 s
	if out, err := run(t, "", binary, "queue", "-config", s.config, "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	waitFor(t, "alice's copy", func() bool { return len(s.maildirFiles(t, "alice", "new")) == 1 })
	if n := len(s.maildirFiles(t, "bob", "new")); n != 1 {
		t.Errorf("bob has %d copies after the retry, want 1", n)
	}
}

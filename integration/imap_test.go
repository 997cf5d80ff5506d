package integration

import (
	"fmt"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// A message delivered by swaks through courriel's SMTP is read back with
// curl imaps:// and Python's imaplib.
func TestIMAPReadsDelivered(t *testing.T) {
	requireTool(t, "swaks")
	curl := requireTool(t, "curl")
	python := requireTool(t, "python3")
	s := startServer(t)
	msgFile, content := writeMessage(t, "imap-read")
	if out, err := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", "test0@hosted-domain.com", "--data", "@"+msgFile); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	_, wantBody, _ := strings.Cut(content, "\n\n")
	wantBody = strings.ReplaceAll(wantBody, "\n", "\r\n")

	out, err := run(t, "", curl, "-sS", "--cacert", s.ca.CertFile(), "--user", "xomail:"+testenv.XomailPassword,
		"imaps://localhost:"+port(s.IMAPS)+"/INBOX;UID=1")
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Subject: integration") || !strings.Contains(out, wantBody) {
		t.Errorf("curl read:\n%q\nwant body %q", out, wantBody)
	}
	out, _ = run(t, "", curl, "-sS", "--cacert", s.ca.CertFile(), "--user", "xomail:wrong", "imaps://localhost:"+port(s.IMAPS)+"/INBOX;UID=1")
	if strings.Contains(out, "Subject: integration") {
		t.Error("a wrong password read the mailbox")
	}

	script := fmt.Sprintf(`
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=%q)
m = imaplib.IMAP4_SSL("localhost", %s, ssl_context=ctx)
m.login("test0@hosted-domain.com", %q)
typ, data = m.select("INBOX")
print("EXISTS", data[0].decode())
typ, data = m.uid("search", None, "SUBJECT", "integration")
print("SEARCH", data[0].decode())
typ, data = m.uid("fetch", data[0].split()[0], "(BODY.PEEK[TEXT])")
sys.stdout.write(data[0][1].decode())
typ, data = m.list()
for l in data: print("LIST", l.decode())
m.logout()
`, s.ca.CertFile(), port(s.IMAPS), testenv.XomailPassword)
	out, err = run(t, script, python, "-")
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	for _, want := range []string{"EXISTS 1", "SEARCH 1", wantBody, `\Sent`, `\Trash`, `\Drafts`, `\Junk`} {
		if !strings.Contains(out, want) {
			t.Errorf("imaplib output lacks %q:\n%s", want, out)
		}
	}
}

func port(hostport string) string {
	i := strings.LastIndexByte(hostport, ':')
	return hostport[i+1:]
}

package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"courriel/internal/testenv"
)

// A message with exact bytes, so the body on disk can be compared.
const testMessage = "From: Someone <someone@example.net>\n" +
	"To: test0@hosted-domain.com\n" +
	"Subject: integration\n" +
	"Message-ID: <%s@example.net>\n" +
	"\n" +
	"Bonjour,\n" +
	"\n" +
	"..a line starting with a dot, and trailing spaces   \n" +
	"8bit: é à ü\n"

func writeMessage(t *testing.T, id string) (path, content string) {
	t.Helper()
	content = fmt.Sprintf(testMessage, id)
	path = filepath.Join(t.TempDir(), "msg.eml")
	// swaks ends what it sends with a line break of its own.
	if err := os.WriteFile(path, []byte(strings.TrimSuffix(content, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, content
}

func TestSwaksInboundToMaildir(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	for _, tc := range []struct {
		name string
		args []string
		tls  bool
	}{
		{"plain", nil, false},
		{"starttls", []string{"--tls", "--tls-verify", "--tls-ca-path", s.ca.CertFile()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.maildirFiles(t, "xomail", "new"))
			msgFile, content := writeMessage(t, "id-"+tc.name)
			args := append([]string{"--server", s.SMTP, "--from", "someone@example.net", "--to", "test0@hosted-domain.com",
				"--ehlo", "client.example.net", "--data", "@" + msgFile}, tc.args...)
			out, err := run(t, "", "swaks", args...)
			if err != nil || !accepted(out) {
				t.Fatalf("swaks: %v\n%s", err, out)
			}
			files := s.maildirFiles(t, "xomail", "new")
			if len(files) != before+1 {
				t.Fatalf("%d files in new/, want %d", len(files), before+1)
			}
			var got []byte
			for _, f := range files {
				b, _ := os.ReadFile(f)
				if bytes.Contains(b, []byte("id-"+tc.name+"@")) {
					got = b
					checkOwnerMode(t, f, 20000, 20000, 0o600)
					checkOwnerMode(t, filepath.Dir(f), 20000, 20000, 0o700)
				}
			}
			if got == nil {
				t.Fatal("message not found in new/")
			}
			head, body, ok := strings.Cut(string(got), "\n\n")
			if !ok {
				t.Fatalf("no header/body separator:\n%s", got)
			}
			_, wantBody, _ := strings.Cut(content, "\n\n")
			if body != wantBody {
				t.Errorf("body on disk differs:\n%q\nwant\n%q", body, wantBody)
			}
			for _, re := range []string{
				`(?m)\AReturn-Path: <someone@example.net>\n`,
				`(?m)^Delivered-To: xomail@xoyize.xyz\n`,
				`(?m)^Received: from client\.example\.net`,
				`(?m)^Subject: integration\n`,
			} {
				if !regexp.MustCompile(re).MatchString(head) {
					t.Errorf("header %s missing:\n%s", re, head)
				}
			}
			if tc.tls && !regexp.MustCompile(`TLSv1\.[23]`).MatchString(head) {
				t.Errorf("Received lacks the TLS version:\n%s", head)
			}
		})
	}
}

func checkOwnerMode(t *testing.T, path string, uid, gid int, mode os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %o, want %o", path, st.Mode().Perm(), mode)
	}
	if os.Geteuid() != 0 {
		return
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != uid || int(sys.Gid) != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", path, sys.Uid, sys.Gid, uid, gid)
	}
}

// accepted reports whether a swaks transcript ends its DATA with 250.
func accepted(out string) bool {
	return regexp.MustCompile(`<[-~]  250 2\.0\.0 OK: queued`).MatchString(out)
}

// swaksTo sends one message and returns swaks's transcript.
func swaksTo(t *testing.T, s *server, rcpts ...string) string {
	t.Helper()
	out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net",
		"--to", strings.Join(rcpts, ","), "--ehlo", "client.example.net", "--body", "hello")
	return out
}

func TestAliasesEndToEnd(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	count := func(user string) int { return len(s.maildirFiles(t, user, "new")) }

	// A chain of three aliases, and a list to two users, in one transaction,
	// with duplicates: alice gets one copy, bob one.
	out := swaksTo(t, s, "chain1@hosted-domain.com", "team@hosted-domain.com", "alice@hosted-domain.com", "ALICE@hosted-domain.com")
	if !accepted(out) || strings.Contains(out, "<** ") {
		t.Fatalf("swaks:\n%s", out)
	}
	if a, b := count("alice"), count("bob"); a != 1 || b != 1 {
		t.Errorf("alice %d, bob %d copies; want 1 and 1", a, b)
	}
	// Mixed known and unknown recipients: the unknown one is refused at
	// RCPT, the message goes to the known one.
	out, _ = run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net",
		"--to", "nobody@hosted-domain.com,test1@hosted-domain.com", "--body", "mixed")
	if !strings.Contains(out, "<** 550 5.1.1") || count("xomail") != 1 {
		t.Errorf("mixed: xomail has %d\n%s", count("xomail"), out)
	}
	// A loop is refused, not delivered and not bounced later.
	out = swaksTo(t, s, "loop1@hosted-domain.com")
	if !regexp.MustCompile(`<\*\* 5\d\d `).MatchString(out) {
		t.Errorf("loop accepted:\n%s", out)
	}
}

// A message that already reached alice here (her Delivered-To:) bounces
// for her alone: bob gets his copy, and the sender a DSN for alice with
// 5.4.6, as Postfix's local delivery bounces the one looping recipient.
func TestLoopBouncesOneRecipient(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	// The sender is ours (xomail's), so it logs in to use it.
	out, _ := run(t, "", "swaks", "--server", s.Sub, "--tls", "--tls-verify", "--tls-ca-path", s.ca.CertFile(),
		"-au", "xomail", "-ap", testenv.XomailPassword, "--from", "test0@hosted-domain.com",
		"--to", "alice@hosted-domain.com,bob@hosted-domain.com", "--header", "Delivered-To: alice@hosted-domain.com", "--body", "loop")
	if !accepted(out) {
		t.Fatalf("swaks:\n%s", out)
	}
	if a, b := len(s.maildirFiles(t, "alice", "new")), len(s.maildirFiles(t, "bob", "new")); a != 0 || b != 1 {
		t.Errorf("alice %d, bob %d messages; want 0 and 1", a, b)
	}
	var dsn []byte
	waitFor(t, "the DSN in the sender's mailbox", func() bool {
		for _, f := range s.maildirFiles(t, "xomail", "new") {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte("message/delivery-status")) {
				dsn = b
				return true
			}
		}
		return false
	})
	for _, want := range []string{"Final-Recipient: rfc822; alice@hosted-domain.com", "Status: 5.4.6", "Action: failed"} {
		if !bytes.Contains(dsn, []byte(want)) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if bytes.Contains(dsn, []byte("Final-Recipient: rfc822; bob@")) {
		t.Errorf("DSN names bob:\n%s", dsn)
	}
}

func TestRelayBattery(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	for _, rcpt := range []string{
		"someone@foreign.example",
		"someone%foreign.example@xoyize.xyz",
		"@xoyize.xyz:someone@foreign.example",
		"foreign.example!someone@xoyize.xyz",
		`"someone@foreign.example"@xoyize.xyz`,
		"someone@foreign.example.",
		"someone@[127.0.0.1]",
		"someone@FOREIGN.example",
	} {
		out := swaksTo(t, s, rcpt)
		if !regexp.MustCompile(`<\*\* (554 5\.7\.1|55[0-3] |501 )`).MatchString(out) {
			t.Errorf("relay trick %q not refused:\n%s", rcpt, out)
		}
	}
	for _, u := range []string{"xomail", "alice", "bob"} {
		if n := len(s.maildirFiles(t, u, "new")); n != 0 {
			t.Errorf("%s got %d messages", u, n)
		}
	}
	if out, _ := run(t, "", binary, "queue", "-config", s.config, "list"); !strings.Contains(out, "empty") {
		t.Errorf("queue not empty:\n%s", out)
	}
	// A domain's root dot names the same domain, as Postfix's resolve
	// strips it: our user's mail, delivered here, never relayed.
	if out := swaksTo(t, s, "xomail@xoyize.xyz."); !accepted(out) {
		t.Errorf("xomail@xoyize.xyz. refused:\n%s", out)
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 1 {
		t.Errorf("xomail has %d messages, want 1", n)
	}
	if out, _ := run(t, "", binary, "queue", "-config", s.config, "list"); !strings.Contains(out, "empty") {
		t.Errorf("queue not empty after xomail@xoyize.xyz.:\n%s", out)
	}
}

func TestDirectoryOutage(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	if out := swaksTo(t, s, "test0@hosted-domain.com"); !accepted(out) {
		t.Fatalf("before:\n%s", out)
	}
	s.slapd.Stop(t)
	// Another address, so no cached answer applies.
	if out := swaksTo(t, s, "alice@hosted-domain.com"); !strings.Contains(out, "<** 451 4.3.0") {
		t.Errorf("slapd down: want 451 4.3.0:\n%s", out)
	}
	s.slapd.Start(t)
	if out := swaksTo(t, s, "alice@hosted-domain.com"); !accepted(out) {
		t.Errorf("slapd back:\n%s", out)
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}

// TestUnwritableMaildir: a maildir the file system refuses to write to
// (here xomail's new/ made immutable, as a read-only remount would) gives
// 452 4.3.1 and leaves nothing behind; once it is writable again the retry
// is delivered.
func TestUnwritableMaildir(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	if out := swaksTo(t, s, "test0@hosted-domain.com"); !accepted(out) {
		t.Fatalf("before:\n%s", out)
	}
	allow := testenv.MakeImmutable(t, filepath.Join(s.vmail, "xomail", "mailbox", "new"))
	if out := swaksTo(t, s, "test0@hosted-domain.com"); !strings.Contains(out, "<** 452 4.3.1") {
		t.Errorf("immutable new/: want 452 4.3.1:\n%s", out)
	}
	if n := len(s.maildirFiles(t, "xomail", "tmp")); n != 0 {
		t.Errorf("%d files left in tmp/", n)
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 1 {
		t.Errorf("new/ holds %d messages, want 1", n)
	}
	allow()
	if out := swaksTo(t, s, "test0@hosted-domain.com"); !accepted(out) {
		t.Errorf("writable again:\n%s", out)
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 2 {
		t.Errorf("new/ holds %d messages, want 2", n)
	}
}

// TestSizeLimitRealClients: Python's smtplib reads SIZE from EHLO and
// declares each message's size in MAIL; a message of exactly
// message_size_limit octets is delivered byte for byte, one octet more is
// refused at MAIL. swaks declares no size: one octet over gets 552 at the
// end of DATA. Nothing over the limit reaches the maildir.
func TestSizeLimitRealClients(t *testing.T) {
	python := requireTool(t, "python3")
	requireTool(t, "swaks")
	const limit = 20000
	s := startServer(t, withTopTOML(fmt.Sprintf("message_size_limit = %d\n", limit)))
	dir := t.TempDir()
	write := func(name string, n int) (string, string) {
		m := exactMessage(name, n)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		return p, m
	}
	atLimit, atLimitMsg := write("at-limit", limit)
	over, _ := write("over", limit+1)

	script := `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port)) as c:
    c.ehlo("client.example.net")
    print("SIZE", c.esmtp_features.get("size"))
    for path in sys.argv[2:]:
        try:
            c.sendmail("someone@example.net", ["test0@hosted-domain.com"], open(path, "rb").read())
            print(path, "accepted")
        except smtplib.SMTPSenderRefused as e:
            print(path, "refused", e.smtp_code, e.smtp_error.decode())
`
	out, err := run(t, "", python, "-c", script, s.SMTP, atLimit, over)
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	for _, want := range []string{fmt.Sprintf("SIZE %d\n", limit), atLimit + " accepted\n", over + " refused 552 5.3.4"} {
		if !strings.Contains(out, want) {
			t.Errorf("smtplib said:\n%s\nwant %q", out, want)
		}
	}

	swaksOver, _ := write("swaks-over", limit+1)
	out, _ = run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", "test0@hosted-domain.com",
		"--ehlo", "client.example.net", "--data", "@"+swaksOver)
	if !regexp.MustCompile(`<\*\* +552 5\.3\.4`).MatchString(out) {
		t.Errorf("swaks, one octet over without SIZE=: want 552 5.3.4 after DATA:\n%s", out)
	}

	var found int
	for _, f := range s.maildirFiles(t, "xomail", "new") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("Subject: over")) || bytes.Contains(b, []byte("Subject: swaks-over")) {
			t.Errorf("a message over the limit was delivered: %s", f)
		}
		// On disk lines end in LF (maildir), after courriel's own headers.
		if bytes.HasSuffix(b, []byte(strings.ReplaceAll(atLimitMsg, "\r\n", "\n"))) {
			found++
		}
	}
	if found != 1 {
		t.Errorf("the message of exactly the limit is in new/ %d times, want once, whole", found)
	}
}

// exactMessage is a message of exactly n octets as RFC 1870 counts them
// (CRLF line ends, no end-of-data line), with subject subject.
func exactMessage(subject string, n int) string {
	var b strings.Builder
	b.WriteString("From: someone@example.net\r\nTo: test0@hosted-domain.com\r\nSubject: " + subject + "\r\n\r\n")
	for b.Len() < n {
		line := strings.Repeat("y", min(76, max(0, n-b.Len()-2)))
		b.WriteString(line + "\r\n")
	}
	if b.Len() != n {
		panic(fmt.Sprintf("exactMessage(%d) made %d octets", n, b.Len()))
	}
	return b.String()
}

// Senders RFC 5321 allows and Postfix takes, from Python's smtplib: a
// quoted local part and an address literal. The copy's Return-Path keeps
// the sender as sent; nothing is routed by it.
func TestUnusualSenders(t *testing.T) {
	python := requireTool(t, "python3")
	s := startServer(t)
	const script = `
import smtplib, sys
host, port = sys.argv[1].rsplit(":", 1)
for sender in sys.argv[2:]:
    with smtplib.SMTP(host, int(port)) as c:
        c.sendmail(sender, ["bob@hosted-domain.com"], "Subject: from " + sender + "\r\n\r\nhello\r\n")
print("sent")
`
	senders := []string{`"john smith"@example.net`, "x@[192.0.2.1]", "list-bounces%x@example.net"}
	out, err := run(t, "", python, append([]string{"-c", script, s.SMTP}, senders...)...)
	if err != nil || !strings.Contains(out, "sent") {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	files := s.maildirFiles(t, "bob", "new")
	if len(files) != len(senders) {
		t.Fatalf("bob has %d messages, want %d", len(files), len(senders))
	}
	var paths []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		paths = append(paths, first)
	}
	for _, sdr := range senders {
		if !slices.Contains(paths, "Return-Path: <"+sdr+">") {
			t.Errorf("no copy with Return-Path: <%s>: %q", sdr, paths)
		}
	}
}

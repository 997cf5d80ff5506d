package integration

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/internal/testenv"
)

// TestSMTPSourceConnectionLimits: Postfix's own load generator, 20
// sessions at once from one address (the old limit refused it at the
// banner), gets every message accepted and stored.
func TestSMTPSourceConnectionLimits(t *testing.T) {
	src := requireTool(t, "/usr/sbin/smtp-source")
	s := startServer(t, withProduction())
	out, err := run(t, "", src, "-s", "20", "-m", "100", "-l", "4096", "-f", "someone@example.net",
		"-t", "test0@hosted-domain.com", "-M", "client.example.net", s.SMTP)
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 100 {
		t.Fatalf("%d messages stored, want 100\n%s", n, out)
	}
	if strings.Contains(s.logs(), "too many connections") {
		t.Error("a connection was refused")
	}
}

// TestConnectionLimitsConfigured: [smtp] connection_limit_per_ip and
// connection_limit each refuse the connection past them with 421 4.7.0.
func TestConnectionLimitsConfigured(t *testing.T) {
	s := startServer(t, withTOML("[smtp]\nconnection_limit_per_ip = 2\nconnection_limit = 3\n"))
	greet := func(local string) (net.Conn, string) {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", s.SMTP)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return c, l
	}
	for i, tc := range []struct{ from, want string }{
		{"127.0.0.1", "220 "},
		{"127.0.0.1", "220 "},
		{"127.0.0.1", "421 4.7.0 xoyize.xyz Too many connections from your address"},
		{"127.0.0.2", "220 "},
		{"127.0.0.3", "421 4.7.0 xoyize.xyz Too many connections, try again later"},
	} {
		if _, l := greet(tc.from); !strings.HasPrefix(l, tc.want) {
			t.Errorf("connection %d from %s: %q, want %q", i+1, tc.from, l, tc.want)
		}
	}
}

// rawSMTP sends an envelope and then data as they are, byte for byte
// (smtplib and swaks would fix the line endings), with python3's socket
// module, and prints every reply.
const rawSMTP = `
import socket, sys
host, port, rcpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=30)
f = s.makefile("rb")
def reply():
    while True:
        l = f.readline().decode()
        if l[3:4] != "-":
            print(l.strip())
            return
reply()
for c in ["EHLO client.example.net", "MAIL FROM:<someone@example.net>", "RCPT TO:<%s>" % rcpt, "DATA"]:
    s.sendall((c + "\r\n").encode())
    reply()
s.sendall(sys.stdin.buffer.read())
reply()
s.sendall(b"QUIT\r\n")
reply()
`

func sendRaw(t *testing.T, addr, rcpt, data string) string {
	t.Helper()
	requireTool(t, "python3")
	host, port, _ := net.SplitHostPort(addr)
	out, err := run(t, data, "python3", "-c", rawSMTP, host, port, rcpt)
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	return out
}

// TestBareLF: bare LF line endings are stored and relayed as CRLF by
// default (smtpd_forbid_bare_newline = normalize), refused with
// bare_newline = "reject"; <LF>.<LF> never ends DATA in either.
func TestBareLF(t *testing.T) {
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	msg := "Subject: bare LF\n\nline one\n.\nMAIL FROM:<evil@example.net>\nline two\r\n.\r\n"
	for _, tc := range []struct {
		mode, want string
	}{
		{"normalize", "250 2.0.0"},
		{"reject", "554 5.6.0"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[smtp]\nbare_newline = %q\n[queue.routes]\n\"foreign.example\" = %q\n", tc.mode, k.addr)))
			before := len(k.messages())
			out := sendRaw(t, s.SMTP, "test0@hosted-domain.com", msg)
			if !strings.Contains(out, "\n"+tc.want) {
				t.Fatalf("replies:\n%s", out)
			}
			files := s.maildirFiles(t, "xomail", "new")
			if tc.mode == "reject" {
				if len(files) != 0 {
					t.Fatalf("%d stored", len(files))
				}
				return
			}
			if len(files) != 1 {
				t.Fatalf("%d stored", len(files))
			}
			b, _ := os.ReadFile(files[0])
			if !strings.HasSuffix(string(b), "\n\nline one\n.\nMAIL FROM:<evil@example.net>\nline two\n") {
				t.Errorf("stored:\n%q", b)
			}
			// Relayed: CRLF only, so no next hop can read an end of data
			// inside it.
			out = sendRaw(t, s.SMTP, "fwd@hosted-domain.com", msg)
			if !strings.Contains(out, "\n250 2.0.0") {
				t.Fatalf("replies:\n%s", out)
			}
			waitFor(t, "the relayed copy", func() bool { return len(k.messages()) > before })
			got := k.messages()[before].data
			if strings.Count(got, "\n") != strings.Count(got, "\r\n") ||
				!strings.Contains(got, "\r\n\r\nline one\r\n.\r\nMAIL FROM:<evil@example.net>\r\nline two\r\n") {
				t.Errorf("relayed:\n%q", got)
			}
		})
	}
}

// TestLongLinesIntact: lines far over 1,000 octets are accepted and stored
// intact (Postfix reassembles them), from swaks over DATA, and relayed
// intact by the queue.
func TestLongLinesIntact(t *testing.T) {
	requireTool(t, "swaks")
	ca := testenv.NewCA(t)
	// A next hop that takes long lines (go-smtp's default stops at 2000).
	k := &sink{reject: map[string]bool{}}
	k.srv = gosmtp.NewServer(k)
	k.srv.Domain, k.srv.MaxLineLength = "sink.test", 1<<20
	k.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "localhost", "127.0.0.1")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	go k.srv.Serve(ln)
	t.Cleanup(func() { k.srv.Close() })
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)))
	long := strings.Repeat("0123456789", 2000) // 20,000 octets
	body := "short line\n" + long + "\nend"
	out, err := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", "test0@hosted-domain.com,fwd@hosted-domain.com",
		"--ehlo", "client.example.net", "--body", body)
	if err != nil || !accepted(out) {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	files := s.maildirFiles(t, "xomail", "new")
	if len(files) != 1 {
		t.Fatalf("%d stored", len(files))
	}
	b, _ := os.ReadFile(files[0])
	if !strings.Contains(string(b), "\nshort line\n"+long+"\nend\n") {
		t.Errorf("the long line was not stored intact (%d bytes on disk)", len(b))
	}
	waitFor(t, "the relayed copy", func() bool { return len(k.messages()) == 1 })
	if got := k.messages()[0].data; !strings.Contains(got, "\r\nshort line\r\n"+long+"\r\nend\r\n") {
		t.Errorf("the long line was not relayed intact (%d bytes)", len(got))
	}
}

// TestPostmasterWithoutDomain: RCPT TO:<postmaster> (RFC 5321 §4.5.1)
// reaches the postmaster of myhostname's domain, as the directory says,
// and any other bare local part its user there.
func TestPostmasterWithoutDomain(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t, withSlapd(testenv.WithExtraLDIF(`dn: uid=postmaster,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: postfixUser
objectclass: top
uid: postmaster
mailacceptinggeneralid: postmaster@xoyize.xyz
maildrop: alice@xoyize.xyz
`)))
	for _, rcpt := range []string{"postmaster", "PostMaster"} {
		out, err := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", rcpt,
			"--ehlo", "client.example.net", "--body", "to the postmaster")
		if err != nil || !accepted(out) {
			t.Fatalf("swaks to %s: %v\n%s", rcpt, err, out)
		}
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 2 {
		t.Fatalf("alice (postmaster) has %d messages, want 2", n)
	}
	// Any bare local part is user@myhostname, as the seed's Postfix
	// took it (append_at_myorigin).
	out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", "xomail",
		"--ehlo", "client.example.net", "--body", "x")
	if !accepted(out) || len(s.maildirFiles(t, "xomail", "new")) != 1 {
		t.Errorf("a bare local part other than postmaster:\n%s", out)
	}
	// check-config finds the postmaster, so it says nothing of it.
	out, code := courriel(t, "check-config", "-q", "-config", s.config)
	if code != 0 || strings.Contains(out, "reaches nobody") {
		t.Errorf("check-config with a postmaster (exit %d):\n%s", code, out)
	}
}

// smtplibSend sends a message as given with python3's smtplib, on
// submission (STARTTLS, AUTH) or on port 25.
const smtplibSend = `
import smtplib, ssl, sys
mode, host, port, ca, user, pw, sender, rcpt = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=ca)
if mode == "ssl":
    s = smtplib.SMTP_SSL(host, int(port), context=ctx, timeout=30)
else:
    s = smtplib.SMTP(host, int(port), timeout=30)
    if mode == "starttls":
        s.starttls(context=ctx)
if user:
    s.login(user, pw)
s.sendmail(sender, [rcpt], sys.stdin.buffer.read())
s.quit()
print("sent")
`

// TestSubmissionAddsMissingFields: a client that sends only a Subject gets
// Message-ID, Date and From added once logged in, on 587, 465 or port 25
// (Postfix's cleanup for SASL clients); the same message on port 25
// without a login is stored as sent.
func TestSubmissionAddsMissingFields(t *testing.T) {
	requireTool(t, "python3")
	s := startServer(t)
	msg := "Subject: bare client\r\n\r\nno headers here\r\n"
	for _, tc := range []struct {
		name, mode, addr, user, pw, from string
		added                            bool
	}{
		{"submission", "starttls", s.Sub, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", true},
		{"submissions", "ssl", s.Subs, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", true},
		{"port 25 after AUTH", "starttls", s.SMTP, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", true},
		// Without a login, a sender of ours is refused (reject_sender_login_mismatch).
		{"port 25", "plain", s.SMTP, "", "", "someone@example.net", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]bool{}
			for _, f := range s.maildirFiles(t, "alice", "new") {
				before[f] = true
			}
			host, port, _ := net.SplitHostPort(tc.addr)
			out, err := run(t, msg, "python3", "-c", smtplibSend, tc.mode, host, port, s.ca.CertFile(), tc.user, tc.pw,
				tc.from, "alice@hosted-domain.com")
			if err != nil || !strings.Contains(out, "sent") {
				t.Fatalf("smtplib: %v\n%s", err, out)
			}
			var stored []byte
			for _, f := range s.maildirFiles(t, "alice", "new") {
				if !before[f] {
					stored, _ = os.ReadFile(f)
				}
			}
			head, body, _ := strings.Cut(string(stored), "\n\n")
			if body != "no headers here\n" {
				t.Fatalf("stored:\n%s", stored)
			}
			for _, re := range []string{`(?m)^Message-ID: <\d{14}\.[A-Z2-7]{16}@xoyize\.xyz>$`,
				`(?m)^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)$`,
				`(?m)^From: <test0@hosted-domain\.com>$`} {
				if got := regexp.MustCompile(re).MatchString(head); got != tc.added {
					t.Errorf("%s in the stored header: %v, want %v\n%s", re, got, tc.added, head)
				}
			}
			if !strings.Contains(head, "\nSubject: bare client") {
				t.Errorf("no Subject:\n%s", head)
			}
		})
	}
}

// TestHopLimit: 50 Received: fields pass, 51 get 554 5.4.6 (Postfix's
// hopcount_limit).
func TestHopLimit(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	for _, tc := range []struct {
		hops int
		ok   bool
	}{{50, true}, {51, false}} {
		var b strings.Builder
		for i := range tc.hops {
			fmt.Fprintf(&b, "Received: from hop%d.example by hop%d.example; Sun, 6 Dec 2026 12:00:00 +0000\n", i, i+1)
		}
		b.WriteString("Subject: hops\n\nbody")
		path := filepath.Join(t.TempDir(), "msg")
		os.WriteFile(path, []byte(b.String()), 0o600)
		out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", "test0@hosted-domain.com",
			"--ehlo", "client.example.net", "--data", "@"+path)
		if got := accepted(out); got != tc.ok {
			t.Errorf("%d hops: accepted %v\n%s", tc.hops, got, out)
		}
		if !tc.ok && !strings.Contains(out, "<** 554 5.4.6 ") {
			t.Errorf("%d hops: not 554 5.4.6\n%s", tc.hops, out)
		}
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 1 {
		t.Errorf("%d stored, want 1", n)
	}
}

// forwarder is an outside MTA that forwards every message it gets back to
// courriel (the outside member of an alias forwarding to us again), adding
// its own Received:, and records courriel's answers.
type forwarder struct {
	to   string // courriel's SMTP address
	rcpt string // where it forwards
	mu   sync.Mutex
	got  int
	errs []error // courriel's answer to each forward (nil: 250)
}

func (f *forwarder) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &fwdSession{f: f}, nil }

type fwdSession struct {
	f    *forwarder
	from string
}

func (s *fwdSession) AuthMechanisms() []string { return nil }
func (s *fwdSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *fwdSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s *fwdSession) Reset()                                 {}
func (s *fwdSession) Logout() error                          { return nil }
func (s *fwdSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.f.mu.Lock()
	s.f.got++
	s.f.mu.Unlock()
	// Forwarded after our 250, as an MTA's queue would.
	go func() {
		msg := "Received: from xoyize.xyz by outside.example; Sun, 6 Dec 2026 12:00:00 +0000\r\n" + string(b)
		c, err := gosmtp.Dial(s.f.to)
		if err == nil {
			err = c.SendMail(s.from, []string{s.f.rcpt}, strings.NewReader(msg))
			c.Close()
		}
		s.f.mu.Lock()
		s.f.errs = append(s.f.errs, err)
		s.f.mu.Unlock()
	}()
	return nil
}

// TestForwardingLoop: mixed@hosted-domain.com has an outside member that
// forwards back to mixed@. The copy that comes back is refused with
// 554 5.4.6 (courriel's Delivered-To: for the alias), so the loop stops
// there: one copy for each local member, one round outside.
func TestForwardingLoop(t *testing.T) {
	requireTool(t, "swaks")
	ca := testenv.NewCA(t)
	fw := &forwarder{rcpt: "mixed@hosted-domain.com"}
	srv := gosmtp.NewServer(fw)
	srv.Domain = "outside.example"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "localhost", "127.0.0.1")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", ln.Addr().String())))
	fw.mu.Lock()
	fw.to = s.SMTP
	fw.mu.Unlock()

	out := swaksTo(t, s, "mixed@hosted-domain.com")
	if !accepted(out) {
		t.Fatalf("swaks:\n%s", out)
	}
	waitFor(t, "the forward back", func() bool {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		return len(fw.errs) > 0
	})
	fw.mu.Lock()
	errs, got := fw.errs, fw.got
	fw.mu.Unlock()
	var se *gosmtp.SMTPError
	if len(errs) != 1 || !errors.As(errs[0], &se) || se.Code != 554 || se.EnhancedCode != (gosmtp.EnhancedCode{5, 4, 6}) {
		t.Fatalf("the copy forwarded back got %v, want 554 5.4.6", errs)
	}
	if got != 1 {
		t.Errorf("the outside got %d copies, want 1", got)
	}
	for _, u := range []string{"alice", "bob"} {
		if n := len(s.maildirFiles(t, u, "new")); n != 1 {
			t.Errorf("%s has %d copies, want 1", u, n)
		}
	}
	if !strings.Contains(s.logs(), "mail loop") {
		t.Error("no mail loop in the log")
	}
}

// TestOneMiBLineIntact: a message with a 1 MiB line (and a dot-stuffed
// line as long) from Python's smtplib on port 25 and on submission after
// STARTTLS, and from swaks, is stored byte for byte (Postfix accepts any
// line length; go-smtp refused lines over 64 KiB with 554). smtplib reads
// SIZE inside TLS as exactly message_size_limit.
func TestOneMiBLineIntact(t *testing.T) {
	python := requireTool(t, "python3")
	requireTool(t, "swaks")
	s := startServer(t)
	long := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	msg := "Subject: one long line\r\n\r\nbefore\r\n" + long + "\r\n." + long + "\r\nafter\r\n"
	file := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(file, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	const script = `
import smtplib, ssl, sys
mode, host, port, ca, user, pw, path = sys.argv[1:8]
s = smtplib.SMTP(host, int(port), timeout=60)
if mode == "starttls":
    s.starttls(context=ssl.create_default_context(cafile=ca))
    s.ehlo()
    print("SIZE", s.esmtp_features.get("size"))
    s.login(user, pw)
# Port 25 without a login: a foreign sender (test0's needs the login).
sender = "test0@hosted-domain.com" if mode == "starttls" else "someone@example.net"
s.sendmail(sender, ["alice@hosted-domain.com"], open(path, "rb").read())
s.quit()
print("sent")
`
	seen := map[string]bool{}
	stored := func() []byte {
		t.Helper()
		var got []byte
		for _, f := range s.maildirFiles(t, "alice", "new") {
			if !seen[f] {
				seen[f] = true
				got, _ = os.ReadFile(f)
			}
		}
		return got
	}
	stored()
	want := "\n\nbefore\n" + long + "\n." + long + "\nafter\n"
	for _, tc := range []struct{ name, mode, addr string }{
		{"smtplib port 25", "plain", s.SMTP},
		{"smtplib submission STARTTLS", "starttls", s.Sub},
	} {
		host, port, _ := net.SplitHostPort(tc.addr)
		out, err := run(t, "", python, "-c", script, tc.mode, host, port, s.ca.CertFile(), "xomail", testenv.XomailPassword, file)
		if err != nil || !strings.Contains(out, "sent") {
			t.Fatalf("%s: %v\n%s", tc.name, err, out)
		}
		if tc.mode == "starttls" && !strings.Contains(out, "SIZE 10240000\n") {
			t.Errorf("%s: SIZE inside TLS is not exactly message_size_limit:\n%s", tc.name, out)
		}
		if got := stored(); !strings.HasSuffix(string(got), want) {
			t.Errorf("%s: not stored intact (%d bytes on disk)", tc.name, len(got))
		}
	}
	// swaks sends a file as it is, without dot-stuffing: no line of its
	// message begins with a dot.
	msg = "Subject: one long line\r\n\r\nbefore\r\n" + long + "\r\nafter\r\n"
	if err := os.WriteFile(file, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", "alice@hosted-domain.com",
		"--ehlo", "client.example.net", "--data", "@"+file)
	if err != nil || !accepted(out) {
		t.Fatalf("swaks: %v\n%.2000s", err, out)
	}
	// (swaks adds a line ending of its own before the end of data)
	if got := stored(); !strings.Contains(string(got), "\n\nbefore\n"+long+"\nafter\n") {
		t.Errorf("swaks: not stored intact (%d bytes on disk)", len(got))
	}
}

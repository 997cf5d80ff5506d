package smtp

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

func hasLine(lines []string, want string) bool {
	return slices.ContainsFunc(lines, func(l string) bool { return len(l) > 4 && l[4:] == want })
}

func TestEHLOCapabilities(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	for _, want := range []string{"SIZE 10240000", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "SMTPUTF8", "STARTTLS"} {
		if !hasLine(c.last, want) {
			t.Errorf("before TLS: no %q in %q", want, c.last)
		}
	}
	if slices.ContainsFunc(c.last, func(l string) bool { return strings.Contains(l, "AUTH") }) {
		t.Errorf("AUTH advertised before TLS: %q", c.last)
	}
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	if !hasLine(c.last, "AUTH PLAIN LOGIN") || hasLine(c.last, "STARTTLS") {
		t.Errorf("after TLS: %q", c.last)
	}
	// Inside TLS too, SIZE is exactly the limit enforced.
	if !hasLine(c.last, "SIZE 10240000") || slices.ContainsFunc(c.last, func(l string) bool { return strings.Contains(l, "SIZE 10240001") }) {
		t.Errorf("after TLS: SIZE is not exactly 10240000: %q", c.last)
	}

	e465 := newEnv(t, Submissions, nil)
	c = e465.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	if !hasLine(c.last, "AUTH PLAIN LOGIN") || hasLine(c.last, "STARTTLS") || !hasLine(c.last, "SIZE 10240000") {
		t.Errorf("465: %q", c.last)
	}
}

func TestInboundWithoutTLSConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.TLSConfig = nil })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	if hasLine(c.last, "STARTTLS") {
		t.Errorf("STARTTLS offered without TLS config: %q", c.last)
	}
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "503 5.5.1 Error: authentication not enabled")
	if n := e.dir.authCalls.Load(); n != 0 {
		t.Errorf("credentials checked in clear text: %d calls", n)
	}
}

func TestNewServerValidates(t *testing.T) {
	t.Parallel()
	stls, _ := testTLS(t)
	ok := Options{Kind: Submission, Hostname: "mx.test", Directory: &fakeDir{}, Deliverer: &fakeDeliverer{}, TLSConfig: stls}
	if _, err := NewServer(ok); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mut := range map[string]func(*Options){
		"587 without TLS": func(o *Options) { o.TLSConfig = nil },
		"465 without TLS": func(o *Options) { o.Kind, o.TLSConfig = Submissions, nil },
		"no hostname":     func(o *Options) { o.Hostname = "" },
		"bad hostname":    func(o *Options) { o.Hostname = "mx test" },
		"no directory":    func(o *Options) { o.Directory = nil },
		"no deliverer":    func(o *Options) { o.Deliverer = nil },
		"bad kind":        func(o *Options) { o.Kind = 9 },
		"short lines":     func(o *Options) { o.MaxLineLength = 100 },
	} {
		o := ok
		mut(&o)
		if _, err := NewServer(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSubmissionPolicy walks the SPEC §3 rows of port 587 in order.
func TestSubmissionPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submission, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "530 5.7.0 Must issue a STARTTLS command first")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "530 5.7.0 Must issue a STARTTLS command first")
	if n := e.dir.authCalls.Load(); n != 0 {
		t.Fatalf("credentials sent in clear were checked (%d calls)", n)
	}
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "530 5.7.0 Authentication required")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "wrong"), "535 5.7.8")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	c.cmd("MAIL FROM:<bob@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "553 5.7.1 <bob@mailbox.example>: Sender address rejected: not owned by user alice")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<nobody@elsewhere.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "553 5.7.1 <nobody@elsewhere.example>: Sender address rejected: not owned by user alice")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<info@hosted.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: t\r\n\r\nbody\r\n.", "250 ")
	c.cmd("MAIL FROM:<>", "250 ") // authenticated null sender: allowed, see Mail
	c.cmd("RSET", "250 ")
	e.dir.setDown(true)
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "451 4.3.0")

	if q := e.queue.all(); len(q) != 1 || q[0].rcpts[0] != "someone@foreign.example" || q[0].from != "info@hosted.example" {
		t.Errorf("queued: %+v", q)
	}
	if n := e.deliv.copies(); n["bob@mailbox.example"] != 1 {
		t.Errorf("local copies: %v", n)
	}
	h := string(e.queue.all()[0].data)
	if !strings.Contains(h, "with ESMTPSA id") || !strings.Contains(h, "(using TLSv1.3 with cipher ") {
		t.Errorf("Received of a submitted message:\n%s", h)
	}
}

func TestSubmissionsWithGoSMTPClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submissions, nil)
	cl, err := gosmtp.DialTLS(e.addr, e.ctls)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Auth(sasl.NewLoginClient("alice", "secret")); err != nil {
		t.Fatalf("AUTH LOGIN: %v", err)
	}
	err = cl.SendMail("alice@mailbox.example", []string{"info@hosted.example", "bob@mailbox.example"},
		strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.deliv.copies(); n["alice@mailbox.example"] != 1 || n["bob@mailbox.example"] != 1 {
		t.Errorf("copies %v", n)
	}
}

// TestInboundAuthAfterSTARTTLS: port 25 accepts AUTH only after STARTTLS,
// and an authenticated client may relay (SPEC §1).
func TestInboundAuthAfterSTARTTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH LOGIN", "503 5.5.1 Error: authentication not enabled")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ") // port 25: no AUTH needed to send to us
	c.cmd("RCPT TO:<x@foreign.example>", "554 5.7.1")
	c.cmd("RSET", "250 ")
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	// AUTH inside a transaction would make bob's MAIL, accepted from
	// nobody, alice's relayed mail (RFC 4954 §4: 503).
	c.cmd("MAIL FROM:<bob@mailbox.example>", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "503 5.5.1")
	c.cmd("RCPT TO:<x@foreign.example>", "554 5.7.1")
	c.cmd("RSET", "250 ")
	c.cmd("AUTH LOGIN", "334 "+b64("Username:"))
	c.cmd(b64("alice"), "334 "+b64("Password:"))
	c.cmd(b64("secret"), "235 2.7.0 Authentication successful")
	c.cmd("MAIL FROM:<bob@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<x@foreign.example>", "553 5.7.1 <bob@mailbox.example>: Sender address rejected: not owned by user alice")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<x@foreign.example>", "250 ")
}

func TestAuthReplies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submissions, nil)
	for _, tc := range []struct{ name, line, want string }{
		{"directory down", "AUTH PLAIN " + plainAuth("broken", "x"), "454 4.7.0"},
		{"unknown mechanism", "AUTH CRAM-MD5", "504 5.5.4 Unsupported authentication mechanism"},
		{"PLAIN garbage", "AUTH PLAIN " + b64("no-nuls-here"), "501 5.5.2"},
		{"proxy authzid", "AUTH PLAIN " + b64("bob\x00alice\x00secret"), "535 5.7.8"},
		{"unknown user", "AUTH PLAIN " + plainAuth("nobody", "x"), "535 5.7.8"},
	} {
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		got := c.cmd(tc.line, tc.want)
		if !strings.Contains(got, "(id ") {
			t.Errorf("%s: no id in %q", tc.name, got)
		}
	}
	// Same reply text for a wrong password and an unknown user.
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	a := c.cmd("AUTH PLAIN "+plainAuth("alice", "bad"), "535 ")
	b := c.cmd("AUTH PLAIN "+plainAuth("nosuchuser", "bad"), "535 ")
	if strip(a) != strip(b) {
		t.Errorf("replies reveal whether the user exists: %q vs %q", a, b)
	}
}

// strip removes the id from a reply.
func strip(r string) string {
	if i := strings.Index(r, " (id "); i >= 0 {
		return r[:i]
	}
	return r
}

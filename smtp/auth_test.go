package smtp

import (
	"net/netip"
	"strings"
	"testing"

	"courriel/loginguard"
)

// TestAuthThrottle: 50 bad passwords in a row from one address are slowed
// down, then refused without asking the directory, then disconnected; the
// right password from another address still works at once.
func TestAuthThrottle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submissions, nil)
	lim := e.srv.o.AuthThrottle
	var c *raw
	codes := map[string]int{}
	for i := 0; i < 50; i++ {
		if c == nil {
			c = e.dialRaw(t)
			c.cmd("EHLO attacker.example", "250 ")
		}
		c.send("AUTH PLAIN " + plainAuth("alice", "guess") + "\r\n")
		r := c.reply()
		codes[r[:3]]++
		if strings.HasPrefix(r, "421 ") {
			if !c.closed() {
				t.Fatal("421 without closing")
			}
			c = nil
		}
	}
	if n := int(e.dir.authCalls.Load()); n != lim.IPLimit {
		t.Errorf("directory asked %d times, want %d (then the address is refused)", n, lim.IPLimit)
	}
	if codes["454"] == 0 || codes["421"] == 0 || codes["535"] == 0 {
		t.Errorf("replies %v: want 535s, then 454s, and 421 disconnects", codes)
	}
	if e.clock.totalSlept() < lim.BaseDelay {
		t.Errorf("no delay after repeated failures (slept %v)", e.clock.totalSlept())
	}

	// From another address, the right password works.
	before := e.clock.totalSlept()
	c = e.dialRawFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	if e.clock.totalSlept() != before {
		t.Error("a successful login was delayed")
	}
	// The attacker's address is still refused, even with the right password.
	c = e.dialRaw(t)
	c.cmd("EHLO attacker.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "454 4.7.0")
}

// The delays, the blocking and the bounds of the throttle itself are
// loginguard's tests; here, what SMTP AUTH makes of them.

func TestIPKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.1":               "192.0.2.1",
		"::ffff:192.0.2.1":        "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::ffff": "2001:db8:1:2::/64",
	} {
		if got := ipKey(mustAddr(in)); got != want {
			t.Errorf("ipKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestAuthGuardShared: servers given one Guard (cmd gives one to every SMTP
// listener and to IMAP) count failures together: guesses spread over two
// listeners get the address refused on both.
func TestAuthGuardShared(t *testing.T) {
	t.Parallel()
	guard := loginguard.New(loginguard.Options{BaseDelay: -1})
	share := func(o *Options) { o.Guard = guard }
	a, b := newEnv(t, Submission, share), newEnv(t, Submission, share)
	for i := 0; i < 10; i++ {
		e := a
		if i%2 == 1 {
			e = b
		}
		c := e.dialRaw(t)
		c.cmd("EHLO attacker.example", "250 ")
		c.startTLS(e.ctls)
		c.cmd("EHLO attacker.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("alice", "guess"), "535 ")
	}
	for _, e := range []*env{a, b} {
		c := e.dialRaw(t)
		c.cmd("EHLO attacker.example", "250 ")
		c.startTLS(e.ctls)
		c.cmd("EHLO attacker.example", "250 ")
		c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "454 4.7.0")
	}
}

// TestAuthBeforeEHLO: Postfix with smtpd_helo_required = no (the seed's)
// takes AUTH before HELO/EHLO; so does courriel, on every port, with the
// same rules as after it: on 465 a client may log in and send at once
// (Received then says "with SMTP", as Postfix's RFC 3848 A is for ESMTP
// only); on 25 and 587 nothing is looked at before STARTTLS.
func TestAuthBeforeEHLO(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submissions, nil)
	c := e.dialRaw(t)
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 2.7.0 Authentication successful")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: t\r\n\r\nbody\r\n.", "250 ")
	d := e.deliv.all()
	if len(d) != 1 || !strings.Contains(string(d[0].msg.Header), " with SMTP id ") {
		t.Fatalf("delivered %d: %+v", len(d), d)
	}
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "503 5.5.1")

	for k, want := range map[Kind]string{
		Inbound:    "503 5.5.1 Error: authentication not enabled",
		Submission: "530 5.7.0 Must issue a STARTTLS command first",
	} {
		e := newEnv(t, k, nil)
		c := e.dialRaw(t)
		c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), want)
		if n := e.dir.authCalls.Load(); n != 0 {
			t.Errorf("kind %v: credentials sent in clear were checked", k)
		}
	}
}

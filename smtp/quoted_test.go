package smtp

import (
	"slices"
	"strings"
	"testing"
)

// TestQuotedAtInSender: a sender's quoted local part may hold '@' (RFC
// 5321 §4.1.2; Postfix 3.7 answers 250): nothing is routed by a sender
// here. It is kept as given, for the local copies' Return-Path and the
// queue, and an authenticated client's is checked against its logins whole
// (reject_sender_login_mismatch), not cut at its first '@'. The bounds of
// every address still hold.
func TestQuotedAtInSender(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	for _, bad := range []string{
		`"` + strings.Repeat("x", 240) + `@"@example.net`, // a path of 257 quoted (no local-part limit)
		`"x@<y"@example.net`,
		"\"x@y\x00\"@example.net",
	} {
		c.cmd("MAIL FROM:<"+bad+">", "501 5.1.7")
	}
	c.cmd(`MAIL FROM:<"x@y"@Example.NET>`, "250 2.1.0")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 2.1.5")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: q\r\n\r\nbody\r\n.", "250 ")
	d := e.deliv.all()
	if len(d) != 1 || d[0].msg.From != `"x@y"@example.net` {
		t.Fatalf("delivered %d, from %q", len(d), d[0].msg.From)
	}
	c.cmd("MAIL FROM:<\"x@y\u2028\"@example.net> SMTPUTF8", "501 5.1.7")

	sub := newEnv(t, Submissions, nil)
	c = sub.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	c.cmd(`MAIL FROM:<"x@y"@hosted.example>`, "250 2.1.0")
	c.cmd("RCPT TO:<bob@mailbox.example>", `553 5.7.1 <"x@y"@hosted.example>: Sender address rejected: not owned by user alice`)
	c.cmd("RSET", "250 ")
	c.cmd(`MAIL FROM:<"x@y"@mailbox.example>`, "250 2.1.0")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 2.1.5")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: q\r\n\r\nbody\r\n.", "250 ")
	if d := sub.deliv.all(); len(d) != 1 || d[0].msg.From != `"x@y"@mailbox.example` {
		t.Fatalf("delivered %+v", d)
	}
}

// TestRoutedRecipientAuthenticated: a recipient whose local part holds a
// routing operator ("x@y"@z, a%b@z) is relayed for an authenticated client
// as Postfix's permit_sasl_authenticated does, quoted exactly as given;
// one in our domains is looked up as any other (unknown: 550 5.1.1). From
// an unauthenticated client it stays 554 5.7.1 (TestRelayBattery,
// TestQuotedLocalPart).
func TestRoutedRecipientAuthenticated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submissions, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 2.1.0")
	for _, tc := range []struct{ rcpt, want string }{
		{`"x@y"@Remote.example`, "250 2.1.5"},
		{`"a@b c"@remote.example`, "250 2.1.5"},
		{"a%b@remote.example", "250 2.1.5"},
		{"b!a@remote.example", "250 2.1.5"},
		{`"x@y"@mailbox.example`, "550 5.1.1"},
		{`"x@y"@[192.0.2.1]`, "554 5.7.1"},
		{`"` + strings.Repeat("x", 237) + `@"@remote.example`, "501 5.1.3"}, // a path of 257 quoted
		{`"x@y>"@remote.example`, "501 5.1.3"},
	} {
		c.cmd("RCPT TO:<"+tc.rcpt+">", tc.want)
	}
	c.cmd("DATA", "354 ")
	c.cmd("Subject: q\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.remote()
	if len(q) != 1 {
		t.Fatalf("%d messages queued", len(q))
	}
	want := []string{`"x@y"@remote.example`, `"a@b c"@remote.example`, "a%b@remote.example", "b!a@remote.example"}
	if !slices.Equal(q[0].rcpts, want) {
		t.Errorf("queued for %q, want %q", q[0].rcpts, want)
	}
}

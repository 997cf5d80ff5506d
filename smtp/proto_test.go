package smtp

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestBulkDataThroughServer: transactions pipelined back to back over one
// connection, with bodies full of dot lines and the whole stream written
// in random segments, so that every end of data falls at some point of a
// read. Each message arrives byte-identical (dot-unstuffed) and every
// reply is in step. Text pipelined with DATA is what
// smtpd_forbid_unauth_pipelining forbids: the check is off here.
func TestBulkDataThroughServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.AllowUnauthPipelining = true })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	rng := rand.New(rand.NewPCG(3, 4))
	lines := []string{".", "..", "...x", "x.", "", "plain text", ". ", "\t.", strings.Repeat("z", 900)}
	const n = 60
	var want []string
	var stream strings.Builder
	for i := range n {
		var body, wire strings.Builder
		fmt.Fprintf(&body, "Subject: %d\r\n\r\n", i)
		for range rng.IntN(200) {
			l := lines[rng.IntN(len(lines))]
			body.WriteString(l + "\r\n")
		}
		for _, l := range strings.SplitAfter(body.String(), "\r\n") {
			if strings.HasPrefix(l, ".") {
				wire.WriteString(".")
			}
			wire.WriteString(l)
		}
		want = append(want, body.String())
		fmt.Fprintf(&stream, "MAIL FROM:<s%d@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\n%s.\r\n", i, wire.String())
	}
	go func() {
		s := stream.String()
		for len(s) > 0 {
			k := min(len(s), 1+rng.IntN(3000))
			if _, err := io.WriteString(c.conn, s[:k]); err != nil {
				return
			}
			s = s[k:]
		}
	}()
	for i := range n {
		for _, r := range []string{"250 ", "250 ", "354 ", "250 "} {
			if got := c.reply(); !strings.HasPrefix(got, r) {
				t.Fatalf("message %d: want %q..., got %q", i, r, got)
			}
		}
	}
	c.cmd("NOOP", "250 ")
	got := e.deliv.all()
	if len(got) != n {
		t.Fatalf("%d messages delivered, want %d", len(got), n)
	}
	for i, d := range got {
		if string(d.body) != want[i] {
			t.Errorf("message %d: body differs (%d octets, want %d)", i, len(d.body), len(want[i]))
		}
	}
}

// TestStartTLSPipelinedPlaintextDropped: a command pipelined in clear
// after STARTTLS is dropped, not run inside TLS (CVE-2011-0411): the TLS
// session starts clean and the injected MAIL never happened.
func TestStartTLSPipelinedPlaintextDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.send("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
	c.expect("220 ")
	tc := tls.Client(c.conn, e.ctls)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS after a pipelined STARTTLS: %v", err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "503 5.5.1") // no MAIL in this session
	c.cmd("MAIL FROM:<s@example.org>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("STARTTLS", "502 5.5.1")
}

// TestBDATChunksAndCommands: NOOP between chunks is answered and the
// message goes on, so does it after MAIL and RCPT (refused, as by
// Postfix); another command ends the transfer, drops the message and
// runs; chunks with long lines and dot lines are taken as they are.
func TestBDATChunksAndCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	long := strings.Repeat("L", 200000)
	part1 := "Subject: chunks\r\n\r\n" + long
	part2 := "\r\n.\r\n..\r\n" + long + "\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	c.expect(fmt.Sprintf("250 2.0.0 Ok: %d bytes", len(part1))) // Postfix's words: the chunk's size
	c.cmd("NOOP", "250 2.0.0")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	queued := c.expect("250 2.0.0 OK: queued as ")
	d := e.deliv.all()
	if len(d) != 1 || string(d[0].body) != part1+part2 {
		t.Fatalf("BDAT message not stored as sent (%d messages)", len(d))
	}
	// The id the sender is told is the one in our Received field and logs.
	if id := strings.TrimPrefix(queued, "250 2.0.0 OK: queued as "); id != d[0].msg.ID || !strings.Contains(string(d[0].msg.Header), " id "+id) {
		t.Errorf("reply %q names another id than the message's %q", queued, d[0].msg.ID)
	}

	// MAIL and RCPT in the middle of a transfer are refused with
	// Postfix's words, and the message goes on.
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.send("BDAT 3\r\nabc")
	c.expect("250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "503 5.5.1 Error: nested MAIL command")
	c.cmd("RCPT TO:<alice@mailbox.example>", "503 5.5.1 Error: RCPT after BDAT")
	// VRFY, HELP and AUTH are answered as within any transaction (AUTH
	// refused: here not offered in clear), and the message goes on.
	c.cmd("VRFY bob", "252 ")
	c.cmd("HELP", "214 ")
	c.cmd("AUTH PLAIN", "503 5.5.1 Error: authentication not enabled") // port 25 in clear
	c.send("BDAT 12 LAST\r\nSubject: 2\r\n")
	c.expect("250 ")
	// RSET in the middle of a transfer drops the message.
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.send("BDAT 3\r\nabc")
	c.expect("250 ")
	c.cmd("RSET", "250 ")
	c.send("BDAT 3 LAST\r\nabc") // no transaction: refused, skipped
	c.expect("503 5.5.1")
	c.cmd("QUIT", "221 ")
	if n := e.deliv.copies(); n["bob@mailbox.example"] != 1 || n["alice@mailbox.example"] != 1 {
		t.Fatalf("copies %v", n)
	}
}

// TestParameters: what MAIL and RCPT parameters get (more refusals than
// MaxErrors allows one session by default).
func TestParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxErrors = 1000 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	for _, tc := range []struct{ line, want string }{
		{"MAIL FROM:<s@foreign.example> FOO=bar", "555 5.5.4"},
		{"MAIL FROM:<s@foreign.example> RET=PARTIAL", "501 5.5.4"},
		{"MAIL FROM:<s@foreign.example> REQUIRETLS", "555 5.5.4"},
		{"MAIL FROM:<s@foreign.example> BODY=BINARYMIME", "555 5.5.4"},
		{"MAIL FROM:<s@foreign.example> BODY=9BIT", "501 5.5.4"},
		{"MAIL FROM:<s@foreign.example> SIZE=x", "501 5.5.4"},
		{"MAIL FROM:<s@foreign.example>SIZE=1", "501 5.5.4"},
		{"MAIL FROM:<s@foreign.example> SIZE=99999999999999999999999", "501 5.5.4"},
		{"MAIL FROM:<s@foreign.example> SIZE=999999999999999999", "552 5.3.4"},
		{"MAIL FROM:s@foreign.example BODY=8BITMIME SMTPUTF8 AUTH=<> SIZE=100", "250 2.1.0"},
		{"RCPT TO:<alice@mailbox.example> NOTIFY=NEVER,DELAY", "501 5.5.4"},
		{"RCPT TO:<alice@mailbox.example> RRVS=2030-01-01T00:00:00Z", "555 5.5.4"},
		{"RCPT TO:<alice@mailbox.example> X=1", "555 5.5.4"},
		{"RCPT TO:<@a.example,@b.example:alice@mailbox.example>", "250 2.1.5"},
		{"DATA x", "501 5.5.4"},
		{"HELP", "214 "},
		{"VRFY alice", "252 "},
		{"EXPN list", "502 5.5.1"},
		{"XYZZY", "500 5.5.2"},
		{"", "500 5.5.2"},
		{"HELO", "501 5.5.2"},
		{"RSET", "250 "},
		{"AUTH", "503 5.5.1 Error: authentication not enabled"}, // before its syntax, as Postfix on 25 before TLS
	} {
		c.cmd(tc.line, tc.want)
	}
	c.cmd("HELO client.example", "250 mx.test")
	c.cmd("RCPT TO:<alice@mailbox.example>", "503 5.5.1") // HELO reset the transaction
}

// TestMailAuthParameter: MAIL's AUTH= (RFC 4954 §5) is trusted from
// nobody, so its value is not checked, as Postfix takes any: curl
// --mail-auth sends the address as typed, not as xtext, and a '+' in it
// must not refuse the message. Only a second AUTH= is refused, with
// Postfix's words.
func TestMailAuthParameter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind        Kind
		param, want string
	}{
		{Inbound, "AUTH=<>", "250 2.1.0"},
		{Inbound, "AUTH=sender@example.org", "250 2.1.0"},
		{Inbound, "AUTH=e+3Dmc2@example.com", "250 2.1.0"},    // RFC 4954's example
		{Inbound, "AUTH=<joe+list@example.org>", "250 2.1.0"}, // curl --mail-auth
		{Inbound, "AUTH=+zz", "250 2.1.0"},
		{Inbound, "AUTH=joe", "250 2.1.0"},
		{Inbound, "AUTH=<> AUTH=<>", "503 5.5.4 Error: multiple AUTH= options"},
		{Submissions, "AUTH=<alice+list@mailbox.example>", "250 2.1.0"},
		{Submissions, "AUTH=<> AUTH=x@y", "503 5.5.4 Error: multiple AUTH= options"},
	} {
		t.Run(tc.param, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.kind, nil)
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			from := "s@foreign.example"
			if tc.kind == Submissions {
				c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
				from = "alice@mailbox.example"
			}
			c.cmd("MAIL FROM:<"+from+"> "+tc.param, tc.want)
		})
	}
}

// TestProtocolErrorLimit: unknown commands count towards MaxErrors; the
// last one is answered, then 421 (Postfix's smtpd_hard_error_limit).
func TestProtocolErrorLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxErrors = 3 })
	c := e.dialRaw(t)
	c.cmd("FOO", "500 5.5.2")
	c.cmd("BAR", "500 5.5.2")
	c.cmd("BAZ", "500 5.5.2")
	c.expect("421 4.7.0 mx.test Error: too many errors")
	if !c.closed() {
		t.Fatal("open after too many errors")
	}

	// Every refused command counts, as in Postfix: out of sequence,
	// bad syntax, bad parameters.
	c = e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "503 5.5.1")
	c.cmd("MAIL FROM:nobody", "501 5.5.2")
	c.cmd("MAIL FROM:<s@foreign.example> FOO=bar", "555 5.5.4")
	c.expect("421 4.7.0")
	if !c.closed() {
		t.Fatal("open after too many refused commands")
	}
}

// TestPanicInSession: a bug that panics in one session answers that client
// 421 and closes its connection; the server goes on serving others.
func TestPanicInSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	e.dir.resolveHook = func(addr string) error {
		if addr == "bob@mailbox.example" {
			panic("test: a bug in the directory")
		}
		return nil
	}
	other := e.dialRaw(t)
	other.cmd("EHLO client.example", "250 ")
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "421 4.3.0")
	if !c.closed() {
		t.Fatal("open after a panic")
	}
	other.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	other.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
}

// TestNonSMTPCommand: an unknown command that is no SMTP at all (message
// text, a web or proxy request, a line that does not start with a letter)
// gets 221 2.7.0 and the connection closes, as Postfix 3.9's defaults
// (is_header, smtpd_forbidden_commands); other unknown commands 500. The
// text of a refused DATA, sent after the server checked the pipelining,
// so stops at its first header line.
func TestNonSMTPCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	for _, line := range []string{"Subject: smuggled", "X-Mailer:x", "GET / HTTP/1.1", "connect mx.test:25 HTTP/1.0",
		"POST /", "<html>", "\x16\x03\x01", ". "} {
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd(line, "221 2.7.0 Error: I can break rules, too. Goodbye.")
		if !c.closed() {
			t.Errorf("%q: connection still open", line)
		}
	}
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("FOO bar:baz", "500 5.5.2")
	c.cmd("MAIL FROM:<s@example.org>", "250 ")
	c.cmd("RCPT TO:<nobody@mailbox.example>", "550 ")
	c.cmd("DATA", "554 5.5.1 Error: no valid recipients")
	c.cmd("MAIL FROM:<evil@example.org>", "503 5.5.1")
	c.cmd("From: evil@example.org", "221 2.7.0")
	if !c.closed() {
		t.Error("connection still open after message text")
	}
}

// TestNoValidRecipients: a pipelining client sends DATA (or BDAT) before
// it has seen its RCPTs refused (RFC 2920 §3.1); Postfix answers it 554
// 5.5.1 "Error: no valid recipients" and counts it as an error, as every
// refused command (smtpd_hard_error_limit). Nothing is stored, and the
// connection stays in step: the next command is read as one.
func TestNoValidRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxErrors = 4 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<nobody@mailbox.example>\r\nRCPT TO:<none@mailbox.example>\r\nDATA\r\n")
	for _, r := range []string{"250 ", "550 5.1.1", "550 5.1.1", "554 5.5.1 Error: no valid recipients"} {
		c.expect(r)
	}
	c.cmd("NOOP", "250 ")
	c.send("BDAT 5 LAST\r\nhello")
	c.expect("554 5.5.1 Error: no valid recipients")
	c.expect("421 4.7.0") // the fourth refusal
	if !c.closed() {
		t.Fatal("open after too many errors")
	}
	if n := len(e.deliv.all()) + len(e.queue.all()); n != 0 {
		t.Errorf("%d messages stored or queued", n)
	}
}

package smtp

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/smtp/wire"
)

// writeLog records each Write the server makes on accepted connections.
type writeLog struct {
	mu     sync.Mutex
	writes []string
}

func (w *writeLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.writes
	w.writes = nil
	return out
}

type loggingListener struct {
	net.Listener
	log *writeLog
}

func (l loggingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return loggingConn{c, l.log}, nil
}

type loggingConn struct {
	net.Conn
	log *writeLog
}

func (c loggingConn) Write(p []byte) (int, error) {
	c.log.mu.Lock()
	c.log.writes = append(c.log.writes, string(p))
	c.log.mu.Unlock()
	return c.Conn.Write(p)
}

// TestPipeliningGroupsReplies: the replies to a pipelined MAIL, RCPT, DATA
// leave in one write (RFC 2920 §3.2), as Postfix's smtpd sends them; a
// client that waits for each reply still gets each one at once; a partial
// pipelined line does not hold back the reply the client waits for.
func TestPipeliningGroupsReplies(t *testing.T) {
	t.Parallel()
	wl := &writeLog{}
	// Message text pipelined with DATA, a partial line after NOOP: off
	// the check of TestForbidUnauthPipelining, to see the replies.
	allow := func(o *Options) { o.AllowUnauthPipelining = true }
	e := newEnvOn(t, Inbound, allow, func(ln net.Listener) net.Listener { return loggingListener{ln, wl} })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	wl.take()

	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	if w := wl.take(); len(w) != 1 || !strings.HasPrefix(w[0], "250 ") || strings.Count(w[0], "\r\n") != 3 {
		t.Errorf("pipelined MAIL, RCPT, DATA answered in %d writes %q, want 1 with three replies", len(w), w)
	}
	c.send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 ")
	wl.take()

	// The end of data with the next transaction behind it, in one segment
	// (the message is read in bulk, up to its end exactly): the 250 for the
	// message waits for the replies to the pipelined commands.
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\n")
	for _, r := range []string{"250 ", "250 ", "354 "} {
		c.expect(r)
	}
	wl.take()
	c.send("Subject: y\r\n\r\n" + strings.Repeat("line\r\n", 100) + ".\r\nMAIL FROM:<t@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\n")
	for _, r := range []string{"250 ", "250 ", "250 ", "354 "} {
		c.expect(r)
	}
	if w := wl.take(); len(w) != 1 || strings.Count(w[0], "\r\n") != 4 {
		t.Errorf("end of data pipelined with MAIL, RCPT, DATA answered in %d writes %q, want 1 with four replies", len(w), w)
	}
	c.send(".\r\n")
	c.expect("250 ")
	wl.take()

	for _, cmd := range []string{"NOOP", "RSET", "NOOP"} {
		c.cmd(cmd, "250 ")
	}
	if w := wl.take(); len(w) != 3 {
		t.Errorf("3 commands one at a time answered in %d writes %q", len(w), w)
	}

	// "NO" is the start of a line the client has not finished: the reply to
	// the first NOOP must not wait for it.
	c.send("NOOP\r\nNO")
	c.expect("250 ")
	c.send("OP\r\n")
	c.expect("250 ")
	if len(e.deliv.all()) != 3 {
		t.Errorf("%d messages delivered, want 3", len(e.deliv.all()))
	}
}

// TestStartTLSInjection: plaintext pipelined after STARTTLS (CVE-2011-0411
// style command injection) is never run as a command, whether in clear or
// inside the TLS session.
func TestStartTLSInjection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.send("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
	c.expect("220 ")
	// The injected bytes reach the TLS handshake, which fails; the server
	// goes on in clear, where the injected command must not have run.
	c.send("RCPT TO:<alice@mailbox.example>\r\nQUIT\r\n")
	var all []string
	for range 10 {
		line := c.reply()
		if line == "" {
			break
		}
		all = append(all, c.last...)
		if strings.HasPrefix(line, "221") {
			break
		}
	}
	for _, l := range all {
		if strings.HasPrefix(l, "250") {
			t.Errorf("a command injected after STARTTLS was answered: %q", all)
		}
	}
}

// TestForbidUnauthPipelining: Postfix 3.9's smtpd_forbid_unauth_pipelining.
// What a client sends past a command that must end a pipelined group
// (DATA, NOOP, EHLO...), or any pipelined command before EHLO or after
// HELO, gets 554 5.5.0 before that command runs and the connection closes;
// nothing is stored, and the input is logged. The reviewer's smuggling: a
// refused RCPT, then DATA with a message whose text is a second
// transaction for another recipient.
func TestForbidUnauthPipelining(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, hello, send string
		replies           []string
		logged            string // in the log line's input
	}{
		{"smuggled after a refused RCPT", "EHLO client.example",
			"MAIL FROM:<s@example.org>\r\nRCPT TO:<nobody@mailbox.example>\r\nDATA\r\n" +
				"MAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n",
			[]string{"250 ", "550 5.1.1", "554 5.5.0 Error: SMTP protocol synchronization"},
			`after=DATA input="MAIL FROM:<evil@example.org>\\r\\nRCPT TO:<alice`},
		{"text with DATA", "EHLO client.example",
			"MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\nSubject: early\r\n\r\nx\r\n.\r\n",
			[]string{"250 ", "250 ", "554 5.5.0"}, `after=DATA input="Subject: early`},
		{"after NOOP", "EHLO client.example", "NOOP\r\nMAIL FROM:<s@example.org>\r\n",
			[]string{"554 5.5.0"}, `after=NOOP`},
		{"after EHLO", "", "EHLO client.example\r\nMAIL FROM:<s@example.org>\r\n",
			[]string{"554 5.5.0"}, `after=EHLO`},
		{"after HELO: no pipelining at all", "HELO client.example",
			"MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\n",
			[]string{"554 5.5.0"}, `after=MAIL input="RCPT TO:<alice@mailbox.example>\\r\\n"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &lockedLog{}
			e := newEnv(t, Inbound, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
			c := e.dialRaw(t)
			if tc.hello != "" {
				c.cmd(tc.hello, "250 ")
			}
			c.send(tc.send)
			for _, r := range tc.replies {
				c.expect(r)
			}
			if !c.closed() {
				t.Error("connection still open after 554")
			}
			if n := len(e.deliv.all()); n != 0 {
				t.Errorf("%d messages stored", n)
			}
			if l := logs.String(); !strings.Contains(l, "improper command pipelining") || !strings.Contains(l, tc.logged) {
				t.Errorf("log %q lacks %q", l, tc.logged)
			}
		})
	}
}

// TestPipeliningAllowed: after EHLO, MAIL, RCPT, RSET and BDAT (RFC 2920,
// RFC 3030: a chunk follows its command) may be pipelined, and DATA may end
// a group; with AllowUnauthPipelining (smtpd_forbid_unauth_pipelining =
// no), text pipelined with DATA is only logged, once.
func TestPipeliningAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\n")
	for _, r := range []string{"250 ", "250 ", "354 "} {
		c.expect(r)
	}
	c.send("Subject: a\r\n\r\nx\r\n.\r\n")
	c.expect("250 ")
	c.send("RSET\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<nobody@mailbox.example>\r\nRCPT TO:<alice@mailbox.example>\r\n" +
		"BDAT 12\r\nSubject: b\r\nBDAT 5 LAST\r\n\r\nx\r\nRSET\r\nQUIT\r\n")
	for _, r := range []string{"250 ", "250 ", "550 ", "250 ", "250 ", "250 2.0.0 OK", "250 ", "221 "} {
		c.expect(r)
	}
	if n := len(e.deliv.all()); n != 2 {
		t.Errorf("%d messages stored, want 2", n)
	}

	logs := &lockedLog{}
	e = newEnv(t, Inbound, func(o *Options) {
		o.AllowUnauthPipelining = true
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	c = e.dialRaw(t)
	c.cmd("HELO client.example", "250 ")
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\nSubject: c\r\n\r\nx\r\n.\r\nQUIT\r\n")
	for _, r := range []string{"250 ", "250 ", "354 ", "250 ", "221 "} {
		c.expect(r)
	}
	if n := len(e.deliv.all()); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
	if l := logs.String(); strings.Count(l, "improper command pipelining") != 1 || !strings.Contains(l, "after=MAIL") {
		t.Errorf("want one line for the first violation (MAIL after HELO), log %q", l)
	}
}

// pregreetListener hands a connection to the server only once the client
// has sent something, so the server finds input before its greeting.
type pregreetListener struct{ net.Listener }

func (l pregreetListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var p [1]byte
	for i := 0; wire.Peek(c, p[:]) == 0 && i < 10000; i++ {
		time.Sleep(time.Millisecond) // polled, for a client that never sends at most 10 s
	}
	return c, nil
}

// TestForbidPregreet: a client that speaks before the greeting gets
// 554 5.5.0 instead of it, and is disconnected (Postfix 3.9, not on 465).
func TestForbidPregreet(t *testing.T) {
	t.Parallel()
	logs := &lockedLog{}
	e := newEnvOn(t, Inbound, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) },
		func(ln net.Listener) net.Listener { return pregreetListener{ln} })
	c := e.dialNoGreet(t)
	c.send("EHLO early.example\r\n")
	c.expect("554 5.5.0 Error: SMTP protocol synchronization")
	if !c.closed() {
		t.Error("connection still open")
	}
	if l := logs.String(); !strings.Contains(l, `after=CONNECT input="EHLO early.example\\r\\n"`) {
		t.Errorf("log %q", l)
	}
}

// batchConn holds what is written while hold is set, until flush: two TLS
// records then leave in one write.
type batchConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	if b.hold {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) flush() error {
	b.hold = false
	_, err := b.Conn.Write(b.buf)
	b.buf = nil
	return err
}

// TestForbidUnauthPipeliningInTLS: inside TLS, message text sent with DATA
// in a record of its own is found too, whether crypto/tls already read it
// from the socket or not.
func TestForbidUnauthPipeliningInTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	bc := &batchConn{Conn: c.conn}
	c.conn = bc
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	bc.hold = true
	c.send("MAIL FROM:<s@example.org>\r\nRCPT TO:<nobody@mailbox.example>\r\nDATA\r\n")
	c.send("MAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n")
	if err := bc.flush(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"250 ", "550 5.1.1", "554 5.5.0"} {
		c.expect(r)
	}
	if !c.closed() {
		t.Error("connection still open after 554")
	}
	if n := len(e.deliv.all()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

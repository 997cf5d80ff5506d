package smtp

import (
	"net"
	"strings"
	"sync"
	"testing"
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
	e := newEnvOn(t, Inbound, nil, func(ln net.Listener) net.Listener { return loggingListener{ln, wl} })
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

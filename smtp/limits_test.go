package smtp

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPipeliningFlood: a whole transaction with 1500 RCPTs in one write;
// every command gets its reply in order, the limit applies, and the server
// keeps up while the client reads slowly. The message text comes with
// DATA, which smtpd_forbid_unauth_pipelining forbids: turned off here.
func TestPipeliningFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.AllowUnauthPipelining = true })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	var b strings.Builder
	b.WriteString("MAIL FROM:<s@foreign.example>\r\n")
	for range 1500 {
		b.WriteString("RCPT TO:<alice@mailbox.example>\r\n")
	}
	b.WriteString("DATA\r\nSubject: flood\r\n\r\nx\r\n.\r\nQUIT\r\n")
	go io.WriteString(c.conn, b.String())
	c.expect("250 ")
	for i := range 1500 {
		want := "250 "
		if i >= DefaultMaxRecipients {
			want = "452 4.5.3"
		}
		c.expect(want)
	}
	c.expect("354 ")
	c.expect("250 ")
	c.expect("221 ")
	if n := e.deliv.copies(); n["alice@mailbox.example"] != 1 {
		t.Fatalf("copies %v", n)
	}
}

// TestSlowLoris: a client trickling a command a byte at a time is dropped
// when the command deadline passes, however steadily it sends.
func TestSlowLoris(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.ReadTimeout = 300 * time.Millisecond })
	c := e.dialRaw(t)
	line := "EHLO " + strings.Repeat("x", 200) + "\r\n"
	dropped := false
	for i := 0; i < len(line); i++ {
		if _, err := c.conn.Write([]byte{line[i]}); err != nil {
			dropped = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// 200 bytes at 20 ms each take 4 s, far past the 300 ms deadline.
	r := c.reply()
	if !dropped && !strings.HasPrefix(r, "421 4.4.2") {
		t.Fatalf("trickling client not dropped: %q", r)
	}
	if !c.closed() {
		t.Fatal("connection still open")
	}
}

// TestSlowData: during DATA the deadline only moves per 64 KiB received.
func TestSlowData(t *testing.T) {
	t.Parallel()
	// The commands before DATA must each come within ReadTimeout, however
	// slow the run; the trickle (a byte every 20 ms for 10 s) outlasts it
	// five times.
	e := newEnv(t, Inbound, func(o *Options) { o.ReadTimeout = 2 * time.Second })
	c := startData(t, e)
	var err error
	for i := 0; i < 500 && err == nil; i++ {
		_, err = c.conn.Write([]byte("x"))
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("trickling DATA not dropped while it trickled: the deadline moved with each byte")
	}
	if !c.closed() {
		t.Fatal("trickling DATA not dropped")
	}
	if len(e.deliv.all()) != 0 {
		t.Fatal("partial message stored")
	}
}

func TestConnLimitPerIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxConnsPerIP = 2 })
	a := e.dialRaw(t)
	b := e.dialRaw(t)
	c := e.dialNoGreet(t)
	if r := c.reply(); !strings.HasPrefix(r, "421 4.7.0") {
		t.Fatalf("third connection: %q", r)
	}
	if !c.closed() {
		t.Fatal("third connection left open")
	}
	// Another address is not affected.
	d := e.dialRawFrom(t, "127.0.0.2")
	d.cmd("NOOP", "250 ")
	a.cmd("QUIT", "221 ")
	a.closed()
	// Once one is gone a new one is welcome (the count drops when the
	// server has closed its side, so poll a little).
	waitFor(t, "the closed connection's slot to be freed", slotFreed, func() bool {
		return strings.HasPrefix(e.dialNoGreet(t).reply(), "220 ")
	})
	b.cmd("NOOP", "250 ")
}

// slotFreed bounds the wait for a closed connection's slot: the server
// frees it just after its close, in milliseconds; only a slot never
// freed takes this long.
const slotFreed = 30 * time.Second

// TestShutdown: idle clients get 421 4.3.2 at once, a transaction in
// flight finishes with 250, then a 421 4.3.2, its connection closes and
// Shutdown returns.
func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	e.deliv.block, e.deliv.entered = make(chan struct{}), make(chan struct{}, 1)
	busy := startData(t, e)
	idle := e.dialRaw(t)
	idle.cmd("EHLO client.example", "250 ")
	busy.send("Subject: in flight\r\n\r\nx\r\n.\r\n")
	<-e.deliv.entered // the message is being stored

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	idle.expect("421 4.3.2")
	if !idle.closed() {
		t.Error("idle connection left open")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a transaction in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(e.deliv.block)
	busy.expect("250 ")
	busy.expect("421 4.3.2") // told why the connection closes (RFC 5321 §3.8)
	if !busy.closed() {
		t.Error("connection open after its transaction during shutdown")
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(e.deliv.all()) != 1 {
		t.Fatal("message in flight lost")
	}
	if c, err := net.Dial("tcp", e.addr); err == nil {
		c.Close()
		t.Error("still accepting after Shutdown")
	}
}

// TestShutdownDeadline: a transaction that does not finish in time is cut.
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	busy := startData(t, e) // never sends the message
	_ = busy
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with an expired context and a transaction in flight returned nil")
	}
	if !busy.closed() {
		t.Fatal("connection left open after the deadline")
	}
}

func TestMaxCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxCommands = 10 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	var last string
	for i := 0; i < 20; i++ {
		c.send("RSET\r\nMAIL FROM:<s@foreign.example>\r\n")
		c.reply()
		last = c.reply()
		if strings.HasPrefix(last, "421") {
			break
		}
	}
	if !strings.HasPrefix(last, "421 4.7.0") || !c.closed() {
		t.Fatalf("command limit not enforced: %q", last)
	}
}

// TestMaxCommandsCountsFromLastMessage: an MTA delivering message after
// message on one connection is never cut off; the limit bounds the commands
// between two accepted messages.
func TestMaxCommandsCountsFromLastMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxCommands = 10 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	for i := range 20 { // 60 commands
		c.cmd("MAIL FROM:<s@example.org>", "250 ")
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
		c.cmd("DATA", "354 ")
		c.send(fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n.\r\n", i))
		c.expect("250 ")
	}
	if n := len(e.deliv.all()); n != 20 {
		t.Fatalf("%d messages delivered, want 20", n)
	}
	for range 5 { // RSET counts, as in Postfix's smtpd_junk_command_limit
		c.cmd("MAIL FROM:<s@example.org>", "250 ")
		c.cmd("RSET", "250 ")
	}
	c.send("MAIL FROM:<s@example.org>\r\n")
	if last := c.reply(); !strings.HasPrefix(last, "421 4.7.0") || !c.closed() {
		t.Fatalf("11th command without a message: %q, want 421 and close", last)
	}
}

// TestSpareGoroutine: the goroutine of a connection that ended waits for
// the next one and serves it (one spare, however many connections came
// one after the other); Shutdown lets it go.
func TestSpareGoroutine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	waitSpare := func(want int32) {
		t.Helper()
		for i := 0; e.srv.spare.Load() != want; i++ {
			if i > 1000 {
				t.Fatalf("%d spare goroutines, want %d", e.srv.spare.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for range 3 {
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("QUIT", "221 ")
		c.closed()
		waitSpare(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitSpare(0)
}

// A TLS handshake gets 30 s (as on IMAP), not the 5-minute command
// timeout: silent connections on 465 are not held for minutes.
func TestHandshakeTimeout(t *testing.T) {
	for _, c := range []struct{ read, want time.Duration }{
		{5 * time.Minute, 30 * time.Second}, {10 * time.Second, 10 * time.Second},
	} {
		if got := handshakeTimeout(c.read); got != c.want {
			t.Errorf("handshakeTimeout(%v) = %v, want %v", c.read, got, c.want)
		}
	}
}

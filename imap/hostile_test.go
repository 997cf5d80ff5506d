package imap

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// rawConn is a line-oriented IMAP connection for protocol-level tests.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string, useTLS bool) *rawConn {
	t.Helper()
	var c net.Conn
	var err error
	if useTLS {
		c, err = tls.Dial("tcp", addr, clientTLS())
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	r.line() // greeting
	return r
}

func (r *rawConn) line() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (so far %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// cmd sends a command and returns all lines up to the tagged reply.
func (r *rawConn) cmd(tag, s string) []string {
	r.t.Helper()
	r.send(tag + " " + s + "\r\n")
	return r.until(tag)
}

func (r *rawConn) until(tag string) []string {
	var out []string
	for {
		l := r.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

func last(ls []string) string { return ls[len(ls)-1] }

func TestPlainListenerRequiresSTARTTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := dialRaw(t, e.plain, false)
	caps := strings.Join(r.cmd("a", "CAPABILITY"), "\n")
	if !strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "AUTH=") {
		t.Errorf("plain CAPABILITY = %q", caps)
	}
	if got := last(r.cmd("b", "LOGIN alice secret")); !strings.HasPrefix(got, "b NO") {
		t.Errorf("LOGIN before STARTTLS: %q", got)
	}
	if got := last(r.cmd("c", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")); !strings.HasPrefix(got, "c NO") {
		t.Errorf("AUTHENTICATE before STARTTLS: %q", got)
	}
	c, err := imapclient.DialStartTLS(e.plain, &imapclient.Options{TLSConfig: clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Errorf("LOGIN after STARTTLS: %v", err)
	}
}

func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.AppendLimit = 1 << 20 })
	r := dialRaw(t, e.addr, true)

	// NUL inside a literal login name never logs in.
	r.send("n1 LOGIN {9}\r\n")
	r.line() // continuation
	r.send("alice\x00xyz {6}\r\n")
	r.line()
	r.send("secret\r\n")
	if got := last(r.until("n1")); !strings.Contains(got, "AUTHENTICATIONFAILED") {
		t.Errorf("NUL login: %q", got)
	}
	// AUTHENTICATE PLAIN with an authorization identity is refused.
	if got := last(r.cmd("n2", "AUTHENTICATE PLAIN Ym9iAGFsaWNlAHNlY3JldA==")); !strings.HasPrefix(got, "n2 NO") {
		t.Errorf("PLAIN as another identity: %q", got)
	}
	if got := last(r.cmd("l", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==")); !strings.HasPrefix(got, "l OK") {
		t.Fatalf("AUTHENTICATE PLAIN: %q", got)
	}
	if got := last(r.cmd("s", "SELECT INBOX")); !strings.HasPrefix(got, "s OK") {
		t.Fatalf("SELECT: %q", got)
	}
	// A literal beyond the APPEND limit is refused before it is sent.
	r.send("big APPEND INBOX {99999999999}\r\n")
	if got := r.line(); !strings.Contains(got, "TOOBIG") && !strings.HasPrefix(got, "big NO") {
		t.Errorf("oversized APPEND: %q", got)
	}
	// Huge sequence sets cost no more than the mailbox.
	set := strings.Repeat("1:4294967295,", 2000) + "*"
	start := time.Now()
	if got := last(r.cmd("f", "UID FETCH "+set+" (FLAGS)")); !strings.HasPrefix(got, "f OK") {
		t.Errorf("huge set: %q", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("huge set took %v", d)
	}
	// Deeply nested search criteria are answered, not crashed on.
	deep := strings.Repeat("(", 5000) + "ALL" + strings.Repeat(")", 5000)
	r.send("d SEARCH " + deep + "\r\n")
	// The server answers BAD (too long / too deep) or closes; either way a
	// new connection still works.
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r.br.ReadString('\n')
	r2 := dialRaw(t, e.addr, true)
	if got := last(r2.cmd("a", "CAPABILITY")); !strings.HasPrefix(got, "a OK") {
		t.Errorf("server unusable after hostile input: %q", got)
	}
	nest := strings.Repeat("NOT ", 100) + "ALL"
	if got := last(r.cmdSafe("d2", "SEARCH "+nest)); got != "" && !strings.HasPrefix(got, "d2 ") {
		t.Errorf("deep NOT: %q", got)
	}
}

// cmdSafe is cmd on a connection the server may have closed.
func (r *rawConn) cmdSafe(tag, s string) []string {
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.c.Write([]byte(tag + " " + s + "\r\n")); err != nil {
		return []string{""}
	}
	var out []string
	for {
		l, err := r.br.ReadString('\n')
		if err != nil {
			return append(out, "")
		}
		l = strings.TrimRight(l, "\r\n")
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

func TestFailedLoginsSlowDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.FailDelay = 50 * time.Millisecond; o.MaxFailDelay = 200 * time.Millisecond })
	ip := netip.MustParseAddr("192.0.2.1")
	var delays []time.Duration
	for i := 0; i < 6; i++ {
		delays = append(delays, e.srv.guard.Failed("mallory", ip))
	}
	// SMTP AUTH's rules: two failures answered at once, then doubling.
	want := []time.Duration{0, 0, 50, 100, 200, 200}
	for i := range want {
		if delays[i] != want[i]*time.Millisecond {
			t.Errorf("delays = %v, want %v ms", delays, want)
			break
		}
	}
	// The same login from elsewhere is slowed too: guessing is per name.
	if d := e.srv.guard.Delay("mallory", netip.MustParseAddr("198.51.100.7")); d != 200*time.Millisecond {
		t.Errorf("mallory from another address waits %v", d)
	}
}

func TestConnectionsPerIPLimited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.MaxConnsPerIP = 2 })
	dialRaw(t, e.addr, true)
	dialRaw(t, e.addr, true)
	c, err := tls.Dial("tcp", e.addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(l, "* BYE") {
		t.Errorf("third connection greeting: %q", l)
	}
}

// A client that logs out and at once logs in again finds its slot free:
// the LOGOUT's OK comes after the slot is given back, not once the
// session has closed its folder.
func TestLogoutFreesTheUserSlotFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.MaxUserIPConns = 1 })
	e.deliver("1700000001.M1P1.test", testMessage(1, "bob@example.org", "slot"))
	for i := range 60 {
		r := dialRaw(t, e.addr, true)
		if got := last(r.cmd("l", "LOGIN alice secret")); !strings.HasPrefix(got, "l OK") {
			t.Fatalf("login %d right after the previous LOGOUT: %q", i, got)
		}
		r.cmd("s", "SELECT INBOX")
		r.cmd("f", "FETCH 1 (FLAGS)")
		if got := last(r.cmd("o", "LOGOUT")); got != "o OK Logout completed" {
			t.Fatalf("LOGOUT: %q", got)
		}
		r.c.Close()
	}
}

// TestLoginTimeoutFromConnect: a client that has not logged in
// LoginTimeout after it connected gets a BYE and is closed, whatever it
// sends meanwhile: a command trickled one byte at a time (QA: one byte
// every 20 s held an IMAPS connection 170 s with 9 bytes, each byte
// resetting the 30 s timeout), commands that keep it busy, or a STARTTLS
// on the way. A session that logged in is not concerned.
func TestLoginTimeoutFromConnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.LoginTimeout = time.Second })
	const tick = 100 * time.Millisecond
	for _, c := range []struct {
		name     string
		starttls bool
		next     func(i int) string // what the client sends at tick i
	}{
		{"one byte at a time", false, func(i int) string { return string("a LOGIN alice "[min(i, 13)]) }},
		{"a NOOP at a time", false, func(i int) string { return fmt.Sprintf("n%d NOOP\r\n", i) }},
		{"after STARTTLS", true, func(i int) string { return "x" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var r *rawConn
			if c.starttls {
				r = dialRaw(t, e.plain, false)
				if got := last(r.cmd("t", "STARTTLS")); !strings.HasPrefix(got, "t OK") {
					t.Fatalf("STARTTLS: %q", got)
				}
				tc := tls.Client(r.c, clientTLS())
				r.c, r.br = tc, bufio.NewReader(tc)
			} else {
				r = dialRaw(t, e.addr, true)
			}
			lines := make(chan string, 100)
			go func() {
				defer close(lines)
				for {
					r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
					l, err := r.br.ReadString('\n')
					if err != nil {
						return
					}
					lines <- strings.TrimRight(l, "\r\n")
				}
			}()
			var bye string     // the BYE
			var after []string // lines after it
			take := func(l string) {
				switch {
				case bye != "":
					after = append(after, l)
				case strings.HasPrefix(l, "* BYE"):
					bye = l
				}
			}
			// 100 ticks are ten LoginTimeouts: the BYE comes long before,
			// or never.
		send:
			for i := 0; i < 100 && bye == ""; i++ {
				r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := r.c.Write([]byte(c.next(i))); err != nil {
					break // closed
				}
				time.Sleep(tick)
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							break send
						}
						take(l)
						continue
					default:
					}
					break
				}
			}
			if bye == "" {
				r.c.Close() // not closed by the server: the reader stops
			}
			for l := range lines {
				take(l)
			}
			if bye != "* BYE Disconnected for inactivity." || len(after) > 0 {
				t.Errorf("BYE %q, then %q; want Dovecot's BYE for a client not logged in within LoginTimeout, then the end", bye, after)
			}
		})
	}
	t.Run("logged in", func(t *testing.T) {
		t.Parallel()
		r := loggedIn(t, e)
		for i := 0; i < 15; i++ {
			time.Sleep(tick)
			if got := last(r.cmd("n", "NOOP")); got != "n OK NOOP completed" {
				t.Fatalf("NOOP %d after login: %q", i, got)
			}
		}
	})
}

package imap

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// pipeServer is a server inside a synctest bubble: its sessions are
// served over net.Pipe (a TCP listener's wait would never let the
// bubble's clock move), without inotify, with the given options.
type pipeServer struct {
	t       *testing.T
	srv     *Server
	maildir string
}

func newPipeServer(t *testing.T, base string, mutate ...func(*Options)) *pipeServer {
	t.Helper()
	auth := &fakeAuth{}
	maildir := auth.add(base, "alice", "secret")
	o := Options{
		Auth:      auth,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		IdleCheck: time.Hour, PollOnly: true,
	}
	for _, m := range mutate {
		m(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &pipeServer{t: t, srv: srv, maildir: maildir}
}

// dial serves a new session, counted as TLS (LOGIN allowed), and logs
// it in.
func (p *pipeServer) dial() *rawConn {
	p.t.Helper()
	client, server := net.Pipe()
	p.t.Cleanup(func() { client.Close() })
	se := p.srv.admit(server, true)
	if se == nil {
		p.t.Fatal("session refused")
	}
	go se.serve()
	r := &rawConn{t: p.t, c: client, br: bufio.NewReader(client)}
	r.line() // greeting
	if got := last(r.cmd("l", "LOGIN alice secret")); !strings.HasPrefix(got, "l OK") {
		p.t.Fatalf("LOGIN: %q", got)
	}
	return r
}

// checkUpdates follows the untagged EXISTS and EXPUNGE responses from a
// view of n messages, failing at a sequence number past the count, and
// returns the count the client ends with.
func checkUpdates(t *testing.T, n int, lines []string) int {
	t.Helper()
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "*" {
			continue
		}
		num, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		switch f[2] {
		case "EXISTS":
			if num < n {
				t.Errorf("%q: EXISTS below the %d messages the client holds", l, n)
			}
			n = num
		case "EXPUNGE", "FETCH":
			if num < 1 || num > n {
				t.Errorf("%q: sequence number past the %d messages", l, n)
			}
			if f[2] == "EXPUNGE" {
				n--
			}
		}
	}
	return n
}

// TestIdleBatchesUpdates: another session appends a message, flags one
// \Deleted and expunges it within a few milliseconds; the session in
// IDLE hears of it as NOOP would tell it, in one batch after the delay:
// the EXPUNGE first, then EXISTS and RECENT with the count after it,
// nothing about the message gone. Sent one by one as they came, mutt
// miscounted and asked for messages that did not exist.
func TestIdleBatchesUpdates(t *testing.T) {
	base := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		p := newPipeServer(t, base)
		for i := 1; i <= 5; i++ {
			writeMaildirMsg(t, p.maildir, "new", "170000000"+strconv.Itoa(i)+".M1P1.test", testMessage(i, "a@example.org", "old"))
		}
		idler, other, noop := p.dial(), p.dial(), p.dial()
		idler.cmd("s", "SELECT INBOX") // holds the five as \Recent
		other.cmd("s", "SELECT INBOX")
		noop.cmd("s", "SELECT INBOX")
		idler.send("i IDLE\r\n")
		if got := idler.line(); got != "+ idling" {
			t.Fatalf("IDLE: %q", got)
		}
		start := time.Now()
		msg := testMessage(6, "b@example.org", "new")
		other.send("a APPEND INBOX {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
		if got := last(other.until("a")); !strings.HasPrefix(got, "a OK") {
			t.Fatalf("APPEND: %q", got)
		}
		other.cmd("f", `STORE 2 +FLAGS (\Deleted)`)
		if got := last(other.cmd("e", "EXPUNGE")); !strings.HasPrefix(got, "e OK") {
			t.Fatalf("EXPUNGE: %q", got)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("the other session's commands took %v of the bubble's time", d)
		}
		var got []string
		for len(got) < 3 {
			got = append(got, idler.line())
		}
		if d := time.Since(start); d != p.srv.notifyDelay() {
			t.Errorf("updates after %v, want the delay %v", d, p.srv.notifyDelay())
		}
		idler.send("DONE\r\n")
		got = append(got, idler.until("i")...)
		want := []string{"* 2 EXPUNGE", "* 5 EXISTS", "* 4 RECENT", "i OK IDLE terminated"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("in IDLE:\n%s\nwant (as NOOP):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if n := checkUpdates(t, 5, got); n != 5 {
			t.Errorf("the client counts %d messages, the folder has 5", n)
		}
		// A session that did not IDLE hears the same from NOOP (with
		// none of the messages \Recent: the idler holds them).
		got = noop.cmd("n", "NOOP")
		want = []string{"* 2 EXPUNGE", "* 5 EXISTS", "* 0 RECENT", "n OK NOOP completed"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("NOOP:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// lineAt is a line read by a client and the bubble's time it came.
type lineAt struct {
	line string
	at   time.Duration
}

// readLines reads r's lines into a channel, with the time since start.
func readLines(r *rawConn, start time.Time) <-chan lineAt {
	ch := make(chan lineAt, 100)
	go func() {
		defer close(ch)
		for {
			l, err := r.br.ReadString('\n')
			if err != nil {
				return
			}
			ch <- lineAt{strings.TrimRight(l, "\r\n"), time.Since(start)}
		}
	}()
	return ch
}

// TestIdleDelayBounded: a message appended every 120 ms is still
// reported, each batch the delay after the first change not yet
// reported, not once the stream stops.
func TestIdleDelayBounded(t *testing.T) {
	base := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		p := newPipeServer(t, base)
		idler, other := p.dial(), p.dial()
		idler.cmd("s", "SELECT INBOX")
		idler.send("i IDLE\r\n")
		if got := idler.line(); got != "+ idling" {
			t.Fatalf("IDLE: %q", got)
		}
		idler.c.SetReadDeadline(time.Time{})
		start := time.Now()
		lines := readLines(idler, start)
		for i := 1; i <= 12; i++ {
			msg := testMessage(i, "b@example.org", "stream")
			other.send("a APPEND INBOX {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
			if got := last(other.until("a")); !strings.HasPrefix(got, "a OK") {
				t.Fatalf("APPEND: %q", got)
			}
			time.Sleep(120 * time.Millisecond)
		}
		time.Sleep(time.Second)
		idler.send("DONE\r\n")
		var exists []lineAt
		for l := range lines {
			if strings.HasSuffix(l.line, " EXISTS") {
				exists = append(exists, l)
			}
			if strings.HasPrefix(l.line, "i ") {
				idler.c.Close()
			}
		}
		// Appends at 0, 120, ... 1320 ms: reported at 500 (1–5, from
		// 0 to 480), 1100 (6–10, from 600) and 1700 (11 and 12, from
		// 1200).
		want := []lineAt{{"* 5 EXISTS", 500 * time.Millisecond}, {"* 10 EXISTS", 1100 * time.Millisecond}, {"* 12 EXISTS", 1700 * time.Millisecond}}
		if len(exists) != len(want) {
			t.Fatalf("EXISTS %v, want %v", exists, want)
		}
		for i := range want {
			if exists[i] != want[i] {
				t.Errorf("EXISTS %v, want %v", exists, want)
				break
			}
		}
	})
}

// TestIdleKeepalive: a session in IDLE says "* OK Still here" every
// IdleNotifyInterval, at a phase of its own (Dovecot's), and is not
// logged out meanwhile; with the keepalive off, the autologout ends it.
func TestIdleKeepalive(t *testing.T) {
	base := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		p := newPipeServer(t, base, func(o *Options) { o.autologoutAfter = 5 * time.Minute })
		r := p.dial()
		r.cmd("s", "SELECT INBOX")
		r.send("i IDLE\r\n")
		if got := r.line(); got != "+ idling" {
			t.Fatalf("IDLE: %q", got)
		}
		r.c.SetReadDeadline(time.Time{})
		start := time.Now()
		lines := readLines(r, start)
		var got []lineAt
		for len(got) < 5 {
			got = append(got, <-lines)
		}
		first := got[0].at
		if first <= 0 || first > DefaultIdleNotifyInterval {
			t.Errorf("first keepalive after %v", first)
		}
		for i, l := range got {
			if want := first + time.Duration(i)*DefaultIdleNotifyInterval; l != (lineAt{"* OK Still here", want}) {
				t.Errorf("line %d: %v, want %q at %v", i, l, "* OK Still here", want)
			}
		}
		// 8 minutes and more in IDLE, past the autologout of 5.
		r.send("DONE\r\n")
		if l := <-lines; l.line != "i OK IDLE terminated" {
			t.Errorf("DONE: %v", l)
		}
		r.c.Close()
	})
	synctest.Test(t, func(t *testing.T) {
		p := newPipeServer(t, base, func(o *Options) {
			o.autologoutAfter = 5 * time.Minute
			o.IdleNotifyInterval = -1
		})
		r := p.dial()
		r.send("i IDLE\r\n")
		if got := r.line(); got != "+ idling" {
			t.Fatalf("IDLE: %q", got)
		}
		r.c.SetReadDeadline(time.Time{})
		lines := readLines(r, time.Now())
		if l := <-lines; l != (lineAt{"* BYE Autologout; idle for too long", 5 * time.Minute}) {
			t.Errorf("without keepalive: %v", l)
		}
		r.c.Close()
	})
}

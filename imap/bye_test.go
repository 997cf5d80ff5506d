package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// byeClient is a raw IMAP connection that checks, when the server closes
// it, that the last line it sent was an untagged BYE (RFC 9051 §7.1.5).
// Its reader goroutine hands the lines on to the test's driver.
type byeClient struct {
	kind  string
	c     net.Conn
	lines chan string
	// left is set before the client closes the connection or logs out:
	// then the server owes no BYE of its own.
	left atomic.Bool
	// closed says the server closed the connection (the reader saw its
	// end); noBye, that it did so without a BYE.
	closed, noBye atomic.Bool
	mu            sync.Mutex
	log           []string // the last lines, for the failure's message
}

// dialBye connects and reads the greeting; nil when that fails (the
// server is shutting down).
func dialBye(t *testing.T, addr, kind string) *byeClient {
	c, err := tls.Dial("tcp", addr, clientTLS())
	if err != nil {
		return nil
	}
	b := &byeClient{kind: kind, c: c, lines: make(chan string, 4096)}
	t.Cleanup(func() { b.leave() })
	go b.read()
	if l, ok := b.next(5 * time.Second); !ok || !strings.HasPrefix(l, "* OK") {
		b.leave()
		return nil
	}
	return b
}

func (b *byeClient) read() {
	defer close(b.lines)
	br := bufio.NewReader(b.c)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			if b.left.Load() {
				return
			}
			b.mu.Lock()
			last := ""
			if n := len(b.log); n > 0 {
				last = b.log[n-1]
			}
			b.mu.Unlock()
			b.noBye.Store(!strings.HasPrefix(last, "* BYE "))
			b.closed.Store(true)
			return
		}
		l = strings.TrimRight(l, "\r\n")
		b.mu.Lock()
		if b.log = append(b.log, l); len(b.log) > 12 {
			b.log = b.log[1:]
		}
		b.mu.Unlock()
		b.lines <- l
	}
}

func (b *byeClient) leave() {
	b.left.Store(true)
	b.c.Close()
}

func (b *byeClient) lastLines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.log...)
}

// send writes s; false once the connection is gone.
func (b *byeClient) send(s string) bool {
	_ = b.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := b.c.Write([]byte(s))
	return err == nil
}

// next is the next line; false when the connection ended or nothing came
// within d.
func (b *byeClient) next(d time.Duration) (string, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l, ok := <-b.lines:
		return l, ok
	case <-t.C:
		return "", false
	}
}

// until reads up to the line starting with prefix.
func (b *byeClient) until(prefix string, d time.Duration) (string, bool) {
	end := time.Now().Add(d)
	for {
		l, ok := b.next(time.Until(end))
		if !ok || strings.HasPrefix(l, prefix) {
			return l, ok
		}
	}
}

// drain reads what comes for d; false when the connection ended.
func (b *byeClient) drain(d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		if _, ok := b.next(left); !ok && b.ended() {
			return false
		}
	}
}

func (b *byeClient) ended() bool { return b.closed.Load() || b.left.Load() }

// TestServerEndsSessionsWithBye runs sessions in IDLE, sessions with a
// NOTIFY set APPENDing with synchronizing literals, writers that APPEND,
// STORE and EXPUNGE in the same folder, sessions waiting between
// commands, sessions cut by autologout or by a command that stops
// coming, then shuts the server down: every connection the server
// closed must have had a BYE first. Before the fix, a session with a
// NOTIFY set lost its connection (and its APPEND) when another session's
// change woke it while it read a literal, a command that stopped coming
// and a Shutdown during a command ended without a word, and a Shutdown
// landing between a session's look at the flag and its new read
// deadline was lost until Close cut the connection.
func TestServerEndsSessionsWithBye(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) {
		o.IdleCheck = 100 * time.Millisecond
		o.autologoutAfter = 1500 * time.Millisecond
		o.cmdReadAfter = 400 * time.Millisecond
	})
	setup := dialBye(t, e.addr, "setup")
	if setup == nil {
		t.Fatal("no greeting")
	}
	setup.send("l LOGIN alice secret\r\n")
	setup.until("l ", 5*time.Second)
	for i := range 8 {
		setup.send(fmt.Sprintf("a%d APPEND INBOX {%d+}\r\n%s\r\n", i, len(byeMsg(i)), byeMsg(i)))
		setup.until(fmt.Sprintf("a%d ", i), 5*time.Second)
	}
	setup.leave()

	var (
		// dialing is held (read) while a client connects: the test
		// takes it before Shutdown, which must not meet a connection
		// being admitted (connset's Drain panics then: WaitGroup reused
		// before Wait returned; not this test's subject).
		dialing sync.RWMutex
		mu      sync.Mutex
		clients []*byeClient
		lost    []string // commands cut without an answer
	)
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	dial := func(kind string) *byeClient {
		dialing.RLock()
		defer dialing.RUnlock()
		if stopped() {
			return nil
		}
		b := dialBye(t, e.addr, kind)
		if b == nil {
			return nil
		}
		mu.Lock()
		clients = append(clients, b)
		mu.Unlock()
		return b
	}
	loseCmd := func(b *byeClient, what string) {
		if b.closed.Load() && !b.noBye.Load() {
			return // a BYE explained it (autologout, shutdown)
		}
		mu.Lock()
		lost = append(lost, fmt.Sprintf("%s: %s unanswered; last lines %q", b.kind, what, b.lastLines()))
		mu.Unlock()
	}
	login := func(b *byeClient, sel string) bool {
		b.send("l LOGIN alice secret\r\n")
		if l, ok := b.until("l ", 5*time.Second); !ok || !strings.HasPrefix(l, "l OK") {
			return false
		}
		if sel == "" {
			return true
		}
		b.send("s SELECT " + sel + "\r\n")
		l, ok := b.until("s ", 5*time.Second)
		return ok && strings.HasPrefix(l, "s OK")
	}
	var wg sync.WaitGroup
	run := func(kind string, n int, body func(b *byeClient, r *rand.Rand)) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(i), uint64(len(kind))))
				for !stopped() {
					b := dial(fmt.Sprintf("%s-%d", kind, i))
					if b == nil {
						return
					}
					body(b, r)
				}
			}()
		}
	}

	// In IDLE, leaving it now and then; one in three stays until
	// autologout.
	run("idle", 6, func(b *byeClient, r *rand.Rand) {
		if !login(b, "INBOX") {
			return
		}
		for k := 0; !stopped(); k++ {
			b.send(fmt.Sprintf("i%d IDLE\r\n", k))
			if _, ok := b.until("+ ", 5*time.Second); !ok {
				return
			}
			if r.IntN(3) == 0 {
				b.drain(time.Hour) // until autologout or shutdown
				return
			}
			if !b.drain(time.Duration(50+r.IntN(400)) * time.Millisecond) {
				return
			}
			b.send("DONE\r\n")
			if _, ok := b.until(fmt.Sprintf("i%d ", k), 5*time.Second); !ok {
				loseCmd(b, "DONE")
				return
			}
		}
	})
	// A NOTIFY set, and APPENDs whose literal comes a while after the
	// continuation: other sessions' changes wake the session meanwhile.
	run("notify", 3, func(b *byeClient, r *rand.Rand) {
		if !login(b, "INBOX") {
			return
		}
		b.send("n NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge))\r\n")
		if _, ok := b.until("n ", 5*time.Second); !ok {
			return
		}
		for k := 0; !stopped(); k++ {
			msg := byeMsg(k)
			b.send(fmt.Sprintf("a%d APPEND INBOX {%d}\r\n", k, len(msg)))
			if _, ok := b.until("+ ", 5*time.Second); !ok {
				loseCmd(b, "APPEND's continuation")
				return
			}
			time.Sleep(time.Duration(20+r.IntN(150)) * time.Millisecond)
			b.send(msg[:10])
			time.Sleep(time.Duration(20+r.IntN(150)) * time.Millisecond)
			b.send(msg[10:] + "\r\n")
			l, ok := b.until(fmt.Sprintf("a%d ", k), 5*time.Second)
			if !ok {
				loseCmd(b, "APPEND")
				return
			}
			if !strings.HasPrefix(l, fmt.Sprintf("a%d OK", k)) {
				mu.Lock()
				lost = append(lost, fmt.Sprintf("%s: APPEND: %q", b.kind, l))
				mu.Unlock()
			}
		}
	})
	// Writers on the same folder.
	run("write", 3, func(b *byeClient, r *rand.Rand) {
		if !login(b, "INBOX") {
			return
		}
		for k := 0; !stopped(); k++ {
			var cmd string
			switch r.IntN(4) {
			case 0:
				msg := byeMsg(k)
				cmd = fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg)
			case 1:
				cmd = fmt.Sprintf("STORE %d:* +FLAGS (\\Seen $K%d)", 1+r.IntN(4), r.IntN(3))
			case 2:
				cmd = "STORE 1:3 +FLAGS.SILENT (\\Deleted)"
			default:
				cmd = "EXPUNGE"
			}
			tag := fmt.Sprintf("w%d", k)
			b.send(tag + " " + cmd + "\r\n")
			if _, ok := b.until(tag+" ", 5*time.Second); !ok {
				loseCmd(b, cmd)
				return
			}
		}
	})
	// Commands back to back: between two, the session waits for the next.
	run("noop", 2, func(b *byeClient, r *rand.Rand) {
		if !login(b, "INBOX") {
			return
		}
		for k := 0; !stopped(); k++ {
			tag := fmt.Sprintf("n%d", k)
			b.send(tag + " NOOP\r\n")
			if _, ok := b.until(tag+" ", 5*time.Second); !ok {
				loseCmd(b, "NOOP")
				return
			}
		}
	})
	// A command that stops coming halfway.
	run("trickle", 1, func(b *byeClient, r *rand.Rand) {
		if !login(b, "") {
			return
		}
		b.send("t1 NOOP")
		b.drain(5 * time.Second)
	})

	time.Sleep(4 * time.Second)
	close(stop)
	dialing.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	ended, bad := 0, 0
	for _, b := range clients {
		for !b.ended() {
			time.Sleep(10 * time.Millisecond) // its reader sees the end
		}
		if !b.closed.Load() {
			continue
		}
		ended++
		if b.noBye.Load() {
			bad++
			if bad <= 10 {
				t.Errorf("%s: closed without BYE; last lines %q", b.kind, b.lastLines())
			}
		}
	}
	t.Logf("%d connections, %d ended by the server, %d without BYE", len(clients), ended, bad)
	for i, l := range lost {
		if i == 10 {
			t.Errorf("... %d more", len(lost)-10)
			break
		}
		t.Error(l)
	}
}

func byeMsg(i int) string {
	return fmt.Sprintf("From: a@example.org\r\nSubject: m%d\r\n\r\nbody %d\r\n", i, i)
}

// A folder another session deletes or renames while this one has it
// selected ends this one with a BYE, as Dovecot does (2.3 says "IMAP
// session state is inconsistent, please relogin."): at once in IDLE,
// else at the next command. Before, the session stayed on a folder
// detached from the others: FETCH and STORE answered NO [UNAVAILABLE]
// for good after a DELETE, and after a RENAME its changes reached no
// session of the new name.
func TestSelectedFolderGoneSaysBye(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		op, want string
		idle     bool
	}{
		{"DELETE Work", "* BYE Selected mailbox was deleted", false},
		{"DELETE Work", "* BYE Selected mailbox was deleted", true},
		{"RENAME Work Other", "* BYE Selected mailbox was renamed", false},
		{"RENAME Work Other", "* BYE Selected mailbox was renamed", true},
		{"RENAME Top Top2", "* BYE Selected mailbox was renamed", true}, // a parent
	} {
		t.Run(fmt.Sprintf("%s/idle=%v", tc.op, tc.idle), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *Options) { o.IdleCheck = time.Hour; o.WatchedIdleCheck = time.Hour })
			a := loggedIn(t, e)
			a.cmd("c", "CREATE Work")
			a.cmd("c", "CREATE Top")
			a.cmd("c", "CREATE Top.Work")
			folder := "Work"
			if strings.Contains(tc.op, "Top") {
				folder = "Top.Work"
			}
			a.cmd("p", "APPEND "+folder+" {3+}\r\nx\r\n")
			if got := last(a.cmd("s", "SELECT "+folder)); !strings.HasPrefix(got, "s OK") {
				t.Fatalf("SELECT: %q", got)
			}
			if tc.idle {
				a.send("i IDLE\r\n")
				expectAtOnce(t, a, "+ ")
			}
			b := loggedIn(t, e)
			// A session in IDLE, woken by inotify as the messages go,
			// no longer makes its uidlist lock in the folder while
			// DELETE removes it (see TestDeleteWhileOthersIdle).
			if got := last(b.cmd("d", tc.op)); !strings.HasPrefix(got, "d OK") {
				t.Fatalf("%s: %q", tc.op, got)
			}
			if !tc.idle {
				a.send("n NOOP\r\n")
			}
			// In IDLE, inotify may show the messages' removal first.
			for l := expectAtOnce(t, a, "* "); !strings.HasPrefix(l, tc.want); l = expectAtOnce(t, a, "* ") {
				if !tc.idle || l != "* 1 EXPUNGE" {
					t.Fatalf("got %q, want %q", l, tc.want)
				}
			}
			if l, err := a.br.ReadString('\n'); err == nil {
				t.Errorf("after the BYE: %q, want the end", l)
			}
			// b, and a new session of a, go on.
			if got := last(b.cmd("n", "NOOP")); !strings.HasPrefix(got, "n OK") {
				t.Errorf("the other session: %q", got)
			}
		})
	}
}

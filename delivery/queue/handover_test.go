package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/delivery"
)

// fakeNode is a home node's cluster listener reduced to what HandOver
// needs: it logs in anyone, answers RCPT as rcpt says (a reply line, ""
// for 250), reads the data and answers 250, or once, with dropOnce,
// hangs up instead (a 250 lost on the way back). A MAIL inside a
// transaction (no RSET or data since the last) gets 503, as Postfix's.
type fakeNode struct {
	addr     string
	rcpt     func(to string) string
	dropOnce bool

	mu           sync.Mutex
	noPipelining bool          // EHLO offers no PIPELINING
	replyDelay   time.Duration // before the reply to the final dot
	conns        int
	cmds         []string       // MAIL and RCPT lines, in order
	datas        int            // messages received whole
	stored       map[string]int // copies stored, by recipient
}

func newFakeNode(t *testing.T, rcpt func(string) string, dropOnce bool) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := &fakeNode{addr: ln.Addr().String(), rcpt: rcpt, dropOnce: dropOnce, stored: map[string]int{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.mu.Lock()
			n.conns++
			n.mu.Unlock()
			go n.serve(c)
		}
	}()
	return n
}

func (n *fakeNode) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(s string) { w.WriteString(s + "\r\n") }
	say("220 node.test")
	w.Flush()
	var accepted []string // the transaction's recipients
	inTx := false
	for range 1000 {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO":
			say("250-node.test")
			n.mu.Lock()
			if !n.noPipelining {
				say("250-PIPELINING")
			}
			n.mu.Unlock()
			say("250 AUTH PLAIN")
		case "AUTH":
			say("235 2.7.0 ok")
		case "RSET":
			accepted, inTx = nil, false
			say("250 2.0.0 ok")
		case "MAIL", "RCPT":
			n.mu.Lock()
			n.cmds = append(n.cmds, line)
			n.mu.Unlock()
			reply := "250 2.1.0 ok"
			switch {
			case verb == "MAIL" && inTx:
				reply = "503 5.5.1 nested MAIL command"
			case verb == "MAIL":
				inTx = true
			default:
				_, to, _ := strings.Cut(line, "<")
				to, _, _ = strings.Cut(to, ">")
				if x := n.rcpt(to); x != "" {
					reply = x
				} else {
					accepted = append(accepted, to)
				}
			}
			say(reply)
		case "DATA":
			if len(accepted) == 0 {
				say("554 5.5.1 no valid recipients")
				break
			}
			say("354 go ahead")
			w.Flush()
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			n.mu.Lock()
			n.datas++
			for _, to := range accepted {
				n.stored[to]++
			}
			drop := n.dropOnce
			n.dropOnce = false
			delay := n.replyDelay
			n.mu.Unlock()
			if drop {
				return // stored here, the 250 never sent
			}
			time.Sleep(delay)
			accepted, inTx = nil, false
			say("250 2.0.0 OK: queued")
		case "QUIT":
			say("221 2.0.0 bye")
			w.Flush()
			return
		default:
			say("500 5.5.2 what")
		}
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
}

func (n *fakeNode) seen() (conns, datas int, cmds []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns, n.datas, append([]string(nil), n.cmds...)
}

// copies is how many copies of each recipient the node stored.
func (n *fakeNode) copies() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.stored)
}

// HandOver hands a message for users homed on node b to it before the
// caller answers, and on anything but 250 for every copy queues it under
// the same id and keys with the attempt recorded: a 250 lost after the
// data makes the retry say XRETRY. (A RCPT refused for some copies:
// TestHandOverRefusedCopy.)
func TestHandOver(t *testing.T) {
	t.Parallel()
	ok := func(string) string { return "" }
	for _, tc := range []struct {
		name      string
		rcpt      func(string) string
		dropOnce  bool
		noRun     bool
		handed    bool
		states    []string // after the attempt, "" when nothing is queued
		attempts  int      // of each queued copy
		bounced   int
		connected bool
	}{
		{name: "250 for all", rcpt: ok, handed: true, connected: true},
		{name: "250 lost", rcpt: ok, dropOnce: true, states: []string{"pending", "pending"}, attempts: 1, connected: true},
		{name: "no runner", rcpt: ok, noRun: true, states: []string{"pending", "pending"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			node := newFakeNode(t, tc.rcpt, tc.dropOnce)
			cl, err := cluster.New(cluster.Options{Self: "a", Secret: []byte("0123456789abcdef"), ConnectTimeout: time.Second,
				Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: node.addr}}})
			if err != nil {
				t.Fatal(err)
			}
			b := newBounces()
			o := baseOptions(t, t.TempDir(), newClock())
			o.Cluster, o.Bounce = cl, b.fn
			o.Dialer = (&net.Dialer{}).DialContext
			var q *Queue
			if tc.noRun {
				if q, err = Open(o); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { q.Close() })
			} else {
				q = start(t, o).q
				waitRunning(t, q)
			}
			local := []delivery.Recipient{
				{Address: "bob@x.test", Maildir: "/var/vmail/bob/mailbox", UID: 2000, GID: 2000, Node: "b"},
				{Address: "carol@x.test", OrigTo: "c@y.test", Maildir: "/var/vmail/carol/mailbox", UID: 2001, GID: 2001, Node: "b"},
			}
			id, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", local, delivery.MemContent(testMessage))
			if err != nil {
				t.Fatal(err)
			}
			if handed != tc.handed {
				t.Errorf("handed %v, want %v", handed, tc.handed)
			}
			conns, _, cmds := node.seen()
			if (conns > 0) != tc.connected {
				t.Errorf("%d connections to the node, want some: %v", conns, tc.connected)
			}
			if tc.connected {
				if len(cmds) < 3 || !strings.HasPrefix(cmds[0], "MAIL FROM:<sender@y.test> ") || !strings.Contains(cmds[0], " XARRIVED=") || strings.Contains(cmds[0], "XRETRY") ||
					cmds[1] != "RCPT TO:<bob@x.test> XKEY="+id+"-0" || cmds[2] != "RCPT TO:<carol@x.test> XKEY="+id+"-1 ORCPT=rfc822;c@y.test" {
					t.Errorf("hand-over commands %q, want the queue's keys", cmds)
				}
			}
			l, err := q.List()
			if err != nil {
				t.Fatal(err)
			}
			if tc.states == nil {
				if len(l) != 0 {
					t.Fatalf("queue %+v after a hand-over, want empty", l)
				}
				return
			}
			m, _, err := q.Show(id)
			switch {
			case err != nil && tc.bounced > 0:
				// Every copy has its outcome: the runner may have sent
				// the DSN and removed the message already (both checked
				// below).
				m = nil
			case err != nil:
				t.Fatalf("the message is not queued under the id %s: %v", id, err)
			}
			for i, want := range tc.states {
				if m == nil {
					break
				}
				r := m.Recipients[i]
				if string(r.State) != want || r.Node != "b" || want != "delivered" && r.Attempts != tc.attempts {
					t.Errorf("copy %d: %+v, want %s after %d attempts", i, r, want, tc.attempts)
				}
			}
			if tc.bounced > 0 {
				recv(t, b.got, "the DSN")
				waitEmpty(t, q)
			}
			if tc.dropOnce {
				q.Flush()
				waitEmpty(t, q)
				_, datas, cmds := node.seen()
				if last := cmds[len(cmds)-3]; !strings.Contains(last, " XRETRY") || datas != 2 {
					t.Errorf("retry after a lost 250: %q, %d messages; want XRETRY on the second", cmds, datas)
				}
			}
		})
	}
}

func waitEmpty(t *testing.T, q *Queue) {
	t.Helper()
	for range 1000 {
		if l, err := q.List(); err == nil && len(l) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the queue did not empty")
}

// waitRunning waits until Run has started: HandOver tries nothing before.
func waitRunning(t *testing.T, q *Queue) {
	t.Helper()
	for range 1000 {
		q.mu.Lock()
		running := q.running
		q.mu.Unlock()
		if running {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the runner did not start")
}

// A home node that accepts connections but never answers (stopped, hung)
// costs one hand-over its whole time, then is remembered dead: the next
// hand-over queues at once without dialling, instead of every message
// waiting HandOverTimeout before its 250.
func TestHandOverToHungNode(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	conns := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			t.Cleanup(func() { c.Close() }) // held open, never a greeting
		}
	}()
	cl, err := cluster.New(cluster.Options{Self: "a", Secret: []byte("0123456789abcdef"), ConnectTimeout: time.Second,
		Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: ln.Addr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	o := baseOptions(t, t.TempDir(), newClock())
	o.Cluster = cl
	o.Dialer = (&net.Dialer{}).DialContext
	o.HandOverTimeout = 200 * time.Millisecond
	q := start(t, o).q
	waitRunning(t, q)
	local := []delivery.Recipient{{Address: "bob@x.test", Maildir: "/var/vmail/bob/mailbox", UID: 2000, GID: 2000, Node: "b"}}
	for i := range 3 {
		_, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", local, delivery.MemContent(testMessage))
		if err != nil || handed {
			t.Fatalf("hand-over %d: handed %v, %v; want queued", i, handed, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("%d connections to the hung node for three hand-overs, want 1 (then remembered dead)", conns)
	}
}

// TestHandOverDSN: a message handed to a node keeps its DSN parameters
// (they never cross the node hop, whose listener does not offer DSN): a
// copy stored there with NOTIFY=SUCCESS is reported delivered from here,
// the message being queued for that DSN before it is handed over; a copy
// refused there with NOTIFY=NEVER bounces nothing.
func TestHandOverDSN(t *testing.T) {
	t.Parallel()
	node := newFakeNode(t, func(to string) string {
		if to == "carol@x.test" {
			return "550 5.1.1 no such user"
		}
		return ""
	}, false)
	cl, err := cluster.New(cluster.Options{Self: "a", Secret: []byte("0123456789abcdef"), ConnectTimeout: time.Second,
		Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: node.addr}}})
	if err != nil {
		t.Fatal(err)
	}
	b := newBounces()
	o := baseOptions(t, t.TempDir(), newClock())
	o.Cluster, o.Bounce = cl, b.fn
	o.Dialer = (&net.Dialer{}).DialContext
	q := start(t, o).q
	waitRunning(t, q)
	local := []delivery.Recipient{
		{Address: "bob@x.test", Maildir: "/var/vmail/bob/mailbox", UID: 2000, GID: 2000, Node: "b"},
		{Address: "carol@x.test", Maildir: "/var/vmail/carol/mailbox", UID: 2001, GID: 2001, Node: "b"},
	}
	_, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", local, delivery.MemContent(testMessage),
		WithDSN(RetHdrs, "e1", map[string]RcptDSN{"bob@x.test": {Notify: "SUCCESS"}, "carol@x.test": {Notify: "NEVER"}}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if handed {
		t.Error("handed: a success DSN is owed, the message must be queued for it")
	}
	_, _, cmds := node.seen()
	for _, c := range cmds {
		if strings.Contains(c, "NOTIFY") || strings.Contains(c, "RET=") || strings.Contains(c, "ENVID") {
			t.Errorf("DSN parameters on the node hop: %q", c)
		}
	}
	r := parseDSN(t, recv(t, b.got, "the success DSN"))
	waitEmpty(t, q)
	if len(r.rcpts) != 1 || r.rcpts[0].Get("Action") != "delivered" || r.rcpts[0].Get("Final-Recipient") != "rfc822; bob@x.test" ||
		r.perMsg.Get("Original-Envelope-Id") != "e1" {
		t.Errorf("DSN %v %v, want bob delivered", r.perMsg, r.rcpts)
	}
	if n := b.count(); n != 1 {
		t.Errorf("%d DSNs, want the success one only (carol: NOTIFY=NEVER)", n)
	}
}

// TestHandOverOnceKey: HandOver honours WithOnceKey as Accept does: the
// message is stored under the id derived from the key, and a second
// HandOver under that key, after the first left the queue, stores and
// sends nothing. (The immediate hand-over would leave nothing here to
// find: a message under a key is queued and handed over by the runner.)
func TestHandOverOnceKey(t *testing.T) {
	t.Parallel()
	node := newFakeNode(t, func(string) string { return "" }, false)
	cl, err := cluster.New(cluster.Options{Self: "a", Secret: []byte("0123456789abcdef"), ConnectTimeout: time.Second,
		Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: node.addr}}})
	if err != nil {
		t.Fatal(err)
	}
	o := baseOptions(t, t.TempDir(), newClock())
	o.Cluster = cl
	o.Dialer = (&net.Dialer{}).DialContext
	q := start(t, o).q
	waitRunning(t, q)
	local := []delivery.Recipient{{Address: "bob@x.test", Maildir: "/var/vmail/bob/mailbox", UID: 2000, GID: 2000, Node: "b"}}
	key := newID(time.Now()) + "-0\x00redirect\x00bob@x.test"
	want, _ := onceID(key)
	for i := range 2 {
		id, _, errs, err := q.HandOver(context.Background(), "m1", "sender@y.test", local, delivery.MemContent(testMessage), WithOnceKey(key))
		if err != nil {
			t.Fatal(err)
		}
		if id != want {
			t.Errorf("hand-over %d: queue id %s, want %s (from the key)", i, id, want)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, ErrNotHere) {
				t.Errorf("hand-over %d: copy: %v", i, err)
			}
		}
		waitEmpty(t, q)
	}
	if _, datas, _ := node.seen(); datas != 1 {
		t.Errorf("the node got the message %d times, want once", datas)
	}
}

// handOverQueue is a running queue on dir whose cluster has node b at
// addr, with its DSNs in b.
func handOverQueue(t *testing.T, dir, addr string) (*Queue, *bounces) {
	t.Helper()
	cl, err := cluster.New(cluster.Options{Self: "a", Secret: []byte("0123456789abcdef"), ConnectTimeout: time.Second,
		Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: addr}}})
	if err != nil {
		t.Fatal(err)
	}
	b := newBounces()
	o := baseOptions(t, dir, newClock())
	o.Cluster, o.Bounce = cl, b.fn
	o.Dialer = (&net.Dialer{}).DialContext
	q := start(t, o).q
	waitRunning(t, q)
	return q, b
}

// handOverCopies are two copies for users homed on node b.
var handOverCopies = []delivery.Recipient{
	{Address: "bob@x.test", Maildir: "/var/vmail/bob/mailbox", UID: 2000, GID: 2000, Node: "b"},
	{Address: "carol@x.test", OrigTo: "c@y.test", Maildir: "/var/vmail/carol/mailbox", UID: 2001, GID: 2001, Node: "b"},
}

// A hand-over is for every copy or none: when the node refuses the RCPT
// of one copy (450 or 550) and accepts the other, no data is sent (the
// node stores nothing), HandOver says not handed, and the message is
// queued whole: the accepted copy pending and untried (its transaction
// from the runner says no XRETRY, nothing of it having been sent), the
// refused one with the node's answer recorded as the attempt. The runner
// then stores one copy of each over there (the 450 one once the node
// takes it), or bounces the 550 one, on the session of the hand-over,
// which the refusal left usable.
func TestHandOverRefusedCopy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, reply  string
		noPipelining bool
		carol        State // on disk after the hand-over
		bounced      bool
	}{
		{name: "450", reply: "450 4.2.0 held", carol: StatePending},
		{name: "450 without pipelining", reply: "450 4.2.0 held", noPipelining: true, carol: StatePending},
		{name: "550", reply: "550 5.1.1 no such user", carol: StateFailed, bounced: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu      sync.Mutex
				bobs    int    // RCPTs for bob
				refuse  = true // carol's RCPT gets tc.reply
				release = make(chan struct{})
			)
			node := newFakeNode(t, func(to string) string {
				mu.Lock()
				defer mu.Unlock()
				switch {
				case to == "carol@x.test" && refuse:
					return tc.reply
				case to == "bob@x.test":
					if bobs++; bobs == 2 {
						// The runner's attempt waits until the spool
						// has been looked at.
						mu.Unlock()
						<-release
						mu.Lock()
					}
				}
				return ""
			}, false)
			node.mu.Lock()
			node.noPipelining = tc.noPipelining
			node.mu.Unlock()
			dir := t.TempDir()
			q, b := handOverQueue(t, dir, node.addr)
			unblock := sync.OnceFunc(func() { close(release) })
			t.Cleanup(unblock) // before the queue closes
			id, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", handOverCopies, delivery.MemContent(testMessage))
			if err != nil {
				t.Fatal(err)
			}
			if handed {
				t.Error("handed, with a copy refused")
			}
			if _, datas, cmds := node.seen(); datas != 0 {
				t.Errorf("the node got the data %d times during the hand-over (%q), want none: a copy stored there", datas, cmds)
			}
			m, err := q.sp.readEnvelope(id)
			if err != nil {
				t.Fatalf("the message is not queued under %s: %v", id, err)
			}
			if r := m.Recipients[0]; r.State != StatePending || r.Attempts != 0 {
				t.Errorf("bob: %s after %d attempts, want pending, untried", r.State, r.Attempts)
			}
			if r := m.Recipients[1]; r.State != tc.carol || r.Attempts != 1 {
				t.Errorf("carol: %s after %d attempts, want %s after the hand-over's", r.State, r.Attempts, tc.carol)
			}
			unblock()
			if tc.bounced {
				recv(t, b.got, "the DSN for carol")
			} else {
				// Bob's copy first, then carol's once the node takes it
				// (Flush passes over the message while bob's job ends).
				for range 1000 {
					if node.copies()["bob@x.test"] == 1 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				mu.Lock()
				refuse = false
				mu.Unlock()
				for range 500 {
					if l, err := q.List(); err == nil && len(l) == 0 {
						break
					}
					q.Flush()
					time.Sleep(20 * time.Millisecond)
				}
			}
			waitEmpty(t, q)
			want := map[string]int{"bob@x.test": 1, "carol@x.test": 1}
			if tc.bounced {
				delete(want, "carol@x.test")
			}
			if got := node.copies(); !maps.Equal(got, want) {
				t.Errorf("copies stored on the node: %v, want %v", got, want)
			}
			conns, _, cmds := node.seen()
			if conns != 1 {
				t.Errorf("%d connections to the node, want the hand-over's, reused", conns)
			}
			// The hand-over's MAIL and RCPTs, then the runner's for bob.
			if len(cmds) < 5 || !strings.HasPrefix(cmds[3], "MAIL ") || strings.Contains(cmds[3], "XRETRY") || !strings.HasPrefix(cmds[4], "RCPT TO:<bob@x.test> ") {
				t.Errorf("commands %q: want the runner's for bob without XRETRY after the hand-over's", cmds)
			}
			wantDSNs := 0
			if tc.bounced {
				wantDSNs = 1
			}
			if n := b.count(); n != wantDSNs {
				t.Errorf("%d DSNs, want %d", n, wantDSNs)
			}
		})
	}
}

// When the spool cannot be written after the node refused a copy, the
// caller gets the error (and answers 4xx): the node must have stored
// nothing, or the client's retry would store that copy twice.
func TestHandOverRefusedCopySpoolFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var node atomic.Pointer[fakeNode]
	node.Store(newFakeNode(t, func(to string) string {
		if to != "carol@x.test" {
			return ""
		}
		// The spool's file for this message cannot be made: a
		// directory holds its name (as a failing disk would refuse it).
		_, _, cmds := node.Load().seen()
		_, key, _ := strings.Cut(cmds[len(cmds)-1], " XKEY=")
		id, _, _ := strings.Cut(key, "-")
		if err := os.MkdirAll(filepath.Join(dir, id+extData, "x"), 0o700); err != nil {
			t.Error(err)
		}
		return "450 4.2.0 held"
	}, false))
	q, _ := handOverQueue(t, dir, node.Load().addr)
	_, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", handOverCopies, delivery.MemContent(testMessage))
	if err == nil || handed {
		t.Fatalf("HandOver with a spool that cannot be written: handed %v, %v; want an error", handed, err)
	}
	if got := node.Load().copies(); len(got) != 0 {
		t.Errorf("the node stored %v, then the caller was told to retry: duplicates", got)
	}
	if l, err := q.List(); err != nil || len(l) != 0 {
		t.Errorf("queue %v, %v; want nothing queued", l, err)
	}
}

// More copies than one transaction takes are not handed over at once (a
// second transaction could be refused after the first stored its copies):
// the message is queued, and the runner stores each copy once.
func TestHandOverTooManyCopies(t *testing.T) {
	t.Parallel()
	node := newFakeNode(t, func(string) string { return "" }, false)
	q, _ := handOverQueue(t, t.TempDir(), node.addr)
	var local []delivery.Recipient
	for i := range rcptsPerTransaction + 1 {
		local = append(local, delivery.Recipient{Address: fmt.Sprintf("u%d@x.test", i), Maildir: fmt.Sprintf("/var/vmail/u%d/mailbox", i), UID: 2000, GID: 2000, Node: "b"})
	}
	_, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", local, delivery.MemContent(testMessage))
	if err != nil || handed {
		t.Fatalf("hand-over of %d copies: handed %v, %v; want queued", len(local), handed, err)
	}
	waitEmpty(t, q)
	got := node.copies()
	if len(got) != len(local) {
		t.Errorf("%d recipients stored on the node, want %d", len(got), len(local))
	}
	for to, n := range got {
		if n != 1 {
			t.Errorf("%s: %d copies, want 1", to, n)
		}
	}
}

// A message whose sender asked for a success DSN is queued before it is
// handed over: handed first, the DSN would need a spool write after the
// node's 250, and that write failing (the caller answering 4xx, the
// client retrying) would store the copy twice over there.
func TestHandOverSuccessDSNSpoolFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var node atomic.Pointer[fakeNode]
	node.Store(newFakeNode(t, func(to string) string {
		// The spool's file for this message cannot be made if it is not
		// there yet: a directory holds its name.
		_, _, cmds := node.Load().seen()
		_, key, _ := strings.Cut(cmds[len(cmds)-1], " XKEY=")
		id, _, _ := strings.Cut(key, "-")
		if _, err := os.Stat(filepath.Join(dir, id+extData)); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(filepath.Join(dir, id+extData, "x"), 0o700); err != nil {
				t.Error(err)
			}
		}
		return ""
	}, false))
	q, b := handOverQueue(t, dir, node.Load().addr)
	_, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", handOverCopies[:1], delivery.MemContent(testMessage),
		WithDSN("", "", map[string]RcptDSN{"bob@x.test": {Notify: "SUCCESS"}}, nil))
	if err != nil {
		if got := node.Load().copies(); len(got) != 0 {
			t.Fatalf("the node stored %v, then the caller was told to retry (%v): duplicates", got, err)
		}
		t.Fatal(err)
	}
	if handed {
		t.Error("handed: a success DSN is owed")
	}
	recv(t, b.got, "the success DSN")
	waitEmpty(t, q)
	if got := node.Load().copies(); !maps.Equal(got, map[string]int{"bob@x.test": 1}) {
		t.Errorf("copies stored on the node: %v, want one for bob", got)
	}
}

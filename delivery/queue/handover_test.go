package queue

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/delivery"
)

// fakeNode is a home node's cluster listener reduced to what HandOver
// needs: it logs in anyone, answers RCPT as rcpt says (a reply line, ""
// for 250), reads the data and answers 250, or once, with dropOnce,
// hangs up instead (a 250 lost on the way back).
type fakeNode struct {
	addr     string
	rcpt     func(to string) string
	dropOnce bool

	mu    sync.Mutex
	conns int
	cmds  []string // MAIL and RCPT lines, in order
	datas int      // messages received whole
}

func newFakeNode(t *testing.T, rcpt func(string) string, dropOnce bool) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := &fakeNode{addr: ln.Addr().String(), rcpt: rcpt, dropOnce: dropOnce}
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
	accepted := 0
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
			say("250-PIPELINING")
			say("250 AUTH PLAIN")
		case "AUTH":
			say("235 2.7.0 ok")
		case "RSET":
			accepted = 0
			say("250 2.0.0 ok")
		case "MAIL", "RCPT":
			n.mu.Lock()
			n.cmds = append(n.cmds, line)
			n.mu.Unlock()
			reply := "250 2.1.0 ok"
			if verb == "RCPT" {
				_, to, _ := strings.Cut(line, "<")
				to, _, _ = strings.Cut(to, ">")
				if x := n.rcpt(to); x != "" {
					reply = x
				} else {
					accepted++
				}
			}
			say(reply)
		case "DATA":
			if accepted == 0 {
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
			drop := n.dropOnce
			n.dropOnce = false
			n.mu.Unlock()
			if drop {
				return // stored here, the 250 never sent
			}
			accepted = 0
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

// HandOver hands a message for users homed on node b to it before the
// caller answers, and on anything but 250 for every copy queues it under
// the same id and keys with the attempt recorded: a copy refused for good
// bounces, a deferred one waits, and a 250 lost after the data makes the
// retry say XRETRY.
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
		{name: "450 for one", rcpt: func(to string) string {
			if to == "carol@x.test" {
				return "450 4.2.0 held"
			}
			return ""
		}, states: []string{"delivered", "pending"}, attempts: 1, connected: true},
		{name: "550 for one", rcpt: func(to string) string {
			if to == "carol@x.test" {
				return "550 5.1.1 no such user"
			}
			return ""
		}, states: []string{"delivered", "failed"}, attempts: 1, bounced: 1, connected: true},
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
// the message being queued for that DSN before HandOver returns; a copy
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

package move

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/delivery"
	"courriel/directory"
	"courriel/imap"
	"courriel/internal/testenv"
)

const testSecret = "0123456789abcdef-secret"

// otherNodeFS is the directory as node B sees it: the same entries, homes
// on B's own file system (here a different directory of this one).
type otherNodeFS struct {
	d        *directory.Directory
	from, to string
}

func (o otherNodeFS) LookupUser(ctx context.Context, login string) (directory.User, error) {
	u, err := o.d.LookupUser(ctx, login)
	u.Home = strings.Replace(u.Home, o.from, o.to, 1)
	u.Maildir = strings.Replace(u.Maildir, o.from, o.to, 1)
	return u, err
}

// fakeHop is node B's listen.cluster as far as a move needs it: the SMTP
// dialogue and the XIMPORT verb the smtp package gets elsewhere, handing
// the octets to the real Importer. (The end-to-end through smtp's own
// verb is the lead's, after merging.)
type fakeHop struct {
	ln  net.Listener
	im  *Importer
	tls *tls.Config // offers STARTTLS when set
	mu  sync.Mutex
	log []string
}

func startHop(t testing.TB, im *Importer) *fakeHop {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHop{ln: ln, im: im}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.serve(c)
		}
	}()
	return h
}

func (h *fakeHop) serve(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	var c net.Conn = conn
	br := bufio.NewReader(c)
	reply := func(s string) { fmt.Fprintf(c, "%s\r\n", s) }
	reply("220 node-b ESMTP")
	authed := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		h.mu.Lock()
		h.log = append(h.log, strings.SplitN(line, " ", 2)[0])
		h.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			if h.tls != nil {
				if _, ok := c.(*tls.Conn); !ok {
					reply("250-node-b\r\n250-STARTTLS\r\n250 PIPELINING")
					continue
				}
			}
			reply("250-node-b\r\n250-PIPELINING\r\n250 AUTH PLAIN")
		case "STARTTLS":
			reply("220 2.0.0 ready")
			tc := tls.Server(conn, h.tls)
			if tc.Handshake() != nil {
				return
			}
			c, br = tc, bufio.NewReader(tc)
		case "AUTH":
			b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(arg, "PLAIN "))
			if string(b) != "\x00"+cluster.ClusterLogin+"\x00"+testSecret {
				reply("535 5.7.8 bad")
				continue
			}
			authed = true
			reply("235 2.7.0 ok")
		case "XIMPORT":
			f := strings.Fields(arg)
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if !authed || len(f) != 2 || err != nil {
				reply("503 5.5.1 no")
				continue
			}
			reply("354 go ahead")
			lr := io.LimitReader(br, n)
			err = h.im.ImportHome(context.Background(), f[0], lr)
			_, _ = io.Copy(io.Discard, lr)
			switch {
			case err == nil:
				reply("250 2.0.0 imported")
			case errors.Is(err, ErrRefused):
				reply("554 5.7.0 " + strings.ReplaceAll(err.Error(), "\n", " "))
			default:
				reply("451 4.3.0 " + strings.ReplaceAll(err.Error(), "\n", " "))
			}
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 5.5.2 unknown")
		}
	}
}

// twoNodes is node A (where xomail lives, with a real IMAP server and
// delivery store behind the gate) and node B (the fake hop, the real
// importer, its own store).
type twoNodes struct {
	s              *testenv.Slapd
	d              *directory.Directory
	aBase, bBase   string
	aHome, bHome   string
	gate           *Gate
	holds          *cluster.Holds
	aStore, bStore *delivery.Store
	local          Deliverer
	imapAddr       string
	imapSrv        *imap.Server
	ca             *testenv.CA
	mover          *Mover
	writer         *ldapHomeWriter
	hop            *fakeHop
}

func newTwoNodes(t *testing.T) *twoNodes {
	t.Helper()
	base := t.TempDir()
	n := &twoNodes{aBase: filepath.Join(base, "a"), bBase: filepath.Join(base, "b")}
	for _, d := range []string{n.aBase, n.bBase} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.aHome, n.bHome = filepath.Join(n.aBase, "xomail"), filepath.Join(n.bBase, "xomail")
	n.s, n.d = startDirectory(t, n.aBase)
	setMailHost(t, n.s, "xomail", "a", true)
	root := os.Geteuid() == 0
	var err error
	if n.aStore, err = delivery.NewStore(delivery.Options{Hostname: "node-a", Chown: root}); err != nil {
		t.Fatal(err)
	}
	if n.bStore, err = delivery.NewStore(delivery.Options{Hostname: "node-b", Chown: root}); err != nil {
		t.Fatal(err)
	}
	n.gate, n.holds = NewGate(), cluster.NewHolds()
	n.local = n.gate.Wrap(n.aStore)

	n.ca = testenv.NewCA(t)
	n.imapSrv, err = imap.NewServer(imap.Options{Auth: n.d, Chown: root,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{n.ca.IssueCertificate(t, "127.0.0.1")}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.imapAddr = ln.Addr().String()
	go n.imapSrv.Serve(ln, false)
	t.Cleanup(func() { n.imapSrv.Close() })

	n.hop = startHop(t, NewImporter(ImportOptions{Directory: otherNodeFS{n.d, n.aBase, n.bBase}, Chown: root}))
	c, err := cluster.New(cluster.Options{Self: "a", Secret: []byte(testSecret), Nodes: map[string]cluster.Node{
		"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: n.hop.ln.Addr().String()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	n.writer = &ldapHomeWriter{t: t, s: n.s}
	n.mover = NewMover(Options{Directory: n.d, FlushCache: n.d.FlushCache, Writer: n.writer, Cluster: c,
		Holds: n.holds, Gate: n.gate, Sessions: map[string]SessionEnder{"imap": n.imapSrv}})
	return n
}

// imapSession logs xomail in on node A over STARTTLS and selects INBOX;
// it returns the connection's reader.
func (n *twoNodes) imapSession(t *testing.T) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", n.imapAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	expect := func(r *bufio.Reader, tag string) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("IMAP: %v", err)
			}
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					t.Fatalf("IMAP: %s", l)
				}
				return
			}
		}
	}
	expect(br, "*")
	fmt.Fprintf(c, "s STARTTLS\r\n")
	expect(br, "s")
	tc := tls.Client(c, n.ca.ClientTLSConfig("127.0.0.1"))
	tr := bufio.NewReader(tc)
	fmt.Fprintf(tc, "l LOGIN xomail %s\r\n", testenv.XomailPassword)
	expect(tr, "l")
	fmt.Fprintf(tc, "x SELECT INBOX\r\n")
	expect(tr, "x")
	return tc, tr
}

func (n *twoNodes) deliver(ctx context.Context, d Deliverer, maildir, id string) error {
	body := "Message-ID: <" + id + "@load>\r\nSubject: " + id + "\r\n\r\nbody " + id + "\r\n"
	return d.Deliver(ctx, &delivery.Message{ID: id, From: "s@example.org", Body: bytes.NewReader([]byte(body)), Arrived: time.Now()},
		[]delivery.Recipient{{Address: "xomail@xoyize.xyz", Maildir: maildir, UID: 20000, GID: 20000}})[0]
}

var loadID = regexp.MustCompile(`Message-ID: <(load-\d+)@load>`)

// countIDs counts each load message in the INBOX of the maildir.
func countIDs(t *testing.T, maildir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, sub := range []string{"new", "cur"} {
		for _, name := range listDir(t, filepath.Join(maildir, sub)) {
			b, err := os.ReadFile(filepath.Join(maildir, sub, name))
			if err != nil {
				t.Fatal(err)
			}
			if m := loadID.FindSubmatch(b); m != nil {
				out[string(m[1])]++
			}
		}
	}
	return out
}

// The move under delivery load, with an open IMAP session: every message
// is in the new home exactly once, the old home is kept, byte for byte
// what was sent, the directory names B.
func TestMoveUnderLoad(t *testing.T) {
	t.Parallel()
	n := newTwoNodes(t)
	makeHome(t, n.aHome)
	ctx := context.Background()
	aMaildir := n.aHome + "/mailbox/"
	tc, tr := n.imapSession(t)
	defer tc.Close()

	// Load: copies to xomail's maildir on A, as smtp and the queue store
	// them; a refused copy is kept (the queue's retry) for the new home.
	var mu sync.Mutex
	var retry []string
	sent := 0
	stop := make(chan struct{})
	loadDone := make(chan error)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				loadDone <- nil
				return
			default:
			}
			id := fmt.Sprintf("load-%d", i)
			err := n.deliver(ctx, n.local, aMaildir, id)
			mu.Lock()
			sent++
			if err != nil {
				if !errors.Is(err, ErrMoving) {
					mu.Unlock()
					loadDone <- fmt.Errorf("%s: %w", id, err)
					return
				}
				retry = append(retry, id)
			}
			mu.Unlock()
			if err != nil {
				// A refused copy costs no fsync: paced, as senders retry.
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	for deadline := time.Now().Add(time.Minute); ; { // a few copies land before the move starts
		mu.Lock()
		k := sent
		mu.Unlock()
		if k >= 10 {
			break
		}
		select {
		case err := <-loadDone: // the load stopped early: it says why
			t.Fatalf("the load stopped after %d copies: %v", k, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d copies in a minute: the load is stuck", k)
		}
		time.Sleep(time.Millisecond)
	}

	var progress []string
	err := n.mover.Move(ctx, "xomail", "b", func(l string) { progress = append(progress, l) })
	if err != nil {
		t.Fatalf("Move: %v\n%s", err, strings.Join(progress, "\n"))
	}
	// A few more after: the old path stays closed.
	time.Sleep(5 * time.Millisecond)
	close(stop)
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s", strings.Join(progress, "\n"))
	if !strings.Contains(strings.Join(progress, "\n"), "ended 1 imap session(s)") {
		t.Errorf("the IMAP session was not reported ended")
	}
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(tr); err != nil {
		t.Errorf("the IMAP session was not closed: %v (read %q)", err, rest)
	}

	// The queue's retries find the new home.
	for _, id := range retry {
		if err := n.deliver(ctx, n.bStore, n.bHome+"/mailbox/", id); err != nil {
			t.Fatal(err)
		}
	}
	got := countIDs(t, n.bHome+"/mailbox")
	if len(got) != sent {
		t.Errorf("%d distinct messages in the new home, %d sent (%d retried)", len(got), sent, len(retry))
	}
	for id, k := range got {
		if k != 1 {
			t.Errorf("%s: %d copies", id, k)
		}
	}
	t.Logf("%d copies: %d stored on A and moved, %d refused during the move and stored on B", sent, sent-len(retry), len(retry))
	if len(retry) == 0 || len(retry) == sent {
		t.Errorf("the load did not straddle the move")
	}

	u, err := n.d.LookupUser(ctx, "xomail")
	if err != nil || u.Node != "b" {
		t.Errorf("directory: node %q, %v; want b", u.Node, err)
	}
	if n.writer.calls != 1 {
		t.Errorf("SetHomeNode called %d times", n.writer.calls)
	}
	if _, err := os.Lstat(n.aHome); !os.IsNotExist(err) {
		t.Errorf("old home still at its path: %v", err)
	}
	names := listDir(t, n.aBase)
	if len(names) != 1 || !strings.HasPrefix(names[0], "xomail.moved-") {
		t.Fatalf("node A's homes: %q, want xomail.moved-*", names)
	}
	if !strings.Contains(strings.Join(progress, "\n"), "old home kept (not deleted) at "+filepath.Join(n.aBase, names[0])) {
		t.Errorf("the kept path is not in the progress")
	}
	// What was sent is what A had when it stopped writing.
	old, moved := readTree(t, filepath.Join(n.aBase, names[0])), readTree(t, n.bHome)
	for rel, w := range old {
		if skipped(rel) {
			continue
		}
		g, ok := moved[rel]
		if strings.HasPrefix(rel, "mailbox/new/") || strings.HasPrefix(rel, "mailbox/cur/") {
			if !ok || g.content != w.content {
				t.Errorf("%s differs in the new home", rel)
			}
			continue
		}
		if !ok || g.kind != w.kind || (g.kind != "dir" && g.content != w.content) {
			t.Errorf("%s differs in the new home", rel)
		}
	}
	if n.holds.Held(n.aHome) {
		t.Error("still held after the move")
	}
	if !n.gate.IsClosed(n.aHome) {
		t.Error("the old path takes copies again")
	}
	if err := n.deliver(ctx, n.local, aMaildir, "late"); !errors.Is(err, ErrMoving) {
		t.Errorf("a copy routed with a stale lookup: %v, want ErrMoving", err)
	}
	if _, err := os.Lstat(n.aHome); !os.IsNotExist(err) {
		t.Error("a late copy recreated the old home")
	}
}

// A refusal by the new node leaves the user where they were: directory,
// home, deliveries and logins as before.
func TestMoveRefusedStaysHome(t *testing.T) {
	t.Parallel()
	n := newTwoNodes(t)
	makeHome(t, n.aHome)
	// B already has mail for the user: the import must refuse.
	if err := os.MkdirAll(n.bHome+"/mailbox/new", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.bHome+"/mailbox/new/1.M1", []byte("on b"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := readTree(t, n.aHome)
	ctx := context.Background()
	var progress []string
	err := n.mover.Move(ctx, "xomail", "b", func(l string) { progress = append(progress, l) })
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 554 || !strings.Contains(re.Text, "already exists") {
		t.Fatalf("Move = %v, want B's 554", err)
	}
	if n.writer.calls != 0 {
		t.Error("the directory was written")
	}
	if u, err := n.d.LookupUser(ctx, "xomail"); err != nil || u.Node != "a" {
		t.Errorf("directory: %q, %v", u.Node, err)
	}
	if n.holds.Held(n.aHome) || n.gate.IsClosed(n.aHome) {
		t.Error("still held")
	}
	if err := n.deliver(ctx, n.local, n.aHome+"/mailbox/", "load-1"); err != nil {
		t.Errorf("delivery after a failed move: %v", err)
	}
	after := readTree(t, n.aHome)
	for rel := range before {
		if _, ok := after[rel]; !ok {
			t.Errorf("%s gone from the old home", rel)
		}
	}
	tc, _ := n.imapSession(t) // logins are no longer refused
	tc.Close()
	if got := listDir(t, n.bBase); len(got) != 1 {
		t.Errorf("node B: %q (staging left?)", got)
	}

	// Wrong node names never start anything.
	for _, node := range []string{"a", "c", "../b", ""} {
		if err := n.mover.Move(ctx, "xomail", node, nil); err == nil {
			t.Errorf("move to %q accepted", node)
		}
	}
	if n.holds.Held(n.aHome) {
		t.Error("held after refused requests")
	}
}

// laggingReplica is this node's replica behind the provider: it shows
// node A until caughtUp is closed.
type laggingReplica struct {
	d        *directory.Directory
	caughtUp chan struct{}
}

func (l laggingReplica) LookupUser(ctx context.Context, login string) (directory.User, error) {
	u, err := l.d.LookupUser(ctx, login)
	select {
	case <-l.caughtUp:
	default:
		u.Node = "a"
	}
	return u, err
}

// A replica slower than ReplicaWait: the move returns with the user still
// held, and finishes once the replica shows the new home.
func TestMoveSlowReplica(t *testing.T) {
	t.Parallel()
	n := newTwoNodes(t)
	makeHome(t, n.aHome)
	lag := laggingReplica{d: n.d, caughtUp: make(chan struct{})}
	n.mover.o.Directory = lag
	n.mover.o.ReplicaWait = 300 * time.Millisecond
	var progress []string
	if err := n.mover.Move(context.Background(), "xomail", "b", func(l string) { progress = append(progress, l) }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(progress, "\n"), "does not show the new home yet") {
		t.Errorf("progress:\n%s", strings.Join(progress, "\n"))
	}
	if !n.holds.Held(n.aHome) {
		t.Fatal("released before this node's replica shows the new home")
	}
	if _, err := os.Lstat(n.aHome); err != nil {
		t.Fatalf("old home set aside before the replica caught up: %v", err)
	}
	close(lag.caughtUp)
	deadline := time.Now().Add(20 * time.Second)
	for n.holds.Held(n.aHome) {
		if time.Now().After(deadline) {
			t.Fatal("still held after the replica caught up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if names := listDir(t, n.aBase); len(names) != 1 || !strings.HasPrefix(names[0], "xomail.moved-") {
		t.Errorf("node A's homes: %q", names)
	}
	if !n.gate.IsClosed(n.aHome) {
		t.Error("the old path takes copies again")
	}
}

// failingWriter fails its first fail calls of SetHomeNode.
type failingWriter struct {
	fail  int
	calls []string
}

func (w *failingWriter) SetHomeNode(_ context.Context, login, node string) error {
	w.calls = append(w.calls, node)
	if len(w.calls) <= w.fail {
		return errors.New("provider timeout")
	}
	return nil
}

// A failed attribute write is undone by writing the old home back; when
// that fails too, the user stays held rather than written to on a node
// the directory may no longer name.
func TestMoveAttributeWriteFails(t *testing.T) {
	t.Parallel()
	n := newTwoNodes(t)
	makeHome(t, n.aHome)
	w := &failingWriter{fail: 1}
	n.mover.o.Writer = w
	err := n.mover.Move(context.Background(), "xomail", "b", nil)
	if err == nil || !strings.Contains(err.Error(), "set back to a") {
		t.Fatalf("Move = %v", err)
	}
	if strings.Join(w.calls, ",") != "b,a" {
		t.Errorf("writes %q, want b then a", w.calls)
	}
	if n.holds.Held(n.aHome) || n.gate.IsClosed(n.aHome) {
		t.Error("still held after the old home was written back")
	}
	if _, err := os.Lstat(n.aHome); err != nil {
		t.Errorf("old home: %v", err)
	}

	// B has the copy now: set it aside as an admin would, then fail both.
	if err := os.Rename(n.bHome, n.bHome+".unused"); err != nil {
		t.Fatal(err)
	}
	w = &failingWriter{fail: 2}
	n.mover.o.Writer = w
	err = n.mover.Move(context.Background(), "xomail", "b", nil)
	if err == nil || !strings.Contains(err.Error(), "stays held") {
		t.Fatalf("Move = %v", err)
	}
	if !n.holds.Held(n.aHome) || !n.gate.IsClosed(n.aHome) {
		t.Error("released while the home attribute is unknown")
	}
}

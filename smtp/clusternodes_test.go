package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
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
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/filter"
	"courriel/internal/testenv"
	"courriel/loginguard"
)

// The two-node harness: one real slapd, two nodes "a" and "b" in this
// process, each with its own directory client, delivery store (its file
// names carry the node's name), Sieve filter, queue and SMTP servers
// (port 25 and the cluster listener), as two courriel serve processes
// have them. Both share the fixture's home base, as nodes sharing one
// directory with one homeDirectory per user do: which node stored a copy
// shows in the file's name.

const clusterSecret = "0123456789abcdef-cluster-secret"

// clusterClock is the queues' clock: tests move it to a node copy's next
// retry instead of waiting for it.
type clusterClock struct{ off atomic.Int64 }

func (c *clusterClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clusterClock) advance(d time.Duration) { c.off.Add(int64(d)) }

type clusterNode struct {
	name      string
	dir       *directory.Directory
	store     *delivery.Store
	queue     *queue.Queue
	holds     *cluster.Holds
	clock     *clusterClock
	smtpAddr  string // port 25
	hopAddr   string // listen.cluster
	inbound   *Server
	hop       *Server
	hopOpts   Options
	hopDials  atomic.Int32 // dials of this node's queue to the other node's cluster listener
	stopQueue context.CancelFunc
	queueDone chan struct{}
	imports   chan []byte // what XIMPORT handed to ImportHome
	bounces   chan []byte // the DSNs the queue sent

	mu sync.Mutex // guards hop, replaced by startHop
}

type clusterEnv struct {
	slapd    *testenv.Slapd
	homeBase string
	a, b     *clusterNode
}

// homesOf is the queue's HomeFinder as cmd builds it.
type homesOf struct {
	dir   *directory.Directory
	holds *cluster.Holds
}

func (h homesOf) Home(ctx context.Context, maildrop string) (string, bool, error) {
	mb, err := h.dir.Mailbox(ctx, maildrop)
	if errors.Is(err, directory.ErrNotFound) {
		return "", false, queue.ErrNoHome
	}
	if err != nil {
		return "", false, err
	}
	return mb.Node, h.holds.Held(mb.Home), nil
}

// setHome gives an entry inetLocalMailRecipient and mailHost node (the
// object class once).
func (e *clusterEnv) setHome(t testing.TB, uid, node string, first bool) {
	t.Helper()
	ldif := "dn: uid=" + uid + ",ou=mail,dc=xoyize,dc=xyz\nchangetype: modify\n"
	if first {
		ldif += "add: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: " + node + "\n"
	} else {
		ldif += "replace: mailHost\nmailHost: " + node + "\n"
	}
	e.slapd.Modify(t, ldif)
}

func clusterLogger(t testing.TB, name string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	return slog.New(slog.DiscardHandler)
}

// clusterOpt changes the harness.
type clusterOpt struct {
	// via returns the address node a dials for b's cluster listener (a
	// proxy in front of it).
	via func(hopB string) string
	// tls: the hops use STARTTLS, verified against a test CA.
	tls bool
}

// startClusterEnv starts slapd, homes xomail on a and alice and bob on b,
// and starts both nodes, their directory caches keeping answers for
// cacheTTL (-1: none, so that a changed home is seen at once).
func startClusterEnv(t testing.TB, cacheTTL time.Duration, opts ...clusterOpt) *clusterEnv {
	t.Helper()
	parent := t.TempDir()
	homeBase := filepath.Join(parent, "vmail")
	if err := os.Mkdir(homeBase, 0o711); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartSlapd(t, testenv.WithHomeBase(homeBase))
	e := &clusterEnv{slapd: s, homeBase: homeBase}
	e.setHome(t, "xomail", "a", true)
	e.setHome(t, "alice", "b", true)
	e.setHome(t, "bob", "b", true)

	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	smtpA, hopA, smtpB, hopB := listen(), listen(), listen(), listen()
	nodes := map[string]cluster.Node{
		"a": {SMTP: hopA.Addr().String(), IMAP: "127.0.0.1:1"},
		"b": {SMTP: hopB.Addr().String(), IMAP: "127.0.0.1:1"},
	}
	var o clusterOpt
	for _, x := range opts {
		if x.via != nil {
			o.via = x.via
		}
		o.tls = o.tls || x.tls
	}
	nodesA := nodes
	if o.via != nil {
		nodesA = map[string]cluster.Node{"a": nodes["a"], "b": {SMTP: o.via(hopB.Addr().String()), IMAP: "127.0.0.1:1"}}
	}
	var ca *testenv.CA
	if o.tls {
		ca = testenv.NewCA(t)
	}
	e.a = startClusterNode(t, e, "a", nodesA, smtpA, hopA, cacheTTL, ca)
	e.b = startClusterNode(t, e, "b", nodes, smtpB, hopB, cacheTTL, ca)
	return e
}

func startClusterNode(t testing.TB, e *clusterEnv, name string, nodes map[string]cluster.Node, smtpLn, hopLn net.Listener, cacheTTL time.Duration, ca *testenv.CA) *clusterNode {
	t.Helper()
	log := clusterLogger(t, name)
	s := e.slapd
	d, err := directory.New(directory.Options{
		URLs: []string{s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true,
		BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
		DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second,
		HomeAttribute: "mailHost", CacheTTL: cacheTTL, NegativeCacheTTL: cacheTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	co := cluster.Options{Self: name, Nodes: nodes, Secret: []byte(clusterSecret), ConnectTimeout: time.Second}
	var hopTLS *tls.Config
	if ca != nil {
		co.TLS = &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
		hopTLS = &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "localhost", "127.0.0.1")}}
	}
	cl, err := cluster.New(co)
	if err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{name: name, dir: d, holds: cluster.NewHolds(), clock: &clusterClock{}, imports: make(chan []byte, 4), bounces: make(chan []byte, 16),
		smtpAddr: smtpLn.Addr().String(), hopAddr: hopLn.Addr().String()}
	n.store, err = delivery.NewStore(delivery.Options{Hostname: "node" + name, AllowedBase: e.homeBase,
		Chown: os.Geteuid() == 0, Logger: log.With("component", "delivery")})
	if err != nil {
		t.Fatal(err)
	}
	var q *queue.Queue
	f, err := filter.New(filter.Options{Store: n.store, Directory: d, Hostname: "node" + name, Chown: os.Geteuid() == 0,
		Logger: log.With("component", "filter"), Outbound: lateQueue{&q}})
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{}
	q, err = queue.Open(queue.Options{
		Dir: filepath.Join(t.TempDir(), "spool"), Hostname: "node" + name + ".test", Logger: log,
		Local: f, Cluster: cl, Homes: homesOf{d, n.holds}, Now: n.clock.now,
		PollInterval: 50 * time.Millisecond, TLSPolicy: queue.PolicyNone,
		Bounce: func(_ context.Context, _ *queue.Message, report []byte, _ ...queue.Option) error {
			n.bounces <- report
			return nil
		},
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			n.hopDials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.queue = q
	ctx, cancel := context.WithCancel(context.Background())
	n.stopQueue, n.queueDone = cancel, make(chan struct{})
	go func() {
		defer close(n.queueDone)
		q.Run(ctx)
	}()
	t.Cleanup(func() {
		n.stopQueue()
		<-n.queueDone
		q.Close()
	})
	guard := loginguard.New(loginguard.Options{BaseDelay: -1, NetLimit: -1})
	base := Options{
		Hostname: "mx.xoyize.xyz", Directory: d, Deliverer: f, Queue: q, Logger: log.With("component", "smtp"),
		ClusterNodes: cl, Holds: n.holds, Mailboxes: d, Guard: guard,
		LookupAddr: func(context.Context, string) ([]string, error) { return nil, errors.New("no rdns in tests") },
	}
	in := base
	in.Kind = Inbound
	if n.inbound, err = NewServer(in); err != nil {
		t.Fatal(err)
	}
	hop := base
	hop.Kind, hop.Listener, hop.TLSConfig = Cluster, "cluster", hopTLS
	hop.ImportHome = func(ctx context.Context, login string, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		n.imports <- append([]byte(login+"\n"), b...)
		return nil
	}
	n.hopOpts = hop
	if n.hop, err = NewServer(hop); err != nil {
		t.Fatal(err)
	}
	go n.inbound.Serve(smtpLn)
	go n.hop.Serve(hopLn)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.inbound.Shutdown(ctx)
		n.mu.Lock()
		hop := n.hop
		n.mu.Unlock()
		hop.Shutdown(ctx)
	})
	return n
}

// lateQueue lets the filter queue through a queue opened after it.
type lateQueue struct{ q **queue.Queue }

func (l lateQueue) Accept(ctx context.Context, out filter.Outgoing) (string, []error, error) {
	if out.RemoteFrom != "" {
		return (*l.q).AcceptForward(ctx, out.MsgID, out.From, out.RemoteFrom, out.Remote, out.Local, out.Data, queue.WithOnceKey(out.Key))
	}
	return (*l.q).Accept(ctx, out.MsgID, out.From, out.Remote, out.Local, out.Data, queue.WithOnceKey(out.Key))
}

// stopHop closes the node's cluster listener (the node is "down" for the
// others: connections refused); startHop listens again on the same port.
func (n *clusterNode) stopHop(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	hop := n.hop
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hop.Shutdown(ctx) // the listener and every connection: the node is gone
}

func (n *clusterNode) startHop(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger a moment
		if ln, err = net.Listen("tcp", n.hopAddr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(n.hopOpts)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.hop = srv
	n.mu.Unlock()
	go srv.Serve(ln)
}

// mailFiles lists the message files of a maildir folder ("" INBOX), new/
// and cur/.
func mailFiles(t testing.TB, maildir, folder string) []string {
	t.Helper()
	if folder != "" {
		maildir = filepath.Join(maildir, "."+folder)
	}
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(maildir, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Join(maildir, sub, e.Name()))
		}
	}
	return out
}

// waitFor polls cond until it holds, within a bounded time.
func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *clusterEnv) maildir(user string) string {
	return filepath.Join(e.homeBase, user, "mailbox")
}

// queueLen is the number of messages in a node's spool.
func (n *clusterNode) queueLen(t testing.TB) int {
	t.Helper()
	l, err := n.queue.List()
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

// mustContain fails unless s has every part.
func mustContain(t testing.TB, what, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%s lacks %q:\n%s", what, p, s)
		}
	}
}

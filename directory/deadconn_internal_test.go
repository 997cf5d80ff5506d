package directory

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/internal/testenv"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// resettingProxy forwards TCP connections to a server. reset makes it
// behave as a server host that rebooted: the connections open so far lose
// their server, and each answers its client's next bytes with a TCP reset,
// as the rebooted host's kernel does; the client has seen nothing until it
// writes. New connections are forwarded again. freeze makes it a server
// that hangs: every connection, open or new, takes bytes and never answers.
//
// It counts, once frozen, the connections it accepted (each a setup on
// the hung server) and the open ones that were sent a request (each left
// unanswered until the client's request timeout).
type resettingProxy struct {
	ln     net.Listener
	target string

	acceptedFrozen atomic.Int64
	sentFrozen     atomic.Int64

	mu     sync.Mutex
	pairs  []*proxyPair // guarded by mu; every pair, for the cleanup
	frozen bool         // guarded by mu
}

type proxyPair struct {
	p              *resettingProxy
	client, server net.Conn
	mu             sync.Mutex
	dead           bool // guarded by mu
	frozen         bool // guarded by mu
	sentFrozen     bool // guarded by mu; counted in p.sentFrozen
}

func startResettingProxy(t *testing.T, target string) *resettingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &resettingProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pp := range p.pairs {
			pp.client.Close()
			pp.server.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			frozen := p.frozen
			if frozen {
				p.pairs = append(p.pairs, &proxyPair{p: p, client: c, server: c})
				p.acceptedFrozen.Add(1)
			}
			p.mu.Unlock()
			if frozen {
				continue // accepted, never answered
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			pp := &proxyPair{p: p, client: c, server: s}
			p.mu.Lock()
			p.pairs = append(p.pairs, pp)
			p.mu.Unlock()
			go io.Copy(c, s) // the server's replies, until reset
			go pp.fromClient()
		}
	}()
	return p
}

// fromClient forwards the client's bytes, or after reset answers them with
// a reset.
func (pp *proxyPair) fromClient() {
	buf := make([]byte, 32<<10)
	for {
		n, err := pp.client.Read(buf)
		if err != nil {
			pp.server.Close()
			return
		}
		pp.mu.Lock()
		dead, frozen := pp.dead, pp.frozen
		if frozen && !pp.sentFrozen {
			pp.sentFrozen = true
			pp.p.sentFrozen.Add(1)
		}
		pp.mu.Unlock()
		if frozen {
			continue
		}
		if dead {
			pp.client.(*net.TCPConn).SetLinger(0)
			pp.client.Close()
			return
		}
		if _, err := pp.server.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (p *resettingProxy) url() string { return "ldap://" + p.ln.Addr().String() }

func (p *resettingProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
	for _, pp := range p.pairs {
		pp.mu.Lock()
		pp.frozen = true
		pp.mu.Unlock()
	}
}

func (p *resettingProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pp := range p.pairs {
		pp.mu.Lock()
		pp.dead = true
		pp.mu.Unlock()
		// The server side goes away without a word to the client.
		pp.server.Close()
	}
}

// A directory server whose host rebooted leaves every pooled connection
// dead without the client knowing: the first request on each is answered
// by a reset. A lookup retries on a fresh connection, not on another pooled
// one that is just as dead, so that no lookup answers "unavailable" (4xx)
// for a server that answers again; likewise a password check.
func TestDeadPooledConnectionsRetryFresh(t *testing.T) {
	s := testenv.StartSlapd(t)
	p := startResettingProxy(t, s.URL()[len("ldap://"):])
	d, err := New(Options{
		URLs: []string{p.url()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true, ServerName: "127.0.0.1",
		BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
		CacheTTL: -1, NegativeCacheTTL: -1, PoolSize: 3,
		DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	fill := func(pool *connPool) {
		t.Helper()
		var conns []*ldap.Conn
		for range pool.opts.PoolSize {
			c, err := pool.get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			pool.put(c, false)
		}
	}
	fill(d.searches)
	fill(d.binds)
	p.reset()
	for i := range 2 {
		if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
			t.Errorf("lookup %d after the server's host rebooted: %v", i, err)
		}
		if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil {
			t.Errorf("login %d after the server's host rebooted: %v", i, err)
		}
	}
}

// A server that hangs in the middle of a session (its connections open,
// its process stuck) costs the lookup on it one request timeout: the retry
// on a fresh connection goes to the next URL at once, not after waiting
// out a connection setup on the hung one too; so does a password bind.
// The proxy counts what the hung server was given: one request on the
// pooled connection each, and no new connection to set up.
func TestHungServerMidSessionRetriesElsewhere(t *testing.T) {
	s := testenv.StartSlapd(t)
	p := startResettingProxy(t, s.URL()[len("ldap://"):])
	const request = 2 * time.Second
	d, err := New(Options{
		URLs: []string{p.url(), s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true, ServerName: "localhost",
		BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
		CacheTTL: -1, NegativeCacheTTL: -1, PoolSize: 1,
		DialTimeout: time.Second, RequestTimeout: request,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	// The preferred-URL check would dial the hung server too, in the
	// background and costing no lookup anything, yet counted by the proxy
	// as one of the setups this test is about.
	d.searches.checkEvery, d.binds.checkEvery = 0, 0
	ctx := context.Background()
	if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil {
		t.Fatal(err)
	}
	p.freeze()
	frozen := time.Now()
	check := func(what string, sent int64) {
		t.Helper()
		if n := p.acceptedFrozen.Load(); n != 0 {
			if time.Since(frozen) >= failedURLsFor {
				// Not a slow path in the code: the mark ran out.
				t.Skipf("%v since the freeze, past the hung URL's mark (%v): a dial to it is due again", time.Since(frozen), failedURLsFor)
			}
			t.Errorf("%s with the first server hung: %d connections set up on it since it hung, want 0 (the retry goes to the next URL)", what, n)
		}
		if n := p.sentFrozen.Load(); n != sent {
			t.Errorf("%s with the first server hung: %d pooled connections to it sent a request, want %d", what, n, sent)
		}
	}
	if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
		t.Errorf("lookup with the first server hung: %v", err)
	}
	check("lookup", 1) // the search pool's one connection
	if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil {
		t.Errorf("login with the first server hung: %v", err)
	}
	check("login", 2) // and the binds pool's
}

// searchHangingProxy forwards plain LDAP connections to a server, message
// by message; once hang is called, it forwards every request but the
// searches, which it drops: a server whose frontend still takes
// connections and binds while its database is stuck. It counts the
// searches it dropped, those of them that read one entry (the base
// object: the pool's probe of the search base, not a lookup), the
// connections it accepted and the clients' connections still open.
type searchHangingProxy struct {
	ln          net.Listener
	target      string
	hung        atomic.Bool
	dropped     atomic.Int64
	droppedBase atomic.Int64
	accepted    atomic.Int64
	open        atomic.Int64
}

func startSearchHangingProxy(t *testing.T, target string) *searchHangingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &searchHangingProxy{ln: ln, target: target}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			p.accepted.Add(1)
			p.open.Add(1)
			go io.Copy(c, s)
			go func() {
				defer p.open.Add(-1)
				defer s.Close()
				for {
					pkt, err := ber.ReadPacket(c)
					if err != nil {
						return
					}
					if len(pkt.Children) > 1 && pkt.Children[1].Tag == ldap.ApplicationSearchRequest && p.hung.Load() {
						p.dropped.Add(1)
						if req := pkt.Children[1].Children; len(req) > 1 && req[1].Value == int64(ldap.ScopeBaseObject) {
							p.droppedBase.Add(1)
						}
						continue
					}
					if _, err := s.Write(pkt.Bytes()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *searchHangingProxy) url() string { return "ldap://" + p.ln.Addr().String() }

// A first server whose searches hang while it still takes connections and
// binds costs the lookups one request timeout, not one per pooled
// connection to it (they are closed with the first timeout), nor one
// every preferred-URL check (a check that only connects and binds would
// find it answering, send lookups back to it and flush the cache): the
// check reads the search base before it declares a server answering.
// The proxy counts the lookups' searches the hung server was sent (those
// it dropped, but the checks' base-object probes): one, however many
// checks have come and gone.
func TestSearchesHungServerCostsOneTimeout(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	p := startSearchHangingProxy(t, s.URL()[len("ldap://"):])
	const request = time.Second
	d, err := New(Options{
		URLs: []string{p.url(), s.URL()}, BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
		CacheTTL: -1, NegativeCacheTTL: -1, PoolSize: 3,
		DialTimeout: time.Second, RequestTimeout: request,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	const check = 100 * time.Millisecond
	d.searches.checkEvery = check
	ctx := context.Background()
	fillPool(t, d) // every pooled connection on the first server
	p.hung.Store(true)
	before := p.accepted.Load()
	// Lookups until the pool has dialed the first server for several
	// checks: a check that cleared it would send the lookups after it
	// back there. The lookups' retries never dial it (it is marked as
	// failing), so each connection accepted is a check's.
	const checks = 4
	const hang = 60 * time.Second // some 5 s of checks: only a hang takes this long
	for deadline := time.Now().Add(hang); p.accepted.Load()-before < checks; {
		if time.Now().After(deadline) {
			t.Fatalf("%d preferred-URL checks of the hung server in %v, want %d: hung", p.accepted.Load()-before, hang, checks)
		}
		if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
			t.Errorf("lookup with the first server's searches hung: %v", err)
		}
		time.Sleep(check / 2)
	}
	if n := p.dropped.Load() - p.droppedBase.Load(); n != 1 {
		t.Errorf("the hung server was sent %d lookups' searches, want 1 (%d probes besides)", n, p.droppedBase.Load())
	}
}

// A request timeout on a connection to a hung server closes the pool's
// idle connections to it at once, not when lookups happen to draw them
// (get drops them then, unanswered): kept open, they hold the hung
// server's connections (slapd's, up to its limits) and the pool's slots
// for as long as the lookups take to come round to them. The searches
// after the first send none to the hung server.
func TestHungURLIdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	p := startSearchHangingProxy(t, s.URL()[len("ldap://"):])
	d, err := New(Options{
		URLs: []string{p.url(), s.URL()}, BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"}, CacheTTL: -1, NegativeCacheTTL: -1, PoolSize: 4,
		DialTimeout: time.Second, RequestTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	// Only lookups and timeouts move connections: no check of the
	// preferred URL.
	d.searches.checkEvery = 0
	ctx := context.Background()
	fillPool(t, d)
	if n := p.open.Load(); n != int64(d.opts.PoolSize) {
		t.Fatalf("%d connections to the first server, want %d", n, d.opts.PoolSize)
	}
	p.hung.Store(true)
	// One search (a whole ResolveRecipient's would draw the idle
	// connections itself): it waits out one request timeout, then is
	// answered by the second server.
	lookup := func() error {
		before := d.Stats().Searches
		_, err := d.search(ctx, "(uid=xomail)", []string{"uid"})
		if n := d.Stats().Searches - before; err == nil && n > 2 {
			err = fmt.Errorf("%d searches, want 1 and its retry", n)
		}
		return err
	}
	if err := lookup(); err != nil {
		t.Fatalf("search with the first server's searches hung: %v", err)
	}
	d.searches.mu.Lock()
	onHung := 0
	for _, pc := range d.searches.conns {
		if pc.at == 0 {
			onHung++
		}
	}
	d.searches.mu.Unlock()
	if onHung != 0 {
		t.Errorf("after the timeout, the pool holds %d connections to the hung server, want 0", onHung)
	}
	// The pool closed them; the proxy sees each close as it reads it.
	for deadline := time.Now().Add(waitClosed); p.open.Load() != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.open.Load(); n != 0 {
		t.Errorf("after the timeout, %d connections to the hung server still open, want 0", n)
	}
	for i := range d.opts.PoolSize {
		if err := lookup(); err != nil {
			t.Errorf("search %d after the timeout: %v", i, err)
		}
	}
	if n := p.dropped.Load(); n != 1 {
		t.Errorf("the hung server was sent %d searches, want 1", n)
	}
}

// waitClosed bounds the wait for a closed connection's end to reach the
// other side: generous, CI runs -race on 2 shared cores.
const waitClosed = 10 * time.Second

// fillPool fills d's search pool with idle connections, each set up on
// the first URL that answers.
func fillPool(t *testing.T, d *Directory) {
	t.Helper()
	var conns []*ldap.Conn
	for range d.opts.PoolSize {
		c, err := d.searches.get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		d.searches.put(c, false)
	}
}

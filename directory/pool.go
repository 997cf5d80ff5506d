package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// connPool keeps up to size open connections to the directory, each bound
// as bindDN (empty: anonymous). Broken connections are dropped, never put
// back, so a restarted server is reached again on the next call.
//
// Each connection remembers which URL it reached. While some are on a
// later URL than the first (a failover), an earlier URL that answers again
// retires them: idle ones are closed at once, busy ones when they come
// back, so that lookups go back to the preferred server (the node's local
// replica, the one the Watcher follows) instead of staying on the
// fallback for as long as its connections live. The Watcher reports an
// earlier URL back (retire); without one, get tries the earlier URLs every
// checkEvery while connections are on a later one.
type connPool struct {
	opts   *Options
	urls   []string // tried in order
	tls    *tls.Config
	bindDN string
	bindPW string
	idle   chan *ldap.Conn // idle, healthy connections
	slots  chan struct{}   // one token per open connection: bounds the pool
	// checkEvery is how often get tries the earlier URLs while a
	// connection is on a later one; 0: never.
	checkEvery time.Duration
	// onRetire is called after connections were retired (the cache may
	// hold answers from the fallback); may be nil.
	onRetire func()
	// failed remembers the URLs whose setup failed, shared by the pools
	// of one Directory; nil: none remembered (the write pools).
	failed *failedURLs

	mu        sync.Mutex
	conns     map[*ldap.Conn]*pooledConn // guarded by mu; every connection get handed out, until discarded
	lastCheck time.Time                  // guarded by mu
	checking  bool                       // guarded by mu
	closed    bool                       // guarded by mu; close was called
}

// pooledConn is what the pool knows of one of its connections.
type pooledConn struct {
	at      int  // index in urls
	retired bool // an earlier URL answers again: close it when it comes back
}

// preferredCheckEvery is connPool.checkEvery.
const preferredCheckEvery = 30 * time.Second

func newConnPool(o *Options, tlsConf *tls.Config, bindDN, bindPW string) *connPool {
	return &connPool{
		opts: o, urls: o.URLs, tls: tlsConf, bindDN: bindDN, bindPW: bindPW,
		idle:       make(chan *ldap.Conn, o.PoolSize),
		slots:      make(chan struct{}, o.PoolSize),
		checkEvery: preferredCheckEvery,
		conns:      map[*ldap.Conn]*pooledConn{},
	}
}

func buildTLSConfig(o *Options) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("LDAP CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("LDAP CA file %s: no PEM certificate in it", o.CAFile)
		}
		c.RootCAs = pool
	}
	// tls_require_cert = never: the operator explicitly gave up verification.
	c.InsecureSkipVerify = !o.RequireCert
	return c, nil
}

// get returns a connection: an idle one, or a new one when the pool has room,
// or waits for one to come back.
func (p *connPool) get(ctx context.Context) (*ldap.Conn, error) {
	p.maybeCheckPreferred()
	select {
	case c := <-p.idle:
		if p.usable(c) {
			return c, nil
		}
		p.discard(c)
	default:
	}
	select {
	case c := <-p.idle:
		if p.usable(c) {
			return c, nil
		}
		p.discard(c)
		return p.get(ctx)
	case p.slots <- struct{}{}:
		return p.dialInSlot(ctx)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for an LDAP connection: %v", ErrUnavailable, ctx.Err())
	}
}

// fresh returns a newly dialed connection, never an idle one: it is for
// the retry after a transport error, when the idle connections are as
// suspect as the one that failed. A server host that rebooted leaves every
// pooled connection dead without the client knowing (the first request on
// each is answered by a reset), so a retry on another pooled connection
// fails the same way; Postfix's dict_ldap likewise reconnects before its
// one retry. When the pool is full, an idle connection is closed to make
// room.
func (p *connPool) fresh(ctx context.Context) (*ldap.Conn, error) {
	for {
		select {
		case p.slots <- struct{}{}:
			return p.dialInSlot(ctx)
		default:
		}
		select {
		case c := <-p.idle:
			p.discard(c)
		case p.slots <- struct{}{}:
			return p.dialInSlot(ctx)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for an LDAP connection: %v", ErrUnavailable, ctx.Err())
		}
	}
}

// dialInSlot dials a connection in the slot the caller has just taken,
// and frees the slot when the dial fails.
func (p *connPool) dialInSlot(ctx context.Context) (*ldap.Conn, error) {
	c, at, err := p.dialAvoidingFailed(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	p.mu.Lock()
	p.conns[c] = &pooledConn{at: at}
	p.mu.Unlock()
	return c, nil
}

// usable reports whether c, taken from idle or given back, may be kept:
// not closing, not retired, and the pool not closed.
func (p *connPool) usable(c *ldap.Conn) bool {
	if c.IsClosing() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.conns[c]
	return !p.closed && (pc == nil || !pc.retired)
}

// timedOut notes a request on c that err ended: when the server did not
// answer in time (hung since the connection was made), its URL is tried
// last (failedURLs), so that the retry on a fresh connection does not wait
// for it once more, and the pool's other connections to it are retired,
// so that they are not handed out to wait too.
func (p *connPool) timedOut(c *ldap.Conn, err error) {
	// Not the caller's deadline, nor the server's answer timeLimitExceeded:
	// no answer at all.
	if err == nil || !isTimeout(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultTimeLimitExceeded) {
		return
	}
	p.mu.Lock()
	pc := p.conns[c]
	n := 0
	if pc != nil {
		// The pool's other connections to that URL reach the same hung
		// server: handed out one after another, each would cost a lookup
		// a request timeout before its retry goes elsewhere.
		for _, o := range p.conns {
			if o.at == pc.at && !o.retired {
				o.retired = true
				n++
			}
		}
	}
	p.mu.Unlock()
	if pc == nil {
		return
	}
	p.failed.set(p.urls[pc.at], false)
	if n > 0 {
		p.closeIdleRetired()
	}
}

// urlOf returns the URL c is connected to; "" for a connection the pool
// did not hand out.
func (p *connPool) urlOf(c *ldap.Conn) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc := p.conns[c]; pc != nil {
		return p.urls[pc.at]
	}
	return ""
}

// discard closes c and frees its slot.
func (p *connPool) discard(c *ldap.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	<-p.slots
}

// put gives c back; a connection that saw a transport error is closed, and
// so is one retired meanwhile or given back to a closed pool (a call in
// flight when a replaced Directory was closed).
func (p *connPool) put(c *ldap.Conn, broken bool) {
	if broken || !p.usable(c) {
		p.discard(c)
		return
	}
	select {
	case p.idle <- c:
	default:
		p.discard(c)
	}
}

// close closes the idle connections now and the busy ones as they come
// back.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case c := <-p.idle:
			p.discard(c)
		default:
			return
		}
	}
}

// retire marks every connection to a URL after urls[at] as retired, and
// closes those that are idle.
func (p *connPool) retire(at int) {
	p.failed.set(p.urls[at], true)
	n := 0
	p.mu.Lock()
	for _, pc := range p.conns {
		if pc.at > at && !pc.retired {
			pc.retired = true
			n++
		}
	}
	p.mu.Unlock()
	if n == 0 {
		return
	}
	p.closeIdleRetired()
	if p.onRetire != nil {
		p.onRetire()
	}
}

// closeIdleRetired closes the idle connections marked retired and gives
// the others back.
func (p *connPool) closeIdleRetired() {
	for range cap(p.idle) {
		select {
		case c := <-p.idle:
			p.put(c, false)
		default:
		}
	}
}

// maybeCheckPreferred starts, at most every checkEvery and one at a time,
// a check of the URLs before the latest one a connection is on: the
// first that answers retires the connections after it.
func (p *connPool) maybeCheckPreferred() {
	if p.checkEvery <= 0 {
		return
	}
	p.mu.Lock()
	latest := 0
	for _, pc := range p.conns {
		if !pc.retired {
			latest = max(latest, pc.at)
		}
	}
	now := time.Now()
	if latest == 0 || p.checking || now.Sub(p.lastCheck) < p.checkEvery {
		p.mu.Unlock()
		return
	}
	p.checking, p.lastCheck = true, now
	p.mu.Unlock()
	go func() {
		defer func() {
			p.mu.Lock()
			p.checking = false
			p.mu.Unlock()
		}()
		for i, raw := range p.urls[:latest] {
			ctx, cancel := context.WithTimeout(context.Background(), p.opts.DialTimeout+p.opts.RequestTimeout)
			c, err := p.dialOne(ctx, raw)
			cancel()
			if err == nil {
				err = p.probe(c, raw)
				c.Close()
			}
			if err == nil {
				p.retire(i)
				return
			}
			p.failed.set(raw, false)
		}
	}()
}

// probe runs a base-object search of the search base on c, a connection
// to raw just set up, bounded by the request timeout (the connection's):
// a server whose frontend takes connections, StartTLS and binds while its
// searches hang (its database stuck) is not answering, and declaring it
// so would clear its failedURLs mark, retire the fallback's connections
// and flush the cache every check, each time costing the lookups sent to
// it a request timeout. The search goes to the database (not the root
// DSE, which slapd's frontend answers itself); a result code, such as
// noSuchObject or insufficientAccess to the anonymous binds pool, is an
// answer.
func (p *connPool) probe(c *ldap.Conn, raw string) error {
	req := ldap.NewSearchRequest(p.opts.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, int(p.opts.RequestTimeout.Seconds()), false, "(objectClass=*)", []string{noAttributes}, nil)
	if _, err := c.Search(req); err != nil && transportError(err) {
		return fmt.Errorf("reading search base %s on %s: %w", p.opts.BaseDN, raw, err)
	}
	return nil
}

func (p *connPool) dial(ctx context.Context) (*ldap.Conn, error) {
	c, _, err := p.dialFirst(ctx, p.urls)
	return c, err
}

// failedURLs remembers, for failedURLsFor after a failed setup, which
// URLs to try last: a server that accepts connections and then never
// answers (hung, its disk full) costs every new connection a whole setup
// timeout before the next URL is tried, each time the fallback's
// connections are renewed (its idletimeout, a restart), and for binds and
// searches alike. Retried in order once the time has passed, or as soon
// as the pool's or the Watcher's check finds it answering (retire).
type failedURLs struct {
	mu    sync.Mutex
	until map[string]time.Time // guarded by mu
}

// failedURLsFor is how long a URL whose setup failed is tried last:
// longer than preferredCheckEvery, so that while the pool's connections
// are on a later URL, each check that fails again renews the mark before
// it ends, and one that succeeds clears it.
const failedURLsFor = 2 * preferredCheckEvery

func newFailedURLs() *failedURLs { return &failedURLs{until: map[string]time.Time{}} }

// order returns the indexes of urls in order, those that failed lately
// last; f may be nil.
func (f *failedURLs) order(urls []string) []int {
	var first, last []int
	now := time.Now()
	if f != nil {
		f.mu.Lock()
		defer f.mu.Unlock()
	}
	for i, u := range urls {
		if f != nil && now.Before(f.until[u]) {
			last = append(last, i)
		} else {
			first = append(first, i)
		}
	}
	return append(first, last...)
}

// set records whether url's setup succeeded; f may be nil.
func (f *failedURLs) set(url string, ok bool) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok {
		delete(f.until, url)
	} else {
		f.until[url] = time.Now().Add(failedURLsFor)
	}
}

// dialAvoidingFailed is dialFirst on the pool's URLs, trying those whose
// setup failed lately last (failedURLs).
func (p *connPool) dialAvoidingFailed(ctx context.Context) (*ldap.Conn, int, error) {
	var errs []error
	for _, i := range p.failed.order(p.urls) {
		c, err := p.dialOne(ctx, p.urls[i])
		if err == nil {
			p.failed.set(p.urls[i], true)
			return c, i, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			// The caller gave up: no verdict on the server.
			break
		}
		p.failed.set(p.urls[i], false)
	}
	return nil, 0, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// dialFirst connects to the first of urls that answers, and says which.
func (p *connPool) dialFirst(ctx context.Context, urls []string) (*ldap.Conn, int, error) {
	var errs []error
	for i, raw := range urls {
		c, err := p.dialOne(ctx, raw)
		if err == nil {
			return c, i, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, 0, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// dialOne connects to raw, upgrades the connection to TLS (StartTLS) and
// binds as the service account. The whole setup is bounded: the connect
// by DialTimeout, what follows by a deadline on the socket,
// RequestTimeout after the connect or ctx's deadline if sooner, and by
// ctx's end, so that a server that accepts the connection and then stalls
// (in the TLS handshake, which go-ldap does not bound) never holds the
// caller, nor the pool slot it dials in. The stall is bounded from the
// connect, not from the dial's start, so that a caller with a deadline
// (an IMAP login's) that a hung first server would otherwise spend whole
// has time left for the next URL.
func (p *connPool) dialOne(ctx context.Context, raw string) (*ldap.Conn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	tlsConf := p.tls.Clone()
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = u.Hostname()
	}
	deadline := time.Now().Add(p.opts.DialTimeout + p.opts.RequestTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	d := &net.Dialer{Timeout: p.opts.DialTimeout, Deadline: deadline}
	nc, err := dialTransport(ctx, d, u)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", raw, err)
	}
	// The deadline covers every read and write of the setup; ctx's end
	// moves it to now, which fails whatever step is under way.
	if dl := time.Now().Add(p.opts.RequestTimeout); dl.Before(deadline) {
		deadline = dl
	}
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	c, err := p.setup(nc, u, raw, tlsConf)
	if !stop() && err == nil {
		// ctx ended as the setup finished: the deadline may be in the
		// past now, and the caller has gone.
		c.Close()
		err = fmt.Errorf("connect %s: %w", raw, ctx.Err())
	}
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// dialTransport opens the connection u names, as go-ldap's DialURL does
// (ldaps:// with its TLS handshake done), but keeps the net.Conn in hand
// for dialOne's deadline.
func dialTransport(ctx context.Context, d *net.Dialer, u *url.URL) (net.Conn, error) {
	switch u.Scheme {
	case "ldapi":
		path := u.Host
		if path == "" {
			path = u.Path
		}
		if path == "" || path == "/" {
			path = "/var/run/slapd/ldapi"
		}
		return d.DialContext(ctx, "unix", path)
	case "ldap", "ldaps":
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = ldap.DefaultLdapPort
			if u.Scheme == "ldaps" {
				port = ldap.DefaultLdapsPort
			}
		}
		return d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	}
	return nil, fmt.Errorf("unknown scheme %q", u.Scheme)
}

// setup runs the LDAP layer of dialOne on nc: the ldaps:// handshake or
// StartTLS, then the service bind. On failure nc is closed.
func (p *connPool) setup(nc net.Conn, u *url.URL, raw string, tlsConf *tls.Config) (*ldap.Conn, error) {
	if u.Scheme == "ldaps" {
		tc := tls.Client(nc, tlsConf)
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("connect %s: %w", raw, ldap.NewError(ldap.ErrorNetwork, err))
		}
		nc = tc
	}
	c := ldap.NewConn(nc, u.Scheme == "ldaps")
	c.Start()
	c.SetTimeout(p.opts.RequestTimeout)
	if p.opts.StartTLS && u.Scheme == "ldap" {
		if err := c.StartTLS(tlsConf); err != nil {
			c.Close()
			return nil, fmt.Errorf("StartTLS with %s: %w", raw, err)
		}
	}
	if p.bindDN != "" {
		if err := c.Bind(p.bindDN, p.bindPW); err != nil {
			c.Close()
			// Bad reader credentials are an outage of ours, not the user's fault.
			return nil, fmt.Errorf("service bind as %s on %s: %w", p.bindDN, raw, err)
		}
	}
	return c, nil
}

// transportError reports whether err means the connection is unusable (as
// opposed to the server answering with a result code).
func transportError(err error) bool {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return true
	}
	switch le.ResultCode {
	case ldap.ErrorNetwork, ldap.LDAPResultTimeout, ldap.LDAPResultBusy,
		ldap.LDAPResultUnavailable, ldap.LDAPResultServerDown, ldap.LDAPResultUnwillingToPerform,
		ldap.ErrorUnexpectedMessage, ldap.ErrorUnexpectedResponse:
		return true
	}
	return le.ResultCode >= 80
}

// getFor is the connection for a request's attempt: get for the first,
// fresh for the retry after a transport error.
func (p *connPool) getFor(ctx context.Context, attempt int) (*ldap.Conn, error) {
	if attempt == 0 {
		return p.get(ctx)
	}
	return p.fresh(ctx)
}

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
	"time"

	"github.com/go-ldap/ldap/v3"
)

// connPool keeps up to size open connections to the directory, each bound
// as bindDN (empty: anonymous). Broken connections are dropped, never put
// back, so a restarted server is reached again on the next call.
type connPool struct {
	opts   *Options
	urls   []string // tried in order
	tls    *tls.Config
	bindDN string
	bindPW string
	idle   chan *ldap.Conn // idle, healthy connections
	slots  chan struct{}   // one token per open connection: bounds the pool
}

func newConnPool(o *Options, tlsConf *tls.Config, bindDN, bindPW string) *connPool {
	return &connPool{
		opts: o, urls: o.URLs, tls: tlsConf, bindDN: bindDN, bindPW: bindPW,
		idle:  make(chan *ldap.Conn, o.PoolSize),
		slots: make(chan struct{}, o.PoolSize),
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
	select {
	case c := <-p.idle:
		if !c.IsClosing() {
			return c, nil
		}
		c.Close()
		<-p.slots
	default:
	}
	select {
	case c := <-p.idle:
		if !c.IsClosing() {
			return c, nil
		}
		c.Close()
		<-p.slots
		return p.get(ctx)
	case p.slots <- struct{}{}:
		c, err := p.dial(ctx)
		if err != nil {
			<-p.slots
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for an LDAP connection: %v", ErrUnavailable, ctx.Err())
	}
}

// put gives c back; a connection that saw a transport error is closed.
func (p *connPool) put(c *ldap.Conn, broken bool) {
	if broken || c.IsClosing() {
		c.Close()
		<-p.slots
		return
	}
	select {
	case p.idle <- c:
	default:
		c.Close()
		<-p.slots
	}
}

func (p *connPool) close() {
	for {
		select {
		case c := <-p.idle:
			c.Close()
			<-p.slots
		default:
			return
		}
	}
}

func (p *connPool) dial(ctx context.Context) (*ldap.Conn, error) {
	c, _, err := p.dialFirst(ctx, p.urls)
	return c, err
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
// binds as the service account. The whole setup is bounded: by a deadline
// on the socket, DialTimeout+RequestTimeout from now or ctx's deadline if
// sooner, and by ctx's end, so that a server that accepts the connection
// and then stalls (in the TLS handshake, which go-ldap does not bound)
// never holds the caller, nor the pool slot it dials in.
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

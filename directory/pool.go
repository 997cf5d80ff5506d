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

func (p *connPool) dialOne(ctx context.Context, raw string) (*ldap.Conn, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	tlsConf := p.tls.Clone()
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = u.Hostname()
	}
	d := &net.Dialer{Timeout: p.opts.DialTimeout}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	c, err := ldap.DialURL(raw, ldap.DialWithDialer(d), ldap.DialWithTLSConfig(tlsConf))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", raw, err)
	}
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

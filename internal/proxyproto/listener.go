package proxyproto

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultHeaderTimeout bounds the wait for a trusted peer's header: a
// balancer sends it with the connection.
const DefaultHeaderTimeout = 5 * time.Second

// ErrUntrustedHeader is what reading a connection from an untrusted
// address returns once its first bytes turned out to be a PROXY header.
var ErrUntrustedHeader = errors.New("proxyproto: PROXY header from an untrusted address")

// Options configure a Listener.
type Options struct {
	// Trusted are the balancers' networks: their connections must start
	// with a header, every other connection must not.
	Trusted []netip.Prefix
	// HeaderTimeout bounds the wait for a header (DefaultHeaderTimeout).
	HeaderTimeout time.Duration
	// Logger hears of refused connections (slog.Default when nil).
	Logger *slog.Logger
}

// Listener is a net.Listener whose connections from trusted networks
// carry the client's addresses from their PROXY header.
type Listener struct {
	inner net.Listener
	o     Options

	start sync.Once
	// ready hands a connection (header read) or an Accept error to
	// Accept; unbuffered, so nothing is left in it after Close.
	ready     chan accepted
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool                  // guarded by mu
	pending map[net.Conn]struct{} // guarded by mu: trusted peers whose header is being read
}

type accepted struct {
	c   net.Conn
	err error
}

// NewListener wraps ln. Close the Listener, not ln.
func NewListener(ln net.Listener, o Options) *Listener {
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Listener{inner: ln, o: o, ready: make(chan accepted), done: make(chan struct{}),
		pending: map[net.Conn]struct{}{}}
}

// Accept returns the next connection: a trusted peer's once its header
// is read, any other at once. Accept errors of the wrapped listener come
// through unchanged, so the caller's handling of temporary ones applies.
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case a := <-l.ready:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// acceptLoop accepts on the wrapped listener; it never waits for a
// client, only for the caller of Accept.
func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if !l.deliver(accepted{err: err}) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// The wrapped listener is done for; so is every later Accept.
			for l.deliver(accepted{err: err}) {
			}
			return
		}
		if !l.trusted(addrOf(c.RemoteAddr())) {
			if !l.deliver(accepted{c: &guardedConn{Conn: c, log: l.o.Logger}}) {
				c.Close()
				return
			}
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.pending[c] = struct{}{}
		l.mu.Unlock()
		go l.admitProxied(c)
	}
}

// deliver hands a to Accept; false once the listener is closed.
func (l *Listener) deliver(a accepted) bool {
	select {
	case l.ready <- a:
		return true
	case <-l.done:
		return false
	}
}

// admitProxied reads a trusted peer's header, on the connection's own
// goroutine, and hands the connection on or closes it.
func (l *Listener) admitProxied(c net.Conn) {
	pc, err := l.readHeader(c)
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	if err != nil {
		l.o.Logger.Warn("PROXY header missing or invalid from a trusted balancer; connection closed",
			"peer", c.RemoteAddr().String(), "listener_addr", l.inner.Addr().String(), "err", err)
		c.Close()
		return
	}
	if !l.deliver(accepted{c: pc}) {
		c.Close()
	}
}

func (l *Listener) readHeader(c net.Conn) (net.Conn, error) {
	if err := c.SetReadDeadline(time.Now().Add(l.o.HeaderTimeout)); err != nil {
		return nil, fmt.Errorf("proxyproto: deadline: %w", err)
	}
	h, rest, err := ReadHeader(c)
	if err != nil {
		return nil, err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("proxyproto: deadline: %w", err)
	}
	pc := &proxiedConn{Conn: c, rest: rest, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if !h.Local {
		// A dual-stack balancer sends IPv4 clients as ::ffff:a.b.c.d:
		// the servers count and log them as the IPv4 address they are.
		unmap := func(ap netip.AddrPort) *net.TCPAddr {
			return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		pc.remote, pc.local = unmap(h.Source), unmap(h.Destination)
	}
	l.o.Logger.Debug("PROXY header", "client", pc.remote.String(), "balancer", c.RemoteAddr().String(), "version", h.Version, "local", h.Local)
	return pc, nil
}

func (l *Listener) trusted(a netip.Addr) bool {
	for _, p := range l.o.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Close stops accepting and closes the connections whose header was
// still awaited.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Addr is the wrapped listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// addrOf is the IP of a TCP address, IPv4-mapped addresses unmapped.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// proxiedConn is a trusted peer's connection after its header: the
// client's addresses, and the client's first bytes read with the header.
type proxiedConn struct {
	net.Conn
	remote, local net.Addr
	rest          []byte // owned by the reading goroutine
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }
func (c *proxiedConn) LocalAddr() net.Addr  { return c.local }

func (c *proxiedConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// guardedConn is an untrusted connection: its first bytes are checked for
// a PROXY header, which closes it.
type guardedConn struct {
	net.Conn
	log *slog.Logger
	// Owned by the reading goroutine.
	checked bool
	head    [12]byte // the first bytes, while undecided
	n       int      // bytes in head
	held    []byte   // head's bytes not yet returned, once decided
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if c.checked && len(c.held) == 0 {
		return c.Conn.Read(p)
	}
	for !c.checked {
		m, err := c.Conn.Read(c.head[c.n:])
		c.n += m
		isHeader, decided := LooksLikeHeader(c.head[:c.n])
		if isHeader {
			c.log.Warn("PROXY header from an address not in proxy_protocol.trusted_networks; connection closed",
				"client", c.RemoteAddr().String(), "local", c.LocalAddr().String())
			c.Conn.Close()
			return 0, ErrUntrustedHeader
		}
		if decided {
			c.checked, c.held = true, c.head[:c.n]
			break
		}
		if err != nil {
			// Still undecided (a deadline, or the end): the bytes so far
			// could be a header's beginning and are kept back.
			return 0, err
		}
	}
	n := copy(p, c.held)
	c.held = c.held[n:]
	return n, nil
}

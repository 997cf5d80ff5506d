package smtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"courriel/cluster"
	"courriel/internal/acceptloop"
	"courriel/internal/logwriter"
	"courriel/loginguard"
)

// ErrServerClosed is what Serve and Shutdown return once the server was
// shut down.
var ErrServerClosed = errors.New("smtp: server closed")

// Server is one SMTP listener's server. Build it with NewServer, run it with
// Serve, stop it with Shutdown.
type Server struct {
	o     Options // immutable after NewServer
	ids   *idGen
	guard *loginguard.Guard // failed logins, shared with IMAP when Options.Guard is set
	// hops knows the cluster nodes' addresses, from which alone the
	// Cluster listener takes the cluster login in clear; nil on others.
	hops *cluster.Hops
	log  *slog.Logger
	// ehloSize is the EHLO SIZE line, the limit enforced. Immutable.
	ehloSize string
	// routine is the context of the connect and disconnect lines, which
	// nothing waits for: with cmd's logger (internal/logwriter.Lazy) they
	// go out with the next line written instead of in a write(2) each,
	// two of the three a message made at one connection per message.
	// Immutable.
	routine context.Context
	// rdns: the reverse names of recent clients (received.go).
	rdns rdnsCache

	serving sync.WaitGroup // one per connection being served

	// idle hands a new connection to a goroutine that served one and
	// waits for the next (at most maxSpare of them, counted in spare):
	// its stack has grown to what a session needs (the delivery path is
	// deep), where a new goroutine's grows by copying, two or three times
	// per connection, about a twentieth of the server's CPU with one
	// connection per message. Closed done releases them (Shutdown).
	idle  chan *conn
	spare atomic.Int32
	done  chan struct{}

	// readChunks holds *[readChunk]byte, what readMessage reads DATA into:
	// one per message was half of all bytes allocated, at one message per
	// connection.
	readChunks sync.Pool
	// lineBufs holds *[]byte, the buffers of the connections' wire.Readers
	// (wire.Reader.Lend): a few KiB to allocate and clear per connection.
	lineBufs sync.Pool
	// headerReaders holds *bufio.Reader of headerBuffer octets, what
	// scanHeader reads each message's header through.
	headerReaders sync.Pool

	mu        sync.Mutex
	closing   bool                      // guarded by mu
	listeners map[net.Listener]struct{} // guarded by mu
	conns     map[*conn]struct{}        // guarded by mu
	perIP     map[string]int            // guarded by mu
}

// NewServer checks o, fills in defaults and builds the server.
func NewServer(o Options) (*Server, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Kind == Cluster {
		// A node copy carries the front node's trace (Received:,
		// Delivered-To:, a milter's fields) above the size its client
		// sent, which the front checked against this same limit: a
		// message at the limit would be refused here, and bounce.
		o.MaxMessageBytes += clusterTraceAllowance
	}
	s := &Server{
		o:         o,
		ids:       &idGen{now: o.Now},
		guard:     o.Guard,
		log:       o.Logger.With("listener", o.Listener),
		ehloSize:  fmt.Sprintf("SIZE %d", o.MaxMessageBytes),
		routine:   logwriter.Lazy(context.Background()),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perIP:     map[string]int{},
		idle:      make(chan *conn),
		done:      make(chan struct{}),
	}
	if s.guard == nil {
		s.guard = newGuard(o.AuthThrottle, o.Now)
	}
	if o.Kind == Cluster {
		s.hops = cluster.NewHops(o.ClusterNodes)
	}
	return s, nil
}

// clusterTraceAllowance is what the Cluster listener takes above
// MaxMessageBytes: what the front node's queue lets a queued message
// carry above it (its traceAllowance, 64 KiB: trace fields, a milter's
// added fields), so that whatever the front queued, its node takes.
const clusterTraceAllowance = 64 << 10

// Serve accepts connections on ln until ln fails or Shutdown is called,
// then returns nil after Shutdown or the accept error. ln is a plain TCP
// listener for every Kind: for Submissions, Serve wraps each connection in
// TLS itself (after the per-address limit, so refused clients cost no
// handshake). Serve may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	err := acceptloop.Run(ln, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closing
	}, func(err error, wait time.Duration) {
		s.log.Warn("accept", "err", err, "retry_in", wait)
	}, s.admit)
	if err != nil {
		return fmt.Errorf("smtp %v: accept: %w", s.o.Kind, err)
	}
	return nil
}

// admit applies the connection limits (the listener's, then the
// address's) and serves the connection on a goroutine of its own.
func (s *Server) admit(nc net.Conn) {
	c := &conn{Conn: nc, srv: s, id: s.ids.next(), ip: remoteIP(nc)}
	if s.o.Kind == Local {
		if !s.admitLocal(c) {
			return
		}
	} else {
		c.log = s.log.With("conn_id", c.id, "client", c.ip.String())
		c.key = ipKey(c.ip)
	}
	s.enter(c)
}

// enter applies the connection limits to c, whose client is identified
// (key, log), and serves it on a goroutine of its own.
func (s *Server) enter(c *conn) {
	nc, key := c.Conn, c.key
	// Every accepted connection is counted, the refused ones too: a flood
	// refused by the per-address limit shows in the connection rate.
	s.o.Metrics.ConnOpened(s.o.Listener)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		s.o.Metrics.ConnClosed(s.o.Listener)
		return
	}
	refuse := ""
	switch {
	case len(s.conns) >= s.o.MaxConns:
		refuse = "Too many connections, try again later"
		c.log.Warn("too many connections to this listener", "limit", s.o.MaxConns)
	case s.perIP[key] >= s.o.MaxConnsPerIP:
		refuse = "Too many connections from your address"
		c.log.Warn("too many connections from client", "limit", s.o.MaxConnsPerIP)
	}
	if refuse != "" {
		s.mu.Unlock()
		defer s.o.Metrics.ConnClosed(s.o.Listener)
		if s.o.Kind != Submissions { // no reply without a handshake on 465
			nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(nc, "421 4.7.0 %s %s\r\n", s.o.Hostname, refuse)
		}
		nc.Close()
		return
	}
	s.perIP[key]++
	s.conns[c] = struct{}{}
	s.serving.Add(1) // under mu, before Shutdown can wait
	s.mu.Unlock()
	select { // serve logs "connect"
	case s.idle <- c:
	default:
		go s.work(c)
	}
}

// maxSpare bounds the goroutines kept waiting for a connection after a
// burst.
const maxSpare = 64

// work serves c, then whatever connection admit hands it next, until
// there are enough spare goroutines or the server shuts down.
func (s *Server) work(c *conn) {
	for {
		c.serve()
		s.serving.Done()
		if s.spare.Add(1) > maxSpare {
			s.spare.Add(-1)
			return
		}
		select {
		case c = <-s.idle:
			s.spare.Add(-1)
		case <-s.done:
			s.spare.Add(-1)
			return
		}
	}
}

// forget is called once when a connection closes.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	key := c.key
	if s.perIP[key]--; s.perIP[key] <= 0 {
		delete(s.perIP, key)
	}
}

// Shutdown stops accepting, closes idle connections with 421 4.3.2, lets
// transactions in flight finish (each connection closes after its next
// reply), and once ctx is done closes whatever is left and returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.closing = true
	close(s.done)
	for ln := range s.listeners {
		ln.Close()
	}
	var idle []*conn
	for c := range s.conns {
		if !c.inTransaction() {
			idle = append(idle, c)
		}
	}
	s.mu.Unlock()
	for _, c := range idle {
		c.closeIdle()
	}
	done := make(chan struct{})
	go func() {
		s.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Conn.Close()
	}
	s.mu.Unlock()
	return fmt.Errorf("smtp %v: shutdown: %w", s.o.Kind, ctx.Err())
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func remoteIP(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

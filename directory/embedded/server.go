package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxConnections = 64
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultWriteTimeout   = 30 * time.Second
	// DefaultMaxMessageSize bounds one LDAP request. RFC 4511 sets no
	// limit; slapd's sockbuf_max_incoming_auth is 4 MiB. Our largest real
	// request is a search with a short filter, well under 1 KiB.
	DefaultMaxMessageSize = 256 << 10
	// DefaultSizeLimit is slapd's default "sizelimit 500".
	DefaultSizeLimit = 500
)

// Options configures a Server.
type Options struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:3389", or
	// "127.0.0.1:0" for a kernel-chosen port (see Server.Addr).
	Addr string
	// Entries to serve. When nil, LDIF is parsed instead.
	Entries []Entry
	// LDIF is content LDIF (RFC 2849) to serve when Entries is nil, e.g.
	// DemoLDIF.
	LDIF []byte
	// HomeBase, when set, moves homeDirectory values under DemoHomeBase
	// (/var/vmail) to HomeBase: /var/vmail/alice becomes HomeBase/alice.
	HomeBase string
	// Logger receives connection and operation logs; nil discards them.
	Logger *slog.Logger
	// MaxConnections bounds concurrent client connections; the next one
	// is told "busy" and closed. Default DefaultMaxConnections.
	MaxConnections int
	// IdleTimeout closes a connection that sends nothing for this long.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one response. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// MaxMessageSize bounds one request, in bytes. Default
	// DefaultMaxMessageSize.
	MaxMessageSize int
	// SizeLimit bounds the entries of one search, whatever the client
	// asks (sizeLimitExceeded past it). Default DefaultSizeLimit.
	SizeLimit int
}

// Server is a running read-only LDAPv3 server. Safe for concurrent use.
type Server struct {
	opts Options // defaults applied; immutable
	dir  *directory
	log  *slog.Logger
	ln   net.Listener

	wg sync.WaitGroup // the accept loop and every connection

	mu     sync.Mutex
	conns  map[*conn]struct{} // guarded by mu
	closed bool               // guarded by mu
	nextID uint64             // guarded by mu

	closeOnce sync.Once
	closeErr  error
}

// Start loads the entries, listens on opts.Addr and serves in the
// background until Close. It returns once the listener is up. ctx bounds
// only the start itself.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Addr == "" {
		return nil, errors.New("embedded: Options.Addr is empty")
	}
	entries := opts.Entries
	if entries == nil {
		if len(opts.LDIF) == 0 {
			return nil, errors.New("embedded: no entries (set Options.Entries or Options.LDIF)")
		}
		var err error
		if entries, err = ParseLDIF(bytes.NewReader(opts.LDIF)); err != nil {
			return nil, err
		}
	}
	if opts.HomeBase != "" {
		entries = RewriteHomes(entries, DemoHomeBase, opts.HomeBase)
	}
	dir, err := newDirectory(entries)
	if err != nil {
		return nil, err
	}
	setDefaults(&opts)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded: listen: %w", err)
	}
	s := &Server{
		opts:  opts,
		dir:   dir,
		log:   log.With("component", "ldap-embedded"),
		ln:    ln,
		conns: map[*conn]struct{}{},
	}
	s.log.Info("embedded LDAP directory listening", "addr", ln.Addr().String(), "entries", len(dir.entries))
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func setDefaults(o *Options) {
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.SizeLimit <= 0 {
		o.SizeLimit = DefaultSizeLimit
	}
}

// Addr returns the address the server listens on, with the real port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops accepting, closes every connection and waits for all of the
// server's goroutines to end. Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		err := s.ln.Close()
		for c := range s.conns {
			_ = c.nc.Close() // unblocks its read; serve() then returns
		}
		s.mu.Unlock()
		s.wg.Wait()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("embedded: close: %w", err)
		}
		s.log.Info("embedded LDAP directory stopped")
	})
	return s.closeErr
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does, rather than spin or stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.admit(nc)
	}
}

// admit registers and serves nc, or refuses it when the server is full or
// closing.
func (s *Server) admit(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	if len(s.conns) >= s.opts.MaxConnections {
		s.mu.Unlock()
		s.log.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "max", s.opts.MaxConnections)
		// RFC 4511 §4.4.1 Notice of Disconnection: busy, then close.
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(noticeOfDisconnection(resultBusy, "too many connections").Bytes())
		_ = nc.Close()
		return
	}
	s.nextID++
	c := newConn(s, nc, s.nextID)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		c.serve()
	}()
}

package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/loginguard"
)

// Server is one SMTP listener's server. Build it with NewServer, run it with
// Serve, stop it with Shutdown.
type Server struct {
	o  Options // immutable after NewServer
	gs *gosmtp.Server
	// sizeLines maps the EHLO SIZE line go-smtp writes to ours, for a
	// line inside the reply and a last line (see NewServer). Immutable.
	sizeLines [2][2][]byte
	ln        *chanListener
	ids       *idGen
	guard     *loginguard.Guard // failed logins, shared with IMAP when Options.Guard is set
	log       *slog.Logger

	startOnce sync.Once
	gsDone    chan error // go-smtp's Serve result

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
	s := &Server{
		o:         o,
		ln:        newChanListener(),
		ids:       &idGen{now: o.Now},
		guard:     o.Guard,
		log:       o.Logger.With("listener", o.Listener),
		gsDone:    make(chan error, 1),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perIP:     map[string]int{},
	}
	if s.guard == nil {
		s.guard = newGuard(o.AuthThrottle, o.Now)
	}
	gs := gosmtp.NewServer(gosmtp.BackendFunc(s.newSession))
	gs.Domain = o.Hostname
	// go-smtp's DATA reader refuses a message of exactly its limit (after
	// the last octet it answers 552 before looking for the end of data),
	// so it gets one octet more; readMessage and Mail enforce ours, and
	// Write puts ours back into the EHLO SIZE line when it is sent in
	// clear (under TLS, Write sees only ciphertext: see the package doc).
	gs.MaxMessageBytes = o.MaxMessageBytes + 1
	s.sizeLines = [2][2][]byte{
		{fmt.Appendf(nil, "250-SIZE %d\r\n", o.MaxMessageBytes+1), fmt.Appendf(nil, "250-SIZE %d\r\n", o.MaxMessageBytes)},
		{fmt.Appendf(nil, "250 SIZE %d\r\n", o.MaxMessageBytes+1), fmt.Appendf(nil, "250 SIZE %d\r\n", o.MaxMessageBytes)},
	}
	gs.MaxRecipients = o.MaxRecipients
	gs.MaxLineLength = o.MaxLineLength
	gs.ReadTimeout = o.ReadTimeout
	gs.WriteTimeout = o.WriteTimeout
	gs.EnableSMTPUTF8 = true
	// Our Auth answers AUTH before TLS itself (530 5.7.0, SPEC §3) and
	// offers no mechanism there, so go-smtp's own refusal (523) is off.
	gs.AllowInsecureAuth = true
	gs.ErrorLog = slogPrintf{s.log}
	if o.Kind != Submissions {
		// For Submissions we do the TLS ourselves in Serve, after the
		// per-address limit, so go-smtp must not offer STARTTLS inside it.
		gs.TLSConfig = o.TLSConfig
	}
	s.gs = gs
	return s, nil
}

// Serve accepts connections on ln until ln fails or Shutdown is called,
// then returns nil after Shutdown or the accept error. ln is a plain TCP
// listener for every Kind: for Submissions, Serve wraps each connection in
// TLS itself (after the per-address limit, so refused clients cost no
// handshake). Serve may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return gosmtp.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.startOnce.Do(func() {
		go func() { s.gsDone <- s.gs.Serve(s.ln) }()
	})
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			delete(s.listeners, ln)
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("smtp %v: accept: %w", s.o.Kind, err)
		}
		delay = 0
		s.admit(nc)
	}
}

// admit applies the connection limits (the listener's, then the
// address's) and hands the connection to go-smtp.
func (s *Server) admit(nc net.Conn) {
	c := &conn{Conn: nc, srv: s, id: s.ids.next(), ip: remoteIP(nc)}
	c.log = s.log.With("conn_id", c.id, "client", c.ip.String())
	key := ipKey(c.ip)
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
	s.mu.Unlock()
	c.log.Info("connect")

	var gc net.Conn = c
	if s.o.Kind == Submissions {
		tc := tls.Server(c, s.o.TLSConfig)
		gc = tc
	} else {
		c.setCurrent(c)
	}
	if !s.ln.offer(gc) {
		gc.Close()
	}
}

// forget is called once when a connection closes.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	key := ipKey(c.ip)
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
		return gosmtp.ErrServerClosed
	}
	s.closing = true
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
	s.startOnce.Do(func() { s.gsDone <- nil }) // never served
	s.ln.Close()
	err := s.gs.Shutdown(ctx)
	if err != nil && !errors.Is(err, gosmtp.ErrServerClosed) {
		s.gs.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Conn.Close()
		}
		s.mu.Unlock()
		return fmt.Errorf("smtp %v: shutdown: %w", s.o.Kind, err)
	}
	return nil
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

// conn wraps one client connection under go-smtp (and under TLS): it
// holds what outlives a go-smtp session (STARTTLS starts a new one) and
// lets the policy close the connection right after a reply.
type conn struct {
	net.Conn
	srv *Server
	id  string     // immutable
	ip  netip.Addr // immutable
	log *slog.Logger

	commands     atomic.Int32 // all of them, for the log
	sinceMessage atomic.Int32 // since the last accepted message, for MaxCommands
	errors       atomic.Int32
	authFailures atomic.Int32
	// dropAfterWrite: close as soon as the next reply is written. go-smtp
	// flushes each reply line in one Write, so that Write is the reply.
	dropAfterWrite atomic.Bool
	closeOnce      sync.Once

	mu      sync.Mutex
	inTx    bool     // guarded by mu: between MAIL and the end of the message
	current net.Conn // guarded by mu: what to write a 421 on (TLS or not); nil when unknown
	rdns    *string  // guarded by mu: reverse DNS, looked up once
	// bdat is the reader of a BDAT transaction that was aborted (RSET, a
	// new EHLO, STARTTLS, go-smtp's own size check) while its Data was
	// running; see waitBDAT. guarded by mu.
	bdat *io.PipeReader

	// Reply grouping for pipelining clients (RFC 2920 §3.2, as Postfix's
	// smtpd does): Read hands go-smtp at most one line at a time, so while
	// input is left over (inputLeft) the client has pipelined more
	// commands and is not waiting for our replies yet: Write holds them,
	// and they leave in one segment when go-smtp next needs input that has
	// not arrived (Read with nothing left), or at Close. A pipelined
	// MAIL, RCPT, DATA costs one write instead of three, and the client
	// one wakeup. rbuf, rpos and rerr belong to the goroutine that reads
	// (go-smtp's, or TLS's under it).
	rbuf []byte // read from the socket; rbuf[rpos:] not yet handed out
	rpos int
	rerr error // came with the last bytes read; returned once they are consumed
	// readDead, once set, is returned by every later Read: a read deadline
	// that passed or errDiscardLimit. go-smtp goes back to reading commands
	// after a refused BDAT chunk whose skipping failed, and a timeout is
	// not sticky in net.Conn: the rest of that chunk would be read as
	// commands.
	readDead  error
	data      dataCut
	inputLeft atomic.Bool
	// discardLeft, when positive, is how much more of an oversized DATA
	// message go-smtp may skip (it reads to the end of data to stay in step
	// with the client) before Read fails and the connection closes after
	// the 552. Set by session.data, cleared by session.Reset.
	discardLeft atomic.Int64
	wmu         sync.Mutex
	held        []byte // replies not yet written; guarded by wmu
}

// maxHeldReplies bounds the replies held for one client (1000 pipelined
// RCPTs make about 30 KiB).
const maxHeldReplies = 64 << 10

// Read returns what the client sent, never more than one line at a time
// (see conn.held). Before waiting for the client it sends the held replies:
// the client may be waiting for them.
func (c *conn) Read(p []byte) (int, error) {
	if c.readDead != nil {
		return 0, c.readDead
	}
	if c.rpos == len(c.rbuf) {
		if err := c.rerr; err != nil {
			c.rerr = nil
			return 0, c.readFailed(err)
		}
		if err := c.flushHeld(); err != nil {
			return 0, err
		}
		if c.rbuf == nil {
			c.rbuf = make([]byte, 4096)
		}
		n, err := c.Conn.Read(c.rbuf[:cap(c.rbuf)])
		c.rbuf, c.rpos = c.rbuf[:n], 0
		if n == 0 {
			return 0, c.readFailed(err)
		}
		c.rerr = err
	}
	rest := c.rbuf[c.rpos:]
	if c.data.on {
		rest = c.data.cut(rest)
	} else if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[:i+1]
	}
	n := copy(p, rest)
	c.rpos += n
	if c.data.on {
		c.data.handedOut(p[:n])
	}
	c.inputLeft.Store(c.rpos < len(c.rbuf))
	if left := c.discardLeft.Load(); left > 0 {
		if int64(n) >= left {
			c.discardLeft.Store(0)
			c.dropAfterWrite.Store(true)
			c.log.Warn("message too large: the client kept sending past twice the limit; closing after the reply")
			c.readDead = errDiscardLimit
			return 0, errDiscardLimit
		}
		c.discardLeft.Add(-int64(n))
	}
	return n, nil
}

// readFailed returns err, first making it the answer to every later Read
// if it is a timeout.
func (c *conn) readFailed(err error) error {
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		c.readDead = err
	}
	return err
}

// errDiscardLimit ends go-smtp's skipping of an oversized message.
var errDiscardLimit = errors.New("smtp: oversized message: discard limit reached")

// endOfData is where go-smtp's DATA reader stops: <CRLF>.<CRLF>, or ".<CRLF>"
// at the very start (as if after the DATA command's CRLF).
const endOfData = "\r\n.\r\n"

// dataCut lets conn.Read hand out a DATA message in bulk (one Read instead
// of one per line, through go-smtp's three readers: no reply is due before
// the end) and stop exactly after its end of data, so that what the client
// pipelined after it is still input left. It follows the bytes handed out
// across reads, since the end may be split between two. Owned by the
// reading goroutine, like conn.rbuf.
type dataCut struct {
	on   bool
	tail [len(endOfData) - 1]byte // the last bytes handed out
	n    int                      // how many of tail are valid
}

// start is called before go-smtp reads a DATA message.
func (d *dataCut) start() {
	*d = dataCut{on: true, n: 2}
	copy(d.tail[:], "\r\n")
}

// cut shortens rest to end with the end of data, if it is in there.
func (d *dataCut) cut(rest []byte) []byte {
	var w [2*len(endOfData) - 2]byte
	k := copy(w[:], d.tail[:d.n])
	k += copy(w[k:], rest)
	if i := bytes.Index(w[:k], []byte(endOfData)); i >= 0 {
		return rest[:i+len(endOfData)-d.n]
	}
	if i := bytes.Index(rest, []byte(endOfData)); i >= 0 {
		return rest[:i+len(endOfData)]
	}
	return rest
}

// handedOut records b, just given to go-smtp; the end of data ends bulk
// mode.
func (d *dataCut) handedOut(b []byte) {
	var w [2*len(endOfData) - 2]byte // the last bytes handed out, tail then b
	k := 0
	if len(b) < len(w) {
		keep := min(d.n, len(w)-len(b))
		k = copy(w[:], d.tail[d.n-keep:d.n])
	}
	k += copy(w[k:], b[max(0, len(b)-(len(w)-k)):])
	if bytes.HasSuffix(w[:k], []byte(endOfData)) {
		d.on = false
		return
	}
	d.n = copy(d.tail[:], w[max(0, k-len(d.tail)):k])
}

// flushHeld writes the held replies.
func (c *conn) flushHeld() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	return err
}

// setBDAT records (or clears, with nil) the reader of a BDAT Data.
func (c *conn) setBDAT(r *io.PipeReader) {
	c.mu.Lock()
	c.bdat = r
	c.mu.Unlock()
}

// waitBDAT works around a data race in go-smtp v0.25.1: when a BDAT
// transaction is aborted, go-smtp's goroutine running Data sends its result
// on c.dataResult after Data returns, while the next BDAT on the connection
// assigns a new channel to that field; the stale result can even become the
// reply to the next message. go-smtp closes the pipe reader right after
// that send, so before accepting the next MAIL we wait until the reader is
// closed (Read says io.ErrClosedPipe). It reports false if that does not
// happen within a few seconds; the caller then drops the connection.
func (c *conn) waitBDAT() bool {
	c.mu.Lock()
	r := c.bdat
	c.bdat = nil
	c.mu.Unlock()
	if r == nil {
		return true
	}
	for range 5000 {
		if _, err := r.Read(nil); errors.Is(err, io.ErrClosedPipe) {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// Write sends a reply, or holds it while the client has pipelined more
// input (see conn.held).
func (c *conn) Write(p []byte) (int, error) {
	// go-smtp writes each reply line with its own Write.
	for _, l := range c.srv.sizeLines {
		if bytes.Equal(p, l[0]) {
			if _, err := c.Write(l[1]); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	drop := c.dropAfterWrite.Load()
	c.wmu.Lock()
	if c.inputLeft.Load() && !drop && len(c.held)+len(p) <= maxHeldReplies {
		c.held = append(c.held, p...)
		c.wmu.Unlock()
		return len(p), nil
	}
	var n int
	var err error
	if len(c.held) > 0 {
		c.held = append(c.held, p...)
		if _, err = c.Conn.Write(c.held); err == nil {
			n = len(p)
		}
		c.held = c.held[:0]
	} else {
		n, err = c.Conn.Write(p)
	}
	c.wmu.Unlock()
	if drop {
		c.Close()
	}
	return n, err
}

func (c *conn) Close() error {
	_ = c.flushHeld() // e.g. replies to pipelined commands before a 421
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.srv.forget(c)
		c.srv.o.Metrics.ConnClosed(c.srv.o.Listener)
		c.log.Info("disconnect", "commands", c.commands.Load(), "errors", c.errors.Load())
	})
	return err
}

// countCommand counts one command and reports when the limit is passed.
func (c *conn) countCommand() bool {
	c.commands.Add(1)
	return int(c.sinceMessage.Add(1)) > c.srv.o.MaxCommands
}

// messageAccepted restarts the count MaxCommands bounds: a client that
// delivers mail may send any number of messages on one connection (an MTA
// draining its queue); one that only talks is cut off.
func (c *conn) messageAccepted() { c.sinceMessage.Store(0) }

func (c *conn) setTx(on bool) {
	c.mu.Lock()
	c.inTx = on
	c.mu.Unlock()
	if !on && c.srv.isClosing() {
		c.dropAfterWrite.Store(true)
	}
}

func (c *conn) inTransaction() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inTx
}

func (c *conn) setCurrent(nc net.Conn) {
	c.mu.Lock()
	c.current = nc
	c.mu.Unlock()
}

// closeIdle says goodbye (RFC 5321 §3.8) to a client waiting between
// transactions and closes the connection.
func (c *conn) closeIdle() {
	c.mu.Lock()
	cur := c.current
	c.mu.Unlock()
	if cur != nil {
		cur.SetWriteDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(cur, "421 4.3.2 %s Service shutting down\r\n", c.srv.o.Hostname)
	}
	c.Close()
}

// chanListener is the net.Listener go-smtp serves: Serve's accept loops
// feed it the connections they admitted.
type chanListener struct {
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) offer(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// slogPrintf adapts slog to go-smtp's Logger.
type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, v ...any) { p.l.Warn(fmt.Sprintf(format, v...)) }
func (p slogPrintf) Println(v ...any)               { p.l.Warn(fmt.Sprint(v...)) }

var _ net.Conn = (*conn)(nil)

package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"courriel/tlsconf/tlsrpt"
)

// session is one SMTP connection, ready for MAIL. go-smtp's client sets it
// up (greeting, EHLO, STARTTLS, AUTH); the transactions are spoken here, so
// that they can be pipelined (RFC 2920) and a session reused for the next
// message without a new EHLO.
type session struct {
	c         *gosmtp.Client // setup only
	conn      net.Conn       // the outermost connection (TLS once negotiated)
	relay     string         // "host[ip]:port" for logs
	after     *hopsAfter     // the route's hosts after this one, for nextHost
	remoteMTA string         // host name for the DSN's Remote-MTA
	tls       bool
	tlsWhy    string      // the TLS policy applied and why, for the log
	raw       net.Conn    // the TCP connection, which shutdown closes
	stop      func() bool // detaches the shutdown hook (interrupt)

	// The shutdown's view of the session, guarded by smu: committing is
	// set while a transaction's data is sent and its final reply awaited,
	// which a shutdown lets finish (interrupt); halted says the shutdown
	// began; cutBy is the context whose end cuts even a committing
	// transaction (sendGroup sets it for each use), and cutShort says it
	// did.
	smu        sync.Mutex
	committing bool
	halted     bool
	cutShort   bool
	cutBy      context.Context
	uncut      func() bool // detaches the hook of cutBy while committing

	r          *bufio.Reader // replies; a line longer than its buffer is an error
	w          *bufio.Writer
	cmdTimeout time.Duration
	// dataTimeout bounds each write of a transaction's data
	// (Options.DataTimeout).
	dataTimeout time.Duration
	// rsetTimeout bounds the reply to RSET (Options.rsetTimeout).
	rsetTimeout time.Duration

	pipelining, smtputf8, size, eightBit, dsn bool // offered in the EHLO reply
	// sizeLimit is the limit the server's EHLO SIZE names (RFC 1870
	// §4); 0 when it names none (SIZE without a value, or SIZE 0: no
	// fixed limit) or one that is no number.
	sizeLimit int64
	// xdsn: a node's cluster listener takes the DSN parameters of node
	// copies (nodeDSNRcptParams)
	xdsn bool

	born      time.Time // for the reuse time limit
	idleSince time.Time // while in the connection cache
	uses      int       // deliveries made on it
	reused    bool      // taken from the cache: RSET before the next MAIL checks it is alive
	dirty     bool      // a transaction ended early: RSET before the next MAIL
	closing   bool      // it failed or the server said 421: never reused
}

// quitTimeout bounds the wait for the reply to QUIT: nothing depends on it.
const quitTimeout = 10 * time.Second

// quit says QUIT, waits a little for the reply, and closes the connection.
func (s *session) quit() {
	s.conn.SetDeadline(time.Now().Add(min(s.cmdTimeout, quitTimeout)))
	s.send("QUIT")
	if err := s.w.Flush(); err == nil {
		s.readReply()
	}
	s.abort()
}

// unread says whether the session has bytes nobody asked for: buffered in
// its reader (or the TLS layer's), or waiting in the socket, or the server
// closed it. Between transactions the server owes nothing, so such a
// session must not be used again: the next reply read would be one the
// server sent before (a second reply to the final dot), and every reply
// after it one command late. It does not wait.
func (s *session) unread() bool {
	if s.r.Buffered() > 0 {
		return true
	}
	raw := s.conn
	if tc, ok := s.conn.(*tls.Conn); ok {
		// A record already read from the socket but not yet asked for:
		// a read that cannot wait for the network returns it, or times
		// out (which breaks nothing in a TLS connection).
		tc.SetReadDeadline(time.Unix(1, 0))
		_, err := s.r.Peek(1)
		tc.SetReadDeadline(time.Time{})
		if ne, ok := err.(net.Error); err == nil || !ok || !ne.Timeout() {
			return true
		}
		raw = tc.NetConn()
	}
	sc, ok := raw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	waiting := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// n > 0: bytes; n == 0 without an error: the server closed it;
		// EAGAIN: nothing waits.
		waiting = n > 0 || err == nil || err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
		return true
	})
	return waiting || err != nil
}

// abort drops a connection whose state is unknown, without QUIT.
func (s *session) abort() {
	s.stop()
	s.conn.Close()
}

// interrupt is the runner's shutdown (Queue.Shutdown): the connection is
// closed at once, unless a transaction is committing; then once it has
// its final reply (endData), or when cutBy ends.
func (s *session) interrupt() {
	s.smu.Lock()
	defer s.smu.Unlock()
	s.halted = true
	if !s.committing {
		s.raw.Close()
	}
}

// beginData marks the start of a transaction's data: from here the
// server may take the message, and only cutBy ending closes the
// connection before the final reply. false when the shutdown began
// already: the data must not be sent.
func (s *session) beginData() bool {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.halted {
		return false
	}
	s.committing = true
	if s.cutBy != nil {
		s.uncut = context.AfterFunc(s.cutBy, func() {
			s.smu.Lock()
			s.cutShort = true
			s.smu.Unlock()
			s.raw.Close()
		})
	}
	return true
}

// endData ends what beginData began, and closes the connection when the
// shutdown began meanwhile. cut says cutBy ended during the data or the
// wait for its reply, and closed the connection.
func (s *session) endData() (cut bool) {
	if s.uncut != nil {
		s.uncut()
		s.uncut = nil
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	s.committing = false
	if s.halted {
		s.raw.Close()
	}
	return s.cutShort
}

// connect opens a session to one address of a hop under the TLS plan.
// Under "may" a failed STARTTLS is retried once without TLS, as Postfix
// does; never under a receiver's policy (DANE, MTA-STS enforce), whose
// levels require TLS.
func (q *Queue) connect(ctx context.Context, h hop, ip netip.Addr, plan tlsPlan) (*session, *failure) {
	if h.relay != nil && h.relay.Username != "" && (plan.level == PolicyNone || plan.level == PolicyMay) {
		// Credentials never travel in clear text.
		plan.level = PolicyEncrypt
	}
	if h.node != "" {
		return q.dialNode(ctx, h, ip)
	}
	s, f := q.dial(ctx, h, ip, &plan)
	if f != nil && f.retryPlain && ctx.Err() == nil {
		q.log.Info("TLS failed, retrying without TLS (policy may)", "relay", f.relay, "reason", f.text)
		plain := plan
		plain.level = PolicyNone
		s, f = q.dial(ctx, h, ip, &plain)
	}
	return s, f
}

func (q *Queue) dial(ctx context.Context, h hop, ip netip.Addr, plan *tlsPlan) (*session, *failure) {
	policy := plan.level
	addr := net.JoinHostPort(ip.String(), h.port)
	relay := fmt.Sprintf("%s[%s]:%s", h.name, ip, h.port)
	dctx, cancel := context.WithTimeout(ctx, q.o.ConnectTimeout)
	raw, err := q.o.Dialer(dctx, "tcp", addr)
	cancel()
	if err != nil {
		f := tempFailure("4.4.1", "connect to "+relay+": "+err.Error())
		f.relay, f.dead = relay, true
		return nil, f
	}
	s := &session{relay: relay, remoteMTA: h.name, conn: raw, raw: raw, tlsWhy: plan.why}
	// Cancelling ctx (shutdown) aborts whatever command is in progress,
	// but a transaction's data and its final reply (interrupt).
	stop := context.AfterFunc(ctx, s.interrupt)
	s.stop = stop
	fail := func(f *failure) (*session, *failure) {
		stop()
		raw.Close()
		f.relay, f.remoteMTA = relay, h.name
		return nil, f
	}
	// tlsFail records a failed handshake for TLSRPT and says which policy
	// asked for it.
	var testFail error
	tlsFail := func(what string, err error) *failure {
		q.reportSession(plan, h, raw, tlsFailureType(err), err.Error())
		return tempFailure("4.7.5", joinWhy(what+" with "+relay+" failed: "+err.Error(), plan.why))
	}
	if h.relay != nil && h.relay.ImplicitTLS {
		tc, err := q.handshake(ctx, raw, h.name, plan, &testFail)
		if err != nil {
			f := tlsFail("TLS", err)
			f.dead = isTimeout(err)
			return fail(f)
		}
		s.conn, s.tls = tc, true
	}
	var setup *setupConn
	s.c, setup = q.newClient(s.conn)
	if err := q.hello(s, setup, relay); err != nil {
		// A 5xx greeting or EHLO reply is this host refusing to talk, not
		// the recipient refused: the next MX is tried, and the message
		// waits rather than bounces (Postfix's smtp_skip_5xx_greeting).
		f := replyFailure(err, "greeting from "+relay, "4.4.2").asTemporary()
		// No greeting, or 421 (the server is going away or overloaded):
		// the host is down for now.
		f.dead = !isReply(err) || f.code == 421
		return fail(f)
	}
	if f := q.ehloLoop(h, relay, setup.head); f != nil {
		return fail(f)
	}
	setup.head, setup.seen = nil, true
	if !s.tls && policy != PolicyNone {
		if ok, _ := s.c.Extension("STARTTLS"); ok {
			tc, err := q.startTLS(ctx, raw, h.name, plan, &testFail)
			if err != nil {
				f := tlsFail("STARTTLS", err)
				f.retryPlain = policy == PolicyMay && plan.dane == nil
				f.dead = isTimeout(err)
				return fail(f)
			}
			s.conn, s.tls = tc, true
			// RFC 3207 §4.2: forget what was learnt before TLS and say
			// EHLO again; the new client reads a synthetic greeting
			// since the server sends none after the handshake.
			var tlsSetup *setupConn
			s.c, tlsSetup = q.newClient(&greetedConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 TLS\r\n"), tc)})
			if err := q.hello(s, tlsSetup, relay); err != nil {
				// As before TLS: this host refusing to talk, not the
				// recipients refused.
				f := replyFailure(err, "EHLO after STARTTLS with "+relay, "4.4.2").asTemporary()
				f.dead = isTimeout(err)
				return fail(f)
			}
		} else if policy == PolicyEncrypt || policy == PolicyVerify {
			q.reportSession(plan, h, raw, tlsrpt.StartTLSNotSupported, "STARTTLS not offered")
			return fail(tempFailure("4.7.4", joinWhy("TLS is required, but was not offered by host "+relay, plan.why)))
		} else if plan.testing {
			q.reportSession(plan, h, raw, tlsrpt.StartTLSNotSupported, "STARTTLS not offered (MTA-STS testing, delivered anyway)")
		}
	}
	if s.tls && policy != PolicyNone {
		if testFail != nil {
			q.reportSession(plan, h, raw, tlsFailureType(testFail), testFail.Error()+" (MTA-STS testing, delivered anyway)")
			q.log.Info("MTA-STS testing: certificate not valid, delivering anyway", "relay", relay, "reason", testFail.Error())
		} else {
			q.reportSession(plan, h, raw, "", "")
		}
	}
	if h.relay != nil && h.relay.Username != "" {
		if !s.tls {
			return fail(tempFailure("4.7.0", "refusing to send credentials to "+relay+" without TLS"))
		}
		var client sasl.Client
		switch {
		case s.c.SupportsAuth(sasl.Plain):
			client = sasl.NewPlainClient("", h.relay.Username, h.relay.Password)
		case s.c.SupportsAuth(sasl.Login):
			client = sasl.NewLoginClient(h.relay.Username, h.relay.Password)
		default:
			return fail(tempFailure("4.7.0", "relayhost "+relay+" offers neither AUTH PLAIN nor LOGIN"))
		}
		if err := s.c.Auth(client); err != nil {
			// Not the sender's fault: defer (Postfix does too) so the
			// admin can fix the credentials before anything bounces.
			f := replyFailure(err, "AUTH with "+relay, "4.7.0")
			f.perm = false
			f.status = "4" + f.status[1:]
			f.dead = isTimeout(err)
			return fail(f)
		}
	}
	q.ready(s)
	return s, nil
}

// ready makes a session set up by go-smtp's client ready for the
// transactions spoken here.
func (q *Queue) ready(s *session) {
	s.r = bufio.NewReaderSize(s.conn, 4096)
	s.w = bufio.NewWriterSize(s.conn, 32<<10)
	s.cmdTimeout = q.o.CommandTimeout
	s.dataTimeout = q.o.DataTimeout
	s.rsetTimeout = q.o.rsetTimeout
	s.pipelining, _ = s.c.Extension("PIPELINING")
	s.smtputf8, _ = s.c.Extension("SMTPUTF8")
	s.dsn, _ = s.c.Extension("DSN")
	s.xdsn, _ = s.c.Extension("XDSN")
	var limit string
	s.size, limit = s.c.Extension("SIZE")
	s.sizeLimit = parseSizeLimit(limit)
	s.eightBit, _ = s.c.Extension("8BITMIME")
	s.born = time.Now()
}

// parseSizeLimit reads the value of an EHLO SIZE line: digits only, as
// Postfix reads it; anything else (a word, a number too large) names no
// limit, and the server's reply to MAIL decides.
func parseSizeLimit(v string) int64 {
	v = strings.TrimSpace(v)
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// hello has the session's go-smtp client say EHLO, and HELO when EHLO
// is refused (go-smtp says HELO only after 500 or 502): a server that
// does not take EHLO, or not ours (501, 554, 4xx), may still take HELO,
// as Postfix's smtp(8) falls back to it after any EHLO reply but 2xx and
// 421, before TLS and after it. Plain SMTP then: no extension (no
// STARTTLS, so a policy requiring TLS defers).
func (q *Queue) hello(s *session, setup *setupConn, relay string) error {
	err := s.c.Hello(q.o.Hostname)
	if err != nil && setup.helo && !isReply(err) {
		// go-smtp's own HELO, after 500 or 502 to EHLO, got no reply:
		// as after ours (below), the refusal of EHLO is the answer,
		// and the host, which answered, is not dead (dial); its
		// HELO's EOF made the destination dead, and suspended it.
		if refusal := setup.ehloRefusal(); refusal != nil {
			return refusal
		}
		return err
	}
	if err == nil || !setup.ehlo || setup.helo || !isReply(err) || replyCode(err) == 421 {
		return err
	}
	q.log.Debug("EHLO refused, trying HELO", "relay", relay, "reply", printable(err.Error(), 200))
	if herr := q.helo(s, setup); herr == nil || isReply(herr) {
		return herr
	}
	// The server hung up (or went silent) after refusing EHLO: its
	// refusal is the answer, and the host, which answered, is not dead.
	return err
}

// helo says HELO on a session whose go-smtp client failed its EHLO
// (dial), and reads the reply on setup, which bounds it; the session
// goes on with no extension, which the failed client reports. The error
// is a reply (*gosmtp.SMTPError) when the server answered.
func (q *Queue) helo(s *session, setup *setupConn) error {
	s.conn.SetDeadline(time.Now().Add(q.o.CommandTimeout))
	defer s.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.conn, "HELO "+q.o.Hostname+"\r\n"); err != nil {
		return err
	}
	code, text, err := (&session{r: bufio.NewReaderSize(setup, 4096)}).readReply()
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return replyError(code, text)
	}
	return nil
}

// replyCode is the code of a reply error, 0 for any other error.
func replyCode(err error) int {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// maxSetupRead bounds what a server may send a client set up by
// newClient: its greeting, EHLO and AUTH replies together. go-smtp bounds
// each line (2000 bytes) but not how many come, so a hostile server's
// endless multi-line greeting would grow without end; 64 KiB is far more
// than any real EHLO reply.
const maxSetupRead = 64 << 10

// errSetupTooLong is the failure of a setup past maxSetupRead.
var errSetupTooLong = fmt.Errorf("the server's greeting, EHLO and AUTH replies exceed %d KiB", maxSetupRead>>10)

// setupConn is the connection a go-smtp client reads during the setup:
// reads past maxSetupRead fail. The transactions read the session's own
// connection (ready), past the bound.
// It keeps the first setupHead bytes read (head), where the server names
// itself (ehloLoop). It gives the client whole replies, each line with
// the code of the reply's last line (wholeReplies).
type setupConn struct {
	net.Conn
	left int
	head []byte
	seen bool // head was read: keep no more
	// ehlo and helo say the client sent EHLO, HELO: a failed Hello
	// that sent EHLO got past the greeting, and one that sent HELO
	// too (after 500 or 502) was refused HELO as well.
	ehlo, helo bool
	// pending is what was read of a reply not yet whole; ready, the
	// replies the client has not read yet.
	pending, ready []byte
	// last is the whole replies that came last; beforeHELO, those
	// that came last before the client sent HELO, which end with its
	// reply to EHLO (ehloRefusal).
	last, beforeHELO []byte
}

func (c *setupConn) Write(p []byte) (int, error) {
	// go-smtp writes each command whole, in one write.
	c.ehlo = c.ehlo || bytes.HasPrefix(p, []byte("EHLO "))
	if bytes.HasPrefix(p, []byte("HELO ")) && !c.helo {
		c.helo, c.beforeHELO = true, c.last
	}
	return c.Conn.Write(p)
}

// ehloRefusal is the reply to EHLO that made go-smtp's client say HELO
// (500 or 502), as the error the client returned for it; nil when it
// sent no HELO, or the reply cannot be found.
func (c *setupConn) ehloRefusal() error {
	if !c.ehlo || !c.helo {
		return nil
	}
	r := &session{r: bufio.NewReaderSize(bytes.NewReader(c.beforeHELO), 4096)}
	var refusal error
	for {
		code, text, err := r.readReply()
		if err != nil {
			break
		}
		refusal = nil
		if code/100 != 2 && code/100 != 3 {
			refusal = replyError(code, text)
		}
	}
	return refusal
}

func (c *setupConn) Read(p []byte) (int, error) {
	for len(c.ready) == 0 {
		if c.left <= 0 {
			return 0, errSetupTooLong
		}
		buf := make([]byte, min(4096, c.left))
		n, err := c.Conn.Read(buf)
		c.left -= n
		if room := setupHead - len(c.head); room > 0 && !c.seen {
			c.head = append(c.head, buf[:min(n, room)]...)
		}
		c.pending = append(c.pending, buf[:n]...)
		if whole := wholeReplies(&c.pending); len(whole) > 0 {
			c.ready = append(c.ready, whole...)
			c.last = whole
		}
		if err != nil {
			// What came before the error goes as it is; the error
			// comes again at the next read.
			c.ready = append(c.ready, c.pending...)
			c.pending = nil
			if len(c.ready) == 0 {
				return 0, err
			}
		}
	}
	n := copy(p, c.ready)
	c.ready = c.ready[n:]
	return n, nil
}

// wholeReplies takes from in the whole replies it begins with and
// returns them, every line with the code of the reply's last line: a
// reply whose lines change code (RFC 5321 §4.2.1 forbids it) is read as
// Postfix's smtp(8) reads it, by its last line, where Go's textproto,
// under go-smtp's client, takes a line of another code for more text and
// waits for a last line of the first code until the command times out.
// A line that is no reply line goes as it is, and the client fails on
// it. What is left in in is the start of a reply still coming.
func wholeReplies(in *[]byte) []byte {
	b := *in
	var out []byte
	start, pos := 0, 0
	for {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimRight(b[pos:pos+i], "\r")
		pos += i + 1
		coded := len(line) >= 3 && isDigits(string(line[:3]))
		switch {
		case coded && len(line) > 3 && line[3] == '-':
			continue // more lines of this reply to come
		case coded && (len(line) == 3 || line[3] == ' '):
			reply := slices.Clone(b[start:pos])
			for j := 0; j < len(reply); {
				if isDigits(string(reply[j:min(j+3, len(reply))])) && j+3 < len(reply) && reply[j+3] == '-' {
					copy(reply[j:], line[:3])
				}
				next := bytes.IndexByte(reply[j:], '\n')
				if next < 0 {
					break
				}
				j += next + 1
			}
			out = append(out, reply...)
		default:
			out = append(out, b[start:pos]...)
		}
		start = pos
	}
	*in = slices.Clone(b[start:])
	return out
}

func (q *Queue) newClient(conn net.Conn) (*gosmtp.Client, *setupConn) {
	sc := &setupConn{Conn: conn, left: maxSetupRead}
	c := gosmtp.NewClient(sc)
	c.CommandTimeout = q.o.CommandTimeout
	// RFC 5321 §4.5.3.2.6: 10 minutes for the reply to the final dot.
	c.SubmissionTimeout = max(q.o.CommandTimeout, 10*time.Minute)
	return c, sc
}

func (q *Queue) handshake(ctx context.Context, raw net.Conn, name string, plan *tlsPlan, testFail *error) (*tls.Conn, error) {
	tc := tls.Client(raw, q.tlsConfig(name, plan, testFail))
	hctx, cancel := context.WithTimeout(ctx, q.o.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// startTLS sends STARTTLS on the raw connection (the go-smtp client has no
// public call for it that lets us choose the EHLO name) and shakes hands.
// Anything the server sent after its EHLO reply stays unread in the old
// client's buffer and is discarded with it: no plaintext injection survives
// into the TLS session (CVE-2011-0411).
func (q *Queue) startTLS(ctx context.Context, raw net.Conn, name string, plan *tlsPlan, testFail *error) (*tls.Conn, error) {
	return q.startTLSWith(ctx, raw, q.tlsConfig(name, plan, testFail))
}

// startTLSWith is startTLS with the client configuration given.
func (q *Queue) startTLSWith(ctx context.Context, raw net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	raw.SetDeadline(time.Now().Add(q.o.CommandTimeout))
	if _, err := io.WriteString(raw, "STARTTLS\r\n"); err != nil {
		return nil, err
	}
	// Bounded: a hostile server cannot feed an endless reply. Read as
	// every other reply (readReply), by its last line's code, and any
	// 2xx taken, as Postfix reads it (smtp_proto.c smtp_helo:
	// smtp_chat_resp, then code / 100 == 2 before smtp_start_tls): Go's
	// textproto took a line of another code ("220-..." then "454 ...")
	// for more text and waited for the command timeout.
	code, text, err := (&session{r: bufio.NewReaderSize(io.LimitReader(raw, 4096), 4096)}).readReply()
	if err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if code/100 != 2 {
		return nil, fmt.Errorf("STARTTLS refused: %s", printable(strconv.Itoa(code)+" "+text, 300))
	}
	raw.SetDeadline(time.Time{})
	tc := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, q.o.CommandTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// isTimeout says whether err is a deadline that ran out: a server that
// stops answering during the setup (greeting, TLS handshake, EHLO after
// it, AUTH) is down for now, as one that refuses connections is, and
// makes the destination dead (connCache.dialed) instead of each waiting
// job trying it in turn.
func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout())
}

// greetedConn replays a synthetic 220 greeting before the real stream, so a
// fresh go-smtp client can run over a connection already past its greeting.
type greetedConn struct {
	net.Conn
	r io.Reader
}

func (g *greetedConn) Read(p []byte) (int, error) { return g.r.Read(p) }

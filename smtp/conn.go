package smtp

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery/queue"
	"courriel/internal/logwriter"
	"courriel/smtp/wire"
)

// conn is one client connection and the SMTP state machine that runs on
// it (RFC 5321 §4.1.4 orders the commands): its goroutine reads commands
// with a wire.Reader, hands them to the session (session.go) and writes
// the replies with a wire.Writer, which holds them while the client has
// pipelined more commands (RFC 2920 §3.2) and sends them together when
// the reader is about to wait for the client.
type conn struct {
	net.Conn // the TCP connection, under TLS when there is TLS
	srv      *Server
	id       string     // immutable
	ip       netip.Addr // immutable; not valid on the Local socket
	// key counts the connection against MaxConnsPerIP: the address's
	// network, or on the Local socket the peer's uid. Immutable.
	key string
	// peer is the Local socket's client (SO_PEERCRED), nil on the
	// others. Immutable.
	peer *localPeer
	log  *slog.Logger

	commands     atomic.Int32 // all of them, for the log
	sinceMessage atomic.Int32 // since the last accepted message, for MaxCommands
	errors       atomic.Int32 // all of them, for the log
	recentErrors atomic.Int32 // since the last accepted message, for MaxErrors
	authFailures atomic.Int32
	// dropAfterWrite: close once the reply being written is sent.
	dropAfterWrite atomic.Bool
	// byeAfterWrite: the close is Shutdown's, after a transaction that
	// was let finish; the client is told (421 4.3.2, RFC 5321 §3.8).
	byeAfterWrite atomic.Bool
	closeOnce     sync.Once

	mu   sync.Mutex
	inTx bool     // guarded by mu: between MAIL and the end of the message
	cur  net.Conn // guarded by mu: c.Conn or its *tls.Conn, what replies go on
	rdns *string  // guarded by mu: reverse DNS, looked up once

	// wmu serialises writes on cur: the connection's goroutine flushes
	// replies, Shutdown's writes a 421 on an idle connection.
	wmu sync.Mutex

	// Owned by the connection's goroutine.
	r        *wire.Reader
	w        *wire.Writer
	tlsState *tls.ConnectionState // nil before TLS
	sess     *session             // from HELO/EHLO to QUIT or STARTTLS
	mailOK   bool                 // MAIL accepted in this transaction
	rcpts    int                  // RCPTs accepted in this transaction
	authed   bool
	pending  []byte // a command read while a BDAT transfer was expected
	// bdatRefused: a BDAT that was not the LAST was refused, and every
	// chunk is skipped (551 5.0.0) until BDAT LAST, RSET or EHLO, as in
	// Postfix's SMTPD_BDAT_STAT_ERROR, so that a client that pipelined
	// its chunks gets one refusal for the message and the rest of it is
	// never taken for a new one. MAIL, RCPT and DATA are refused
	// meanwhile.
	bdatRefused bool
	// esmtp: the last greeting was EHLO, not HELO (Postfix's protocol
	// "ESMTP", kept across STARTTLS as there); before it, or after HELO,
	// no command may be pipelined (see synchronized).
	esmtp bool
	// illPipelining: a pipelining violation was found (and logged); as
	// Postfix, the check is made until the first one only.
	illPipelining bool
	// readBy and writeBy are the deadlines last set on Conn (zero: none):
	// see extend.
	readBy, writeBy time.Time
}

// deadlineSlack divides a timeout into what a deadline may lag behind:
// extend leaves a deadline alone while the new one would be less than
// timeout/deadlineSlack later. Setting a deadline modifies a runtime
// timer, and a modified timer may wake an idle thread to watch it: two
// per command (read, then write) cost context switches on every
// command of every connection. A client still gets at least 63/64 of
// the timeout, never more than all of it.
const deadlineSlack = 64

// extendRead moves the read deadline ReadTimeout from now (see extend).
func (c *conn) extendRead() {
	c.extend(&c.readBy, c.srv.o.ReadTimeout, c.Conn.SetReadDeadline)
}

// extendWrite moves the write deadline WriteTimeout from now.
func (c *conn) extendWrite() {
	c.extend(&c.writeBy, c.srv.o.WriteTimeout, c.Conn.SetWriteDeadline)
}

// extend sets the deadline *by to timeout from now with set, unless the
// one set already is less than timeout/deadlineSlack earlier.
func (c *conn) extend(by *time.Time, timeout time.Duration, set func(time.Time) error) {
	t := time.Now().Add(timeout)
	if !by.IsZero() && t.Sub(*by) < timeout/deadlineSlack {
		return
	}
	*by = t
	set(t)
}

// handshakeTimeout bounds a TLS handshake: 30 s as IMAP's, or the command
// timeout when that is shorter. A handshake is a few round trips; the
// 5-minute command timeout let one address hold its 50 connections on 465
// for 5 minutes without sending a byte.
func handshakeTimeout(read time.Duration) time.Duration { return min(read, 30*time.Second) }

// setDeadline sets both deadlines at once (a TLS handshake; zero: none).
func (c *conn) setDeadline(t time.Time) {
	c.readBy, c.writeBy = t, t
	c.Conn.SetDeadline(t)
}

// serve runs the connection until QUIT, an error or a drop.
func (c *conn) serve() {
	defer c.finish()
	defer func() {
		// A bug in one session must not take the server down with every
		// other client: that client gets 421 and is disconnected.
		if v := recover(); v != nil {
			c.log.Error("panic serving the connection", "panic", v, "stack", string(debug.Stack()))
			if c.w != nil {
				c.policy(rep(421, gosmtp.EnhancedCode{4, 3, 0}, "Internal error, closing connection"))
			}
		}
	}()
	o := c.srv.o
	if o.Kind != Submissions {
		c.setCurrent(c.Conn)
	} else {
		logwriter.LogAttrs(c.srv.routine, c.log, slog.LevelInfo, "connect")
		tc := tls.Server(c.Conn, o.TLSConfig)
		c.setDeadline(time.Now().Add(handshakeTimeout(o.ReadTimeout)))
		if err := tc.Handshake(); err != nil {
			c.log.Info("TLS handshake failed", "err", err)
			return
		}
		c.setDeadline(time.Time{})
		st := tc.ConnectionState()
		c.tlsState = &st
		c.setCurrent(tc)
	}
	c.r = wire.NewReader(c.current(), o.MaxLineLength, c.flush)
	if buf, ok := c.srv.lineBufs.Get().(*[]byte); ok {
		c.r.Lend(*buf)
	}
	c.w = wire.NewWriter(c.current())
	if o.Kind != Submissions && c.sentAheadOf("CONNECT") {
		// Input before the greeting (not on 465, where the client
		// speaks TLS first): Postfix answers it, without a greeting.
		logwriter.LogAttrs(c.srv.routine, c.log, slog.LevelInfo, "connect")
		c.policy(replySyncError)
		return
	}
	c.w.Plain(220, o.Hostname+" ESMTP Service Ready")
	if o.Kind != Submissions {
		// The greeting first: the client reads it while this line is
		// written.
		c.flush()
		logwriter.LogAttrs(c.srv.routine, c.log, slog.LevelInfo, "connect")
	}
	for !c.dropAfterWrite.Load() && !c.tooManyErrors() {
		line := c.pending
		c.pending = nil
		if line == nil {
			c.extendRead()
			l, err := c.r.ReadLine()
			if err != nil {
				c.readFailed(err)
				return
			}
			line = l
		}
		c.command(line)
		if c.w.Full() {
			c.flush()
		}
	}
}

// finish ends the connection: the last replies, the session, the socket.
func (c *conn) finish() {
	if c.w != nil {
		if c.byeAfterWrite.Load() {
			c.w.Reply(421, wire.Enhanced{4, 3, 2}, c.srv.o.Hostname+" Service shutting down")
		}
		c.flush()
	}
	if c.sess != nil && c.sess.afterReply != nil { // after a panic
		c.sess.afterReply()
		c.sess.afterReply = nil
	}
	if c.sess != nil {
		c.sess.Logout()
		c.sess = nil
	}
	c.Close()
	if c.r != nil {
		if buf := c.r.Return(); buf != nil {
			c.srv.lineBufs.Put(&buf)
		}
	}
}

// flush writes the held replies; the reader calls it before it waits.
func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.w.Held() == 0 {
		return nil
	}
	c.extendWrite()
	return c.w.Flush()
}

// readFailed answers a failed command read, if it is worth an answer.
func (c *conn) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, wire.ErrLineTooLong):
		c.log.Warn("command line too long", "limit", c.srv.o.MaxLineLength)
		c.w.Reply(500, wire.Enhanced{5, 5, 2}, "Line too long, closing connection")
	case errors.As(err, &ne) && ne.Timeout():
		c.log.Info("timeout")
		c.w.Reply(421, wire.Enhanced{4, 4, 2}, c.srv.o.Hostname+" Error: timeout exceeded")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET):
	default:
		c.log.Debug("read", "err", err)
	}
}

// Close closes the socket; the first call also does the bookkeeping.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.srv.forget(c)
		c.srv.o.Metrics.ConnClosed(c.srv.o.Listener)
		logwriter.LogAttrs(c.srv.routine, c.log, slog.LevelInfo, "disconnect",
			slog.Int("commands", int(c.commands.Load())), slog.Int("errors", int(c.errors.Load())))
	})
	return err
}

// reply queues a reply given as an error: a *gosmtp.SMTPError from the
// session, nil for ok.
func (c *conn) reply(err error, ok func()) {
	if err == nil {
		ok()
		return
	}
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) { // the session maps every error; never leak one
		se = withID(replyTempFailure, c.id)
	}
	c.w.Reply(se.Code, wire.Enhanced(se.EnhancedCode), se.Message)
}

// policy queues a reply of ours (not the session's), with the connection's
// id when it is an error.
func (c *conn) policy(r *gosmtp.SMTPError) {
	r = withID(r, c.id)
	c.w.Reply(r.Code, wire.Enhanced(r.EnhancedCode), r.Message)
}

// protocolError answers a command that is not SMTP (unknown, bad syntax)
// and counts it with the session's errors: too many close the connection.
func (c *conn) protocolError(code int, ec wire.Enhanced, text string) {
	c.countError()
	c.w.Reply(code, ec, text)
}

// refuse answers a command the connection refuses itself (sequence,
// syntax, parameters) and counts it towards MaxErrors, as Postfix counts
// every command that fails.
func (c *conn) refuse(code int, ec wire.Enhanced, text string) {
	c.countError()
	c.w.Reply(code, ec, text)
}

// countError counts a refused command (session.fail, protocolError, refuse).
func (c *conn) countError() {
	c.errors.Add(1)
	c.recentErrors.Add(1)
}

// tooManyErrors ends a session that reached MaxErrors refused commands
// since its last accepted message, as Postfix's smtpd_hard_error_limit
// (smtpd.c, smtpd_proto): checked before the next command is read, so the
// last refusal is answered as it is and followed by 421 4.7.0; an accepted
// message forgives the errors before it (messageAccepted), so a list
// server with a stale recipient in every message is never cut off.
func (c *conn) tooManyErrors() bool {
	if int(c.recentErrors.Load()) < c.srv.o.MaxErrors {
		return false
	}
	c.log.Warn("too many errors", "errors", int(c.recentErrors.Load()))
	c.dropAfterWrite.Store(true)
	c.w.Reply(421, wire.Enhanced{4, 7, 0}, c.srv.o.Hostname+" Error: too many errors")
	return true
}

// counted counts a command the session does not see; false (after a 421)
// when there were too many.
func (c *conn) counted() bool {
	if c.countCommand() {
		c.dropAfterWrite.Store(true)
		c.policy(replyTooManyCmds)
		return false
	}
	return true
}

// command runs one command line.
func (c *conn) command(line []byte) {
	verb, arg, err := wire.ParseCommand(line)
	if err != nil {
		if !c.counted() {
			return
		}
		switch {
		case errors.Is(err, wire.ErrEmpty):
			c.protocolError(500, wire.Enhanced{5, 5, 2}, "Error: bad syntax")
		case nonSMTP(line):
			c.breakRules(line)
		default:
			c.protocolError(500, wire.Enhanced{5, 5, 2}, "Error: command not recognized")
		}
		return
	}
	if !c.synchronized(verb) {
		return
	}
	switch verb {
	case "EHLO", "HELO":
		c.hello(verb == "EHLO", arg)
	case "MAIL":
		c.mail(arg)
	case "RCPT":
		c.rcpt(arg)
	case "DATA":
		c.data(arg)
	case "BDAT":
		c.bdat(arg)
	case "RSET":
		// Counted, as Postfix's smtpd_junk_command_limit counts it: a
		// client that only resets never ends.
		if !c.counted() {
			return
		}
		if arg != "" {
			c.refuse(501, wire.Enhanced{5, 5, 4}, "Syntax: RSET")
			return
		}
		c.endTx()
		c.w.Reply(250, wire.Enhanced{2, 0, 0}, "Session reset")
	case "NOOP":
		if c.counted() {
			c.w.Reply(250, wire.Enhanced{2, 0, 0}, "I have successfully done nothing")
		}
	case "VRFY":
		switch {
		case !c.counted():
		case arg == "":
			// Postfix's vrfy_cmd: an address is required (RFC 5321 §4.1.1.6).
			c.refuse(501, wire.Enhanced{5, 5, 4}, "Syntax: VRFY address")
		default:
			c.w.Reply(252, wire.Enhanced{2, 5, 0}, "Cannot VRFY user, but will accept message")
		}
	case "HELP":
		if c.counted() {
			c.w.Reply(214, wire.Enhanced{2, 0, 0}, "See RFC 5321")
		}
	case "QUIT":
		// An argument is ignored, as Postfix's quit_cmd ignores it: the
		// client wants to leave, and refusing keeps its connection open
		// until a timeout.
		c.w.Reply(221, wire.Enhanced{2, 0, 0}, "Bye")
		c.dropAfterWrite.Store(true)
	case "AUTH":
		c.auth(arg)
	case "STARTTLS":
		c.startTLS(arg)
	case "XIMPORT":
		c.ximport(arg)
	case "EXPN", "SEND", "SOML", "SAML", "TURN", "ETRN":
		if c.counted() {
			c.refuse(502, wire.Enhanced{5, 5, 1}, verb+" command not implemented")
		}
	default:
		switch {
		case nonSMTP(line):
			c.breakRules(line)
		case c.counted():
			c.protocolError(500, wire.Enhanced{5, 5, 2}, "Error: command not recognized")
		}
	}
}

// nonSMTP says whether an unknown command is no SMTP at all, as Postfix
// 3.9's defaults (smtpd.c: is_header, smtpd_forbidden_commands = CONNECT
// GET POST regexp:{{/^[^A-Z]/ Bogus}}): its first word is a header field
// name and colon (message text taken as commands: a refused DATA whose
// text came after our check, SMTP smuggling), an HTTP proxy or web
// request, or it does not start with a letter.
func nonSMTP(line []byte) bool {
	word, _, _ := strings.Cut(strings.TrimLeft(string(line), " \t"), " ")
	word, _, _ = strings.Cut(word, "\t")
	if word == "" {
		return false
	}
	if c := word[0]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
		return true
	}
	for _, m := range []string{"CONNECT", "GET", "POST"} {
		if strings.EqualFold(word, m) {
			return true
		}
	}
	// A header: printable characters, then ':' (is_header_buf).
	for i := 0; i < len(word); i++ {
		switch c := word[i]; {
		case c == ':':
			return i > 0
		case c < 0x21 || c > 0x7e:
			return false
		}
	}
	return false
}

// breakRules ends a session that sent something that is not SMTP, as
// Postfix: 221 2.7.0 and close, the line logged.
func (c *conn) breakRules(line []byte) {
	c.log.Warn("non-SMTP command", "line", escapeInput(line[:min(len(line), 100)]))
	c.dropAfterWrite.Store(true)
	c.w.Reply(221, wire.Enhanced{2, 7, 0}, "Error: I can break rules, too. Goodbye.")
}

// synchronized applies Postfix 3.9's smtpd_forbid_unauth_pipelining
// (smtpd.c, smtpd_proto) before verb runs: RFC 2920 §3.1 lets EHLO, HELO,
// DATA, NOOP and VRFY (Postfix's SMTPD_CMD_FLAG_LAST) only end a pipelined
// group, and a client that has not said EHLO may not pipeline at all, so
// anything the client sent after such a command, before our reply, is a
// protocol violation: the message text sent along with DATA, the commands
// sent after a DATA that may be refused (SMTP smuggling). BDAT and the
// commands between MAIL and DATA may be pipelined after EHLO (RFC 3030,
// RFC 2920), a BDAT chunk follows its command by design; commands Postfix
// does not know (ours: XIMPORT, which a stream follows; EXPN, TURN...) are
// not checked. It answers 554 5.5.0 and ends the connection, false, unless
// Options.AllowUnauthPipelining (then it only logs). As Postfix, only the
// first violation is looked for and logged.
func (c *conn) synchronized(verb string) bool {
	switch verb {
	case "HELO", "EHLO", "DATA", "NOOP", "VRFY":
	case "MAIL", "RCPT", "BDAT", "RSET", "AUTH", "STARTTLS", "QUIT", "HELP", "ETRN":
		if c.esmtp {
			return true
		}
	default:
		return true
	}
	if !c.sentAheadOf(verb) {
		return true
	}
	c.policy(replySyncError)
	return false
}

// sentAheadOf reports (once the first time: false ever after) whether the
// client sent input that nobody has read yet, after the command named
// where (CONNECT: before our greeting), and logs it, escaped and at most
// 100 octets, as Postfix does. It is true only when the check is on; the
// connection then closes after the reply.
func (c *conn) sentAheadOf(where string) bool {
	if c.illPipelining {
		return false
	}
	var sample string
	if c.r.Buffered() == 0 && c.tlsState != nil {
		// Records crypto/tls read ahead from the socket are in neither
		// the Reader nor the socket: taken into the Reader (for the next
		// commands as before) by a read that may not wait.
		c.Conn.SetReadDeadline(time.Unix(1, 0))
		c.r.Poll()
		c.Conn.SetReadDeadline(c.readBy) // as it was (zero: none)
	}
	if b := c.r.Peek(100); len(b) > 0 {
		sample = escapeInput(b)
	} else {
		var p [100]byte
		n := wire.Peek(c.Conn, p[:])
		switch {
		case n == 0:
			return false
		case c.tlsState != nil: // records not yet decrypted
			sample = strconv.Itoa(n) + " octets of TLS records"
		default:
			sample = escapeInput(p[:n])
		}
	}
	c.illPipelining = true
	c.log.Info("improper command pipelining", "after", where, "input", sample)
	if c.srv.o.AllowUnauthPipelining {
		return false
	}
	c.dropAfterWrite.Store(true)
	return true
}

// escapeInput makes what a client sent one printable line for the log,
// with C escapes as Postfix's escape(): `DATA\r\nFrom: ...`.
func escapeInput(b []byte) string {
	var sb strings.Builder
	for _, x := range b {
		switch {
		case x == '\\':
			sb.WriteString(`\\`)
		case x == '\r':
			sb.WriteString(`\r`)
		case x == '\n':
			sb.WriteString(`\n`)
		case x == '\t':
			sb.WriteString(`\t`)
		case x < 0x20 || x >= 0x7f:
			fmt.Fprintf(&sb, `\%03o`, x)
		default:
			sb.WriteByte(x)
		}
	}
	return sb.String()
}

// endTx ends the transaction (RSET, a new EHLO, the end of a message).
func (c *conn) endTx() {
	c.mailOK, c.rcpts = false, 0
	c.bdatRefused = false
	if c.sess != nil {
		c.sess.Reset()
	}
}

func (c *conn) hello(ehlo bool, arg string) {
	domain, _, _ := strings.Cut(arg, " ")
	if domain == "" {
		c.refuse(501, wire.Enhanced{5, 5, 2}, "Domain/address argument required for HELO")
		return
	}
	c.esmtp = ehlo
	if c.sess != nil {
		// RFC 5321 §4.1.4: a new EHLO resets the transaction; the
		// session (its login, its milters) goes on.
		c.endTx()
		c.sess.setHelo(domain, ehlo)
		if c.countCommand() {
			c.dropAfterWrite.Store(true)
			c.policy(replyTooManyCmds)
			return
		}
	} else {
		sess, err := c.srv.newSession(c, domain, ehlo)
		if err != nil {
			c.reply(err, nil)
			return
		}
		c.sess = sess
	}
	o := c.srv.o
	if !ehlo {
		c.w.Plain(250, o.Hostname)
		return
	}
	lines := []string{o.Hostname, "PIPELINING", c.srv.ehloSize}
	if o.TLSConfig != nil && c.tlsState == nil && o.Kind != Submissions {
		lines = append(lines, "STARTTLS")
	}
	if mechs := c.sess.AuthMechanisms(); len(mechs) > 0 {
		lines = append(lines, "AUTH "+strings.Join(mechs, " "))
		if o.Kind != Cluster {
			// The seed's broken_sasl_auth_clients = yes: the same list
			// in the draft syntax that old Outlook clients look for.
			// Only here: the command is AUTH <mechanism>, as RFC 4954.
			lines = append(lines, "AUTH="+strings.Join(mechs, " "))
		}
	}
	lines = append(lines, "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING", "SMTPUTF8")
	if c.srv.offersDSN() {
		lines = append(lines, "DSN")
	}
	if o.Kind == Cluster && o.Queue != nil {
		// The DSN parameters of node copies (RET, ENVID, NOTIFY, XORCPT
		// after the cluster login): a front node sends them only to a
		// node that says so, never to one that would refuse them.
		lines = append(lines, "XDSN")
	}
	lines = append(lines, "LIMITS RCPTMAX="+strconv.Itoa(o.MaxRecipients))
	c.w.Plain(250, lines...)
}

// mailOptions are MAIL FROM's parameters the session uses.
type mailOptions struct {
	Size int64 // SIZE=, 0 when not given
	UTF8 bool  // SMTPUTF8
	// From another cluster node only (cluster.go): when the message was
	// queued there, and whether this is a retry.
	Arrived time.Time
	Retry   bool
	// RET and ENVID (RFC 3461, dsn.go): "" when not given.
	Ret, EnvID string
}

// unintroduced starts the session of a MAIL or AUTH sent before HELO/EHLO,
// as Postfix's smtpd_helo_required = no (its default; the seed does not
// set it) lets them: a session with no HELO name. Received then names the
// client by its reverse DNS ("from name (name [ip])"), with Postfix's
// protocol: SMTP, or ESMTP after an EHLO before STARTTLS. False when the
// session could not start (answered).
func (c *conn) unintroduced() bool {
	if c.sess != nil {
		return true
	}
	sess, err := c.srv.newSession(c, "", c.esmtp)
	if err != nil {
		c.reply(err, nil)
		return false
	}
	c.commands.Add(-1) // counted by the command itself, once
	c.sinceMessage.Add(-1)
	c.sess = sess
	return true
}

func (c *conn) mail(arg string) {
	if !c.unintroduced() {
		return
	}
	if c.inTransaction() {
		// Before the arguments, as Postfix: a second MAIL is out of
		// sequence whatever it says.
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: nested MAIL command")
		return
	}
	if c.bdatRefused {
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: MAIL after BDAT")
		return
	}
	rest, ok := wire.CutPrefixFold(arg, "FROM:")
	var from string
	var err error
	if ok {
		from, rest, err = wire.ParseReversePath(strings.TrimSpace(rest))
	}
	if !ok || err != nil {
		c.refuse(501, wire.Enhanced{5, 5, 2}, "Was expecting MAIL arg syntax of FROM:<address>")
		return
	}
	params, err := wire.ParseParams(rest)
	if err != nil {
		c.refuse(501, wire.Enhanced{5, 5, 4}, "Unable to parse MAIL ESMTP parameters")
		return
	}
	var opts mailOptions
	authParam := false // an AUTH= was given
	peer := c.srv.o.Kind == Cluster && c.sess.isClusterPeer()
	for _, p := range params {
		switch {
		case peer && p.Key == "XARRIVED":
			t, ok := parseArrived(p.Value)
			if !ok {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Malformed XARRIVED parameter value")
				return
			}
			opts.Arrived = t
			continue
		case peer && p.Key == "XRETRY" && p.Value == "":
			opts.Retry = true
			continue
		}
		switch p.Key {
		case "SIZE":
			n, ok := parseSize(p.Value)
			if !ok {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Unable to parse SIZE as an integer")
				return
			}
			opts.Size = n
		case "BODY":
			switch strings.ToUpper(p.Value) {
			case "7BIT", "8BITMIME":
			case "BINARYMIME":
				c.refuse(555, wire.Enhanced{5, 5, 4}, "BINARYMIME is not implemented")
				return
			default:
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Unknown BODY value")
				return
			}
		case "SMTPUTF8":
			if p.Value != "" {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "SMTPUTF8 takes no value")
				return
			}
			opts.UTF8 = true
		case "AUTH":
			// RFC 4954 §5: who submitted the message, which we trust from
			// nobody (we relay no AUTH= further): its value is not looked
			// at, as Postfix's smtpd_sasl_mail_opt takes any, only a
			// second one refused. Clients send values that are no xtext:
			// curl --mail-auth sends its address as typed, so a '+' in it
			// ("AUTH=<joe+list@example.org>") made a 501 and the message
			// was not sent.
			if authParam {
				c.refuse(503, wire.Enhanced{5, 5, 4}, "Error: multiple AUTH= options")
				return
			}
			authParam = true
		case "RET", "ENVID":
			if !c.srv.offersDSN() && !(peer && c.srv.o.Queue != nil) {
				c.refuse(555, wire.Enhanced{5, 5, 4}, p.Key+" is not implemented")
				return
			}
			var v string
			var ok bool
			dup := opts.Ret != ""
			if p.Key == "RET" {
				v, ok = parseRet(p.Value)
				opts.Ret = v
			} else {
				dup = opts.EnvID != ""
				v, ok = parseEnvID(p.Value)
				opts.EnvID = v
			}
			if dup {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Duplicate "+p.Key+" parameter")
				return
			}
			if !ok {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Bad "+p.Key+" parameter syntax")
				return
			}
		case "REQUIRETLS", "BY", "MT-PRIORITY":
			c.refuse(555, wire.Enhanced{5, 5, 4}, p.Key+" is not implemented")
			return
		default:
			c.refuse(555, wire.Enhanced{5, 5, 4}, "Unsupported MAIL FROM parameter")
			return
		}
	}
	c.reply(c.sess.Mail(from, &opts), func() {
		c.mailOK, c.rcpts = true, 0
		c.w.Reply(250, wire.Enhanced{2, 1, 0}, "Ok")
	})
}

// parseSize reads SIZE='s value: digits only; a number too large for an
// int64 is as good as infinite (refused by the size limit, not as syntax).
func parseSize(v string) (int64, bool) {
	if v == "" || len(v) > 20 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 1<<63 - 1, true
	}
	return n, true
}

func (c *conn) rcpt(arg string) {
	if !c.mailOK {
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: need MAIL command")
		return
	}
	if c.bdatRefused {
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: RCPT after BDAT")
		return
	}
	rest, ok := wire.CutPrefixFold(arg, "TO:")
	var to string
	var err error
	if ok {
		to, rest, err = wire.ParseForwardPath(strings.TrimSpace(rest))
	}
	if !ok || err != nil {
		c.refuse(501, wire.Enhanced{5, 5, 2}, "Was expecting RCPT arg syntax of TO:<address>")
		return
	}
	params, err := wire.ParseParams(rest)
	if err != nil {
		c.refuse(501, wire.Enhanced{5, 5, 4}, "Unable to parse RCPT ESMTP parameters")
		return
	}
	// ORCPT and XJUNK mean something only from another node of the
	// cluster, logged in with the shared secret (cluster.go).
	peer := c.srv.o.Kind == Cluster && c.sess.isClusterPeer()
	var orig, key string
	var junk bool
	var dsn queue.RcptDSN
	for _, p := range params {
		switch {
		case peer && p.Key == "XKEY":
			if !validKey(p.Value) {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Malformed XKEY parameter value")
				return
			}
			key = p.Value
			continue
		case peer && p.Key == "ORCPT":
			v, ok := parseORCPT(p.Value)
			if !ok {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Malformed ORCPT parameter value")
				return
			}
			orig = v
			continue
		case peer && p.Key == "XJUNK" && p.Value == "":
			junk = true
			continue
		case peer && p.Key == "XORCPT" && c.srv.o.Queue != nil:
			// The client's ORCPT of a node copy (XDSN): ORCPT itself
			// names the original recipient on this hop.
			if dsn.ORcpt != "" {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Duplicate XORCPT parameter")
				return
			}
			// A value this node's check refuses (another version's
			// form) only costs the DSN its Original-Recipient: a 5xx on
			// this hop would bounce the copy.
			if o, ok := parseORcpt(p.Value, true); ok {
				dsn.ORcpt = o
			} else {
				c.log.Warn("rcpt: XORCPT from a node ignored", "value", logValue(p.Value, 200))
			}
			continue
		case p.Key == "NOTIFY" && (c.srv.offersDSN() || peer && c.srv.o.Queue != nil):
			if dsn.Notify != "" {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Duplicate NOTIFY parameter")
				return
			}
			n, why := parseNotify(p.Value)
			switch {
			case why != "" && peer:
				// As XORCPT: the node's default notice rather than a bounce.
				c.log.Warn("rcpt: NOTIFY from a node ignored", "value", logValue(p.Value, 200))
			case why != "":
				c.refuse(501, wire.Enhanced{5, 5, 4}, why)
				return
			}
			dsn.Notify = n
			continue
		case p.Key == "ORCPT" && c.srv.offersDSN():
			if dsn.ORcpt != "" {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Duplicate ORCPT parameter")
				return
			}
			o, ok := parseORcpt(p.Value, c.sess.tx.utf8)
			if !ok {
				c.refuse(501, wire.Enhanced{5, 5, 4}, "Bad ORCPT parameter syntax")
				return
			}
			dsn.ORcpt = o
			continue
		case p.Key == "NOTIFY", p.Key == "ORCPT", p.Key == "RRVS":
			c.refuse(555, wire.Enhanced{5, 5, 4}, p.Key+" is not implemented")
		default:
			c.refuse(555, wire.Enhanced{5, 5, 4}, "Unsupported RCPT TO parameter")
		}
		return
	}
	if c.rcpts >= c.srv.o.MaxRecipients {
		// Not an error of the client's (RFC 5321 §4.5.3.1.10): not counted.
		r := withID(replyTooManyRcpts, c.sess.replyID())
		c.w.Reply(r.Code, wire.Enhanced(r.EnhancedCode), r.Message)
		return
	}
	if c.srv.o.Kind == Cluster {
		err = c.sess.RcptCluster(to, orig, key, junk, dsn)
	} else {
		err = c.sess.Rcpt(to, dsn)
	}
	c.reply(err, func() {
		c.rcpts++
		c.w.Reply(250, wire.Enhanced{2, 1, 5}, "Ok")
	})
}

// replyQueued is the reply to a message accepted. Its id, Postfix's
// "queued as", is the msg_id of every log line about the message and the id
// of its Received field, so a sender's admin can name it to ours.
func (c *conn) replyQueued() {
	c.w.Reply(250, wire.Enhanced{2, 0, 0}, "OK: queued as "+c.sess.replyID())
}

func (c *conn) data(arg string) {
	// Postfix's data_cmd: a chunked message first, then the recipients,
	// then the syntax.
	if c.bdatRefused {
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: DATA after BDAT")
		return
	}
	if c.noRecipients() {
		return
	}
	if arg != "" {
		c.refuse(501, wire.Enhanced{5, 5, 4}, "Syntax: DATA")
		return
	}
	o := c.srv.o
	c.w.Plain(354, "End data with <CR><LF>.<CR><LF>")
	c.extendRead()
	dr := c.r.DataReader()
	err := c.sess.Data(dr)
	// A message over the limit: the session stopped reading it. The rest
	// is read and dropped to stay in step with the client, up to as much
	// again as the limit for an honest client that ignored SIZE, and no
	// more for one that never stops: it is cut off after the reply.
	budget := 2*o.MaxMessageBytes - dr.Consumed()
	if !dr.Done() && budget > 0 {
		if _, rerr := dr.Discard(budget); rerr != nil {
			c.dropAfterWrite.Store(true)
			c.readFailed(rerr)
			c.endTx()
			return
		}
	}
	if !dr.Done() || dr.Consumed() > 2*o.MaxMessageBytes {
		c.dropAfterWrite.Store(true)
		c.log.Warn("message too large: the client kept sending past twice the limit; closing after the reply")
	}
	c.reply(err, c.replyQueued)
	c.replied()
	c.endTx()
}

// noRecipients refuses DATA or a first BDAT that has no recipient, with
// Postfix's words (data_cmd, bdat_cmd), counted as an error as Postfix
// counts every refused command: outside a transaction it is out of
// sequence (503 5.5.1 Error: need RCPT command); within one whose every
// RCPT was refused (a pipelining client sends DATA before it has seen
// the refusals, RFC 2920 §3.1) there is nothing to deliver (554 5.5.1
// Error: no valid recipients). Either way no message is read: the
// transaction and what follows the command are as after any refusal.
func (c *conn) noRecipients() bool {
	switch {
	case c.rcpts > 0:
		return false
	case !c.mailOK:
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: need RCPT command")
	default:
		c.refuse(554, wire.Enhanced{5, 5, 1}, "Error: no valid recipients")
	}
	return true
}

// replied runs what the session left for after the reply to a message
// (its "message accepted" line, and the delivery lines held back): the
// reply goes out first, unless the client pipelined more commands, whose
// replies it then joins, as the reader would send it before waiting
// anyway.
func (c *conn) replied() {
	f := c.sess.afterReply
	if f == nil {
		return
	}
	c.sess.afterReply = nil
	if c.r.Buffered() == 0 {
		c.flush()
	}
	f()
}

// parseBDAT reads BDAT's arguments: the chunk size and LAST. ok is false
// after a syntax error, answered as Postfix's bdat_cmd answers it: 521
// 5.5.4 and the connection closes. A chunk follows its BDAT line whatever
// the reply, and one whose size cannot be read cannot be skipped: read on,
// its octets would be taken for commands, so a message's text would run
// as RCPT or DATA (the desynchronisation SMTP smuggling relies on).
func (c *conn) parseBDAT(arg string) (size int64, last, ok bool) {
	f := strings.Fields(arg)
	var why string
	switch {
	case len(f) == 0:
		why = "missing chunk size"
	case len(f) > 2:
		why = "too many arguments"
	case len(f) == 2 && !strings.EqualFold(f[1], "LAST"):
		why = "unknown argument"
	}
	var n uint64
	if why == "" {
		var err error
		if n, err = strconv.ParseUint(f[0], 10, 63); err != nil {
			why = "malformed chunk size"
		}
	}
	if why != "" {
		c.log.Warn("malformed BDAT command; closing", "why", why, "line", logValue(arg, 100))
		c.countError()
		c.dropAfterWrite.Store(true)
		c.w.Reply(521, wire.Enhanced{5, 5, 4}, "Syntax: BDAT count [LAST]")
		return 0, false, false
	}
	return int64(n), len(f) == 2, true
}

// bdat runs a BDAT command (RFC 3030) outside a chunked transfer: the
// first chunk of a message, or a chunk that has no transaction. Its
// checks are Postfix's bdat_cmd, in its order: a null chunk that is not
// the LAST, a message already refused (bdatRefused), the recipients,
// the size the chunk declares. A refused chunk is skipped (it follows
// the command even then); one that is not the LAST makes the chunks
// after it refused too.
func (c *conn) bdat(arg string) {
	size, last, ok := c.parseBDAT(arg)
	if !ok {
		return
	}
	chunk := c.r.ChunkReader(size)
	switch {
	case size == 0 && !last:
		c.refuseChunk(chunk, last, 551, wire.Enhanced{5, 7, 1}, "Null BDAT request")
		return
	case c.bdatRefused:
		c.refuseChunk(chunk, last, 551, wire.Enhanced{5, 0, 0}, discarded(size))
		return
	case c.noRecipients():
		c.skipChunk(chunk)
		c.chunkRefused(last)
		return
	case size > c.srv.o.MaxMessageBytes:
		c.refuseChunk(chunk, last, 552, wire.Enhanced{5, 3, 4}, "Chunk exceeds message size limit")
		return
	}
	br := &bdatReader{c: c, chunk: chunk, last: last, size: size, total: size}
	err := c.sess.Data(br)
	if errors.Is(err, errDataReset) {
		// Another command came instead of a BDAT (pending, run next),
		// a refused message ended with its LAST chunk (br.ended), or
		// the client went away (br.readErr). A refused message whose
		// chunks were cut short by a command other than RSET or EHLO
		// (which end it anyway) stays refused, as in Postfix.
		refused := c.bdatRefused
		c.endTx()
		if br.readErr != nil {
			c.readFailed(br.readErr)
			c.dropAfterWrite.Store(true)
			return
		}
		c.bdatRefused = refused && !br.ended
		return
	}
	if br.readErr != nil && !errors.Is(br.readErr, errTooLarge) {
		c.readFailed(br.readErr)
		c.dropAfterWrite.Store(true)
		c.endTx()
		return
	}
	c.reply(err, c.replyQueued)
	c.replied()
	c.endTx()
	c.skipChunk(br.chunk) // what the session did not read of a refused chunk
	if err != nil {
		c.chunkRefused(br.last)
	}
}

// discarded is Postfix's reply text to a chunk of a refused message.
func discarded(size int64) string {
	return "Discarded " + strconv.FormatInt(size, 10) + " bytes after earlier error"
}

// refuseChunk skips a chunk and answers its BDAT with a refusal.
// The reply comes first, as for a refused transaction (noRecipients):
// a client may read it while it sends a large chunk.
func (c *conn) refuseChunk(chunk *wire.ChunkReader, last bool, code int, ec wire.Enhanced, text string) {
	c.refuse(code, ec, text)
	c.skipChunk(chunk)
	c.chunkRefused(last)
}

// chunkRefused follows a refused chunk, as Postfix's skip_bdat: the LAST
// one ends the transaction (the client's message ended with it, and a
// client pipelining its next MAIL must find none open); after another,
// the chunks that follow are refused too.
func (c *conn) chunkRefused(last bool) {
	if last {
		c.endTx()
		return
	}
	c.bdatRefused = true
}

// skipChunk reads and drops the rest of a chunk, at most twice the size
// limit, within the deadline set when its BDAT line was read (not
// extended: a chunk refused costs at most ReadTimeout); past either, the
// connection closes rather than read the rest as commands.
func (c *conn) skipChunk(chunk *wire.ChunkReader) {
	if chunk.Left() == 0 {
		return
	}
	ended, err := chunk.Discard(2 * c.srv.o.MaxMessageBytes)
	if ended {
		return
	}
	c.dropAfterWrite.Store(true)
	if err != nil {
		c.readFailed(err)
		return
	}
	c.log.Warn("refused BDAT chunk larger than the size limit; closing")
}

// bdatReader is a message sent with BDAT: the chunks one after the other.
// When a chunk that is not the LAST ends, it answers that BDAT and reads
// the next command itself: another BDAT goes on with the message, NOOP is
// answered, DATA refused (503 5.5.1 Error: DATA after BDAT, as Postfix),
// anything else ends the transfer (Read fails with errDataReset)
// and is run once the session has let go of the message.
type bdatReader struct {
	c       *conn
	chunk   *wire.ChunkReader
	last    bool
	size    int64 // the chunk's declared octets
	total   int64 // declared octets so far
	readErr error // the read that failed, for the caller
	ended   bool  // a refused message ended with its LAST chunk (skipped)
}

func (b *bdatReader) Read(p []byte) (int, error) {
	c := b.c
	for {
		if b.readErr != nil {
			return 0, b.readErr
		}
		if b.total > c.srv.o.MaxMessageBytes {
			b.readErr = errTooLarge
			return 0, errTooLarge
		}
		n, err := b.chunk.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			if err != nil && err != io.EOF {
				b.readErr = err
			}
			return n, b.readErr
		}
		if b.last {
			return 0, io.EOF
		}
		// Postfix's reply to a chunk that is not the last: its size.
		c.w.Reply(250, wire.Enhanced{2, 0, 0}, "Ok: "+strconv.FormatInt(b.size, 10)+" bytes")
		if !b.nextChunk() {
			return 0, errDataReset
		}
	}
}

// nextChunk reads commands until the next BDAT; false when something else
// ends the transfer. NOOP, VRFY, HELP and AUTH are answered; DATA, MAIL
// and RCPT are refused as Postfix refuses them within a chunked message,
// and the transfer goes on after each. A chunk refused here (null, or past the size
// limit: Postfix's checks of every BDAT) is skipped, and so is every
// chunk after it (c.bdatRefused) until the LAST, which ends the
// transfer; the message is never stored.
func (b *bdatReader) nextChunk() bool {
	c := b.c
	for {
		if c.w.Full() {
			c.flush()
		}
		if c.tooManyErrors() {
			b.readErr = errDataReset
			return false
		}
		c.extendRead()
		line, err := c.r.ReadLine()
		if err != nil {
			b.readErr = err
			return false
		}
		verb, arg, err := wire.ParseCommand(line)
		switch {
		case err == nil && verb == "NOOP":
			if !c.synchronized(verb) {
				b.readErr = errDataReset
				return false
			}
			if !c.counted() {
				b.readErr = errDataReset
				return false
			}
			c.w.Reply(250, wire.Enhanced{2, 0, 0}, "I have successfully done nothing")
			continue
		case err == nil && verb == "DATA":
			// Refused as by Postfix's data_cmd; the chunked message goes
			// on (BDAT) or ends (RSET) as the client says next.
			if !c.synchronized(verb) {
				b.readErr = errDataReset
				return false
			}
			c.protocolError(503, wire.Enhanced{5, 5, 1}, "Error: DATA after BDAT")
			continue
		case err == nil && verb == "MAIL":
			if !c.synchronized(verb) {
				b.readErr = errDataReset
				return false
			}
			c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: nested MAIL command")
			continue
		case err == nil && verb == "RCPT":
			if !c.synchronized(verb) {
				b.readErr = errDataReset
				return false
			}
			c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: RCPT after BDAT")
			continue
		case err == nil && (verb == "VRFY" || verb == "HELP" || verb == "AUTH"):
			// Answered as within any transaction (AUTH refused, RFC 4954
			// §4), and the transfer goes on, as Postfix's smtpd runs
			// them between chunks; none changes the transaction.
			c.command(line)
			if c.dropAfterWrite.Load() {
				b.readErr = errDataReset
				return false
			}
			continue
		case err == nil && verb == "BDAT":
			size, last, ok := c.parseBDAT(arg)
			if !ok {
				b.readErr = errDataReset
				return false
			}
			chunk := c.r.ChunkReader(size)
			switch {
			case size == 0 && !last:
				c.refuse(551, wire.Enhanced{5, 7, 1}, "Null BDAT request")
				c.skipChunk(chunk)
			case c.bdatRefused:
				c.refuse(551, wire.Enhanced{5, 0, 0}, discarded(size))
				c.skipChunk(chunk)
			case size > c.srv.o.MaxMessageBytes-b.total:
				c.refuse(552, wire.Enhanced{5, 3, 4}, "Chunk exceeds message size limit")
				c.skipChunk(chunk)
			default:
				b.chunk, b.last, b.size = chunk, last, size
				b.total += size
				return true
			}
			if last {
				// The refused message ends; the session drops it
				// and nobody reads its result (bdat ends the
				// transaction).
				b.ended = true
				return false
			}
			if c.dropAfterWrite.Load() {
				b.readErr = errDataReset // skipping the chunk failed
				return false
			}
			c.bdatRefused = true
			continue
		}
		c.pending = append(make([]byte, 0, len(line)), line...) // never nil: an empty line too is a command
		return false
	}
}

// auth runs AUTH (RFC 4954) with the session's SASL mechanisms.
// As Postfix's smtpd_sasl_auth_cmd with smtpd_helo_required = no, it may
// come before HELO/EHLO; the rules of TLS first (AuthOffered) are the
// same, and come first.
func (c *conn) auth(arg string) {
	if !c.unintroduced() {
		return
	}
	if err := c.sess.AuthOffered(); err != nil {
		c.reply(err, nil)
		return
	}
	// RFC 4954 §4, and Postfix: not within a transaction. Its sender
	// may have passed the login check at RCPT for the client as it was
	// (checkSenderLogin, answered once per transaction); a login now
	// must not make it another user's mail. Postfix's words and order
	// (smtpd_sasl_auth_cmd).
	if c.mailOK {
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: MAIL transaction in progress")
		return
	}
	if c.authed {
		c.refuse(503, wire.Enhanced{5, 5, 1}, "Error: already authenticated")
		return
	}
	parts := strings.Fields(arg)
	if len(parts) == 0 || len(parts) > 2 {
		c.refuse(501, wire.Enhanced{5, 5, 4}, "Syntax: AUTH mechanism [initial-response]")
		return
	}
	srv, err := c.sess.Auth(parts[0])
	if err != nil {
		c.reply(err, nil)
		return
	}
	var resp []byte
	if len(parts) == 2 {
		if resp, err = decodeSASL(parts[1]); err != nil {
			c.reply(c.sess.fail(stageAuth, replyBadAuthData), nil)
			return
		}
	}
	for {
		challenge, done, err := srv.Next(resp)
		if err != nil {
			c.reply(err, nil)
			return
		}
		if done {
			break
		}
		c.w.Plain(334, base64.StdEncoding.EncodeToString(challenge))
		c.extendRead()
		line, err := c.r.ReadLine()
		if err != nil {
			c.readFailed(err)
			c.dropAfterWrite.Store(true)
			return
		}
		if string(line) == "*" {
			c.refuse(501, wire.Enhanced{5, 0, 0}, "Negotiation cancelled")
			return
		}
		if resp, err = decodeSASL(string(line)); err != nil {
			c.reply(c.sess.fail(stageAuth, replyBadAuthData), nil)
			return
		}
	}
	c.authed = true
	c.w.Reply(235, wire.Enhanced{2, 7, 0}, "Authentication successful") // RFC 4954 §6, Postfix's words
}

// decodeSASL decodes a SASL response; "=" is an empty one (RFC 4954 §4).
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// startTLS runs STARTTLS (RFC 3207).
func (c *conn) startTLS(arg string) {
	o := c.srv.o
	switch {
	case c.tlsState != nil:
		c.refuse(502, wire.Enhanced{5, 5, 1}, "Already running in TLS")
		return
	case o.TLSConfig == nil || o.Kind == Submissions:
		c.refuse(502, wire.Enhanced{5, 5, 1}, "TLS not supported")
		return
	case arg != "":
		c.refuse(501, wire.Enhanced{5, 5, 4}, "Syntax: STARTTLS")
		return
	}
	c.w.Reply(220, wire.Enhanced{2, 0, 0}, "Ready to start TLS")
	if err := c.flush(); err != nil {
		c.dropAfterWrite.Store(true)
		return
	}
	tc := tls.Server(c.Conn, o.TLSConfig)
	// What the client sent in clear after STARTTLS is dropped, never run
	// inside TLS (CVE-2011-0411).
	if n := c.r.SetSource(tc); n > 0 {
		c.log.Warn("plaintext pipelined after STARTTLS discarded", "octets", n)
	}
	c.setDeadline(time.Now().Add(handshakeTimeout(o.ReadTimeout)))
	if err := tc.Handshake(); err != nil {
		c.log.Info("TLS handshake failed", "err", err)
		c.dropAfterWrite.Store(true)
		return
	}
	c.setDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tlsState = &st
	c.setCurrent(tc)
	c.w.SetDestination(tc)
	// RFC 3207 §4.2: everything known before TLS is forgotten.
	if c.sess != nil {
		c.sess.Logout()
		c.sess = nil
	}
	c.mailOK, c.rcpts, c.authed = false, 0, false
}

// countCommand counts one command and reports when the limit is passed.
func (c *conn) countCommand() bool {
	c.commands.Add(1)
	return int(c.sinceMessage.Add(1)) > c.srv.o.MaxCommands
}

// messageAccepted restarts the counts MaxCommands and MaxErrors bound, as
// Postfix forgives junk commands and errors once a message is queued: a
// client that delivers mail may send any number of messages on one
// connection (an MTA draining its queue); one that only talks is cut off.
func (c *conn) messageAccepted() {
	c.sinceMessage.Store(0)
	c.recentErrors.Store(0)
}

func (c *conn) setTx(on bool) {
	c.mu.Lock()
	c.inTx = on
	c.mu.Unlock()
	if !on && c.srv.isClosing() {
		c.byeAfterWrite.Store(true)
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
	c.cur = nc
	c.mu.Unlock()
}

func (c *conn) current() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// closeIdle says goodbye (RFC 5321 §3.8) to a client waiting between
// transactions and closes the connection. It runs on Shutdown's goroutine.
func (c *conn) closeIdle() {
	c.wmu.Lock()
	if cur := c.current(); cur != nil {
		cur.SetWriteDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(cur, "421 4.3.2 %s Service shutting down\r\n", c.srv.o.Hostname)
	}
	c.wmu.Unlock()
	c.Close()
}

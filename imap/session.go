package imap

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

type connState uint8

const (
	stateNotAuth connState = iota
	stateAuth
	stateSelected
	stateLogout
)

// ext is a set of extensions the client turned on with ENABLE; the next
// ones (CONDSTORE, QRESYNC) change what FETCH and EXPUNGE send.
type ext uint8

const (
	extUTF8      ext = 1 << iota // UTF8=ACCEPT (RFC 6855)
	extRev2                      // IMAP4rev2 (RFC 9051 §6.3.1)
	extCondstore                 // CONDSTORE (RFC 7162 §3.1): MODSEQ in FETCH
	extQresync                   // QRESYNC (RFC 7162 §3.2): VANISHED instead of EXPUNGE
)

// session is one connection, served by one goroutine (no second one for
// IDLE: see idle). Fields are used by that goroutine only unless noted.
type session struct {
	srv  *Server
	conn net.Conn // the TLS connection after STARTTLS
	// raw is the accepted connection, never replaced: other goroutines
	// (Server.wakeIdlers, Close, Shutdown) set its deadline or close it.
	raw net.Conn
	r   *wire.Reader
	w   *wire.Writer
	// ip is the client's address: the connection's, or after a front
	// node's cluster login the address that node saw (proxy.go).
	ip     string
	port   uint16 // the client's port, as ip
	id     string
	logger *slog.Logger
	tls    bool

	state   connState
	enabled ext
	user    directory.User
	store   *mailstore.Store // nil until login
	fails   int              // failed logins on this connection
	cmdName string           // the command being run, upper case
	// searchCS is the CHARSET of the SEARCH, SORT or THREAD being read
	// ("": UTF-8 or US-ASCII), in which its strings come (searchText).
	searchCS string
	// readIdle is how long one read may wait while a command is read
	// (0: the deadline set by the caller stands); see sessionReader.
	readIdle time.Duration
	// loginBy ends every wait before login (Options.LoginTimeout after
	// connect); see readDeadline.
	loginBy time.Time

	sel       *selected // nil unless a mailbox is selected
	searchRes []uint32  // SEARCHRES "$": UIDs saved by SEARCH RETURN (SAVE)

	// idleOn is the mailbox the session waits on in IDLE (set through
	// Server.setIdleOn, which files the session under it for
	// wakeIdlers); shutdown asks for a BYE at the next wait.
	idleOn   atomic.Pointer[mailstore.Mailbox]
	woken    atomic.Bool // a change was signalled; survives a deadline reset
	shutdown atomic.Bool
	// notify is the NOTIFY set (notify.go); other sessions hand it
	// mailbox events.
	notify atomic.Pointer[notifyState]

	// z is the DEFLATE state after COMPRESS (compress.go); nil before.
	z *deflater

	// origin is what a front node's ID said about the client, trusted
	// once hopLogin is set (proxy.go); hop is the home node's connection
	// of a session passed through to it.
	origin   cluster.Origin
	hopLogin bool
	hop      *hop

	// Scratch buffers of FETCH (see readMessage), and of SEARCH BODY and
	// TEXT (searchtext.go). heldMem is the share of the server's memory
	// budget they hold beyond maxKeptBuf (membudget.go), given back when
	// trimBuffers drops them.
	readBuf, crlfBuf []byte
	text             textScratch
	heldMem          int64

	// saidBye: an untagged BYE was written, or none can be (a failed
	// STARTTLS handshake); see end.
	saidBye bool
	// shared is sel for other sessions: a DELETE or RENAME of the
	// folder marks it gone (folderGone).
	shared atomic.Pointer[selected]
}

func newSession(s *Server, c net.Conn, ip string, isTLS bool) *session {
	se := &session{srv: s, conn: c, raw: c, ip: ip, id: newID(), tls: isTLS, loginBy: time.Now().Add(s.opts.LoginTimeout)}
	_, se.port = cluster.AddrPort(c.RemoteAddr())
	se.logger = s.log.With("conn_id", se.id)
	se.r = wire.NewReader(sessionReader{se}, &s.bufs)
	se.w = wire.NewWriter(sessionWriter{se}, &s.bufs)
	se.r.Continue = func() error {
		se.w.Raw("+ Ready for literal data\r\n")
		if err := se.flush(); err != nil {
			return err
		}
		// The literal itself may be long: it gets its own timeout.
		se.readIdle = literalTimeout
		return nil
	}
	return se
}

// respErr is a tagged NO or BAD with an optional response code.
type respErr struct {
	kind string // "NO" or "BAD"
	code string
	text string
	// expunges: a NO before which the EXPUNGEs waiting are written
	// (COPY and MOVE of a message another session expunged).
	expunges bool
}

func (e *respErr) Error() string { return e.kind + " " + e.text }

func no(code, text string) *respErr  { return &respErr{kind: "NO", code: code, text: text} }
func bad(code, text string) *respErr { return &respErr{kind: "BAD", code: code, text: text} }

// errClose ends the connection after the command's reply.
var errClose = errors.New("imap: close connection")

func (s *session) curName() string { return s.cmdName }

func (s *session) utf8() bool { return s.enabled&(extUTF8|extRev2) != 0 }
func (s *session) rev2() bool { return s.enabled&extRev2 != 0 }

func (s *session) flush() error { return s.w.Flush() }

// sessionReader reads from the session's current connection (the TLS one
// after STARTTLS). While a command is being read, each read gets readIdle
// of patience, so a slow but steady upload never times out while a
// silent client does; between commands and in IDLE readIdle is 0 and the
// absolute deadline set by the caller stands.
//
// A read that times out before its own deadline was woken by another
// goroutine (a NOTIFY event, a folder deleted under the session): it
// reads again, unless the server is shutting down. Cut, the command was
// lost and the connection closed.
type sessionReader struct{ s *session }

func (r sessionReader) Read(p []byte) (int, error) {
	s := r.s
	for {
		var by time.Time
		if d := s.readIdle; d > 0 {
			by = s.readDeadline(d)
			_ = s.conn.SetReadDeadline(by)
		}
		var n int
		var err error
		if z := s.z; z != nil {
			n, err = z.Read(p)
		} else {
			n, err = s.conn.Read(p)
		}
		if err == nil {
			return n, nil
		}
		if n == 0 && !by.IsZero() && isTimeout(err) && time.Now().Before(by) && !s.shutdown.Load() {
			continue
		}
		return n, &connError{err: err}
	}
}

// readDeadline is when a wait of d from now ends: no later than loginBy
// before login.
func (s *session) readDeadline(d time.Duration) time.Time {
	t := time.Now().Add(d)
	if s.state == stateNotAuth && t.After(s.loginBy) {
		return s.loginBy
	}
	return t
}

// loginTimedOut reports whether the session is closed for want of a
// login in time (Options.LoginTimeout).
func (s *session) loginTimedOut() bool {
	return s.state == stateNotAuth && !time.Now().Before(s.loginBy)
}

// sessionWriter writes to the session's current connection; each write
// gets writeTimeout, so a long FETCH to a slow reader goes on while it
// reads.
type sessionWriter struct{ s *session }

func (w sessionWriter) Write(p []byte) (int, error) {
	_ = w.s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	var n int
	var err error
	if z := w.s.z; z != nil {
		n, err = z.Write(p)
	} else {
		n, err = w.s.conn.Write(p)
	}
	if err != nil {
		err = &connError{err: err, write: true}
	}
	return n, err
}

// connError is a failure to read from or write to the client (the
// connection, or the compression over it): the session cannot go on.
// Only sessionReader and sessionWriter make one. A storage error is never
// taken for it, although a syscall.Errno (ENOSPC, EIO, EROFS) is a
// net.Error too: it gets a tagged NO and the session goes on.
type connError struct {
	err   error
	write bool // a write failed: the client stopped reading
}

func (e *connError) Error() string { return e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

func (s *session) serve() {
	defer s.close()
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("imap: panic in session", "panic", p, "stack", string(debug.Stack()))
			s.end(errPanic)
		}
	}()
	if tc, ok := s.conn.(*tls.Conn); ok {
		_ = tc.SetDeadline(s.readDeadline(preAuthTimeout))
		if err := tc.Handshake(); err != nil {
			s.logger.Debug("imap: TLS handshake failed", "err", err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
	}
	s.w.Raw("* OK [CAPABILITY ")
	s.w.Raw(s.capabilities())
	s.w.Raw("] courriel ready\r\n")
	if s.flush() != nil {
		return
	}
	for s.state != stateLogout {
		if err := s.waitCommand(); err != nil {
			s.end(err)
			return
		}
		if err := s.command(); err != nil {
			if !errors.Is(err, errClose) && !isConnErr(err) {
				s.logger.Warn("imap: connection ended", "err", err)
			}
			s.end(err)
			return
		}
		if s.flush() != nil {
			return
		}
		if s.hop != nil {
			s.splice()
			return
		}
	}
}

// errPanic ends a session whose goroutine panicked.
var errPanic = errors.New("imap: panic")

// bye writes an untagged BYE; end adds none after it.
func (s *session) bye(text string) {
	s.w.Raw("* BYE " + text + "\r\n")
	s.saidBye = true
}

// end says goodbye before the server closes the connection for err: every
// way out of serve but LOGOUT and a passed-through session goes through
// it, so that no session the server ends closes without an untagged BYE
// (RFC 9051 §7.1.5) while the connection can still carry one. A client
// that left (EOF, reset) or stopped reading (a write failed or timed
// out) gets nothing: nothing more can reach it.
func (s *session) end(err error) {
	if !s.saidBye {
		var ce *connError
		switch {
		case errors.As(err, &ce) && (ce.write || !isTimeout(ce.err)):
			return
		case s.shutdown.Load() || errors.Is(err, errShutdown):
			s.bye("Server shutting down")
		case isTimeout(err) && s.loginTimedOut():
			s.logger.Info("imap: no login in time", "ip", s.ip, "timeout", s.srv.opts.LoginTimeout)
			s.bye("Disconnected for inactivity.")
		case isTimeout(err):
			// Between commands or in IDLE (autologout), or in the
			// middle of a command that stopped coming.
			s.bye("Autologout; idle for too long")
		case errors.Is(err, errClose):
			s.bye("Closing connection")
		default:
			s.bye("[SERVERBUG] Internal error (id " + s.id + ")")
		}
	}
	_ = s.flush()
}

// waitCommand blocks until the first byte of the next command, with the
// read buffer released and the autologout deadline set.
func (s *session) waitCommand() error {
	s.r.Release()
	s.trimBuffers()
	timeout := preAuthTimeout
	if s.state != stateNotAuth {
		timeout = s.srv.autologout()
	}
	if s.shutdown.Load() {
		return errShutdown
	}
	s.readIdle = 0
	if s.notify.Load() != nil {
		return s.waitNotify(timeout)
	}
	_ = s.conn.SetReadDeadline(s.readDeadline(timeout))
	// Shutdown sets the flag, then moves the deadline: looked at once
	// our deadline is set, the flag shows or its deadline comes after
	// ours (looked at before only, a Shutdown in between was lost and
	// the session waited for Close, which ends it without a BYE).
	if s.shutdown.Load() {
		return errShutdown
	}
	_, err := s.r.Peek()
	if err == nil && s.shutdown.Load() {
		return errShutdown
	}
	return err
}

var errShutdown = errors.New("imap: shutdown")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// isConnErr reports whether err comes from the client's connection (see
// connError): the session ends, with no reply to write.
func isConnErr(err error) bool {
	var ce *connError
	return errors.As(err, &ce)
}

// command reads, runs and answers one command. A returned error ends the
// connection.
func (s *session) command() error {
	s.readIdle = s.srv.cmdTimeout()
	s.r.Begin()
	tag, err := s.r.Token(wire.IsTagChar, "tag")
	if err == nil {
		err = s.r.SP()
	}
	var name string
	if err == nil {
		name, err = s.r.Atom()
	}
	if err != nil {
		var le *wire.LimitError
		switch {
		case isConnErr(err):
			return err
		case errors.As(err, &le) && le.Fatal:
			s.bye(le.Msg)
			return errClose
		}
		s.w.Raw("* BAD Error in IMAP command: invalid tag or command\r\n")
		return s.discard(err)
	}
	name = strings.ToUpper(name)
	uid := false
	if name == "UID" {
		uid = true
		if err = s.r.SP(); err == nil {
			name, err = s.r.Atom()
			name = strings.ToUpper(name)
		}
		if err != nil {
			return s.answerErr(tag, err)
		}
	}
	c, ok := lookupCommand(name)
	if !ok || (uid && !c.uid) {
		return s.answerErr(tag, bad("", "Unknown command "+sanitize(name)))
	}
	if c.states&(1<<s.state) == 0 {
		if s.state == stateNotAuth {
			return s.answerErr(tag, bad("", "Log in first"))
		}
		if c.states&(1<<stateSelected) != 0 {
			return s.answerErr(tag, bad("", "No mailbox selected"))
		}
		return s.answerErr(tag, bad("", "Not allowed in this state"))
	}
	if err := s.selectedGone(); err != nil {
		return err
	}
	s.cmdName = name
	err = c.run(s, tag, uid)
	if err != nil {
		return s.answerErr(tag, err)
	}
	return nil
}

// ok writes the tagged OK after the pending mailbox updates (EXPUNGE only
// where allowed: RFC 3501 §7.4.1).
func (s *session) ok(tag, code, text string, allowExpunge bool) error {
	if s.sel != nil {
		// Two stats: changes by other programs (Dovecot, mbsync, a
		// delivery agent) show at every command, not only at NOOP.
		if err := s.sel.mb.Sync(false); err != nil {
			s.logger.Warn("imap: rescan failed", "err", err)
		}
	}
	if err := s.pushUpdates(allowExpunge); err != nil {
		return err
	}
	s.tagged(tag, "OK", code, text)
	return nil
}

func (s *session) tagged(tag, kind, code, text string) {
	s.w.Raw(tag)
	s.w.SP()
	s.w.Raw(kind)
	s.w.SP()
	if code != "" {
		s.w.Byte('[')
		s.w.Raw(code)
		s.w.Raw("] ")
	}
	s.w.Raw(text)
	s.w.CRLF()
}

// answerErr turns a command's failure into its tagged reply. Only
// connection errors and fatal limit errors end the connection.
func (s *session) answerErr(tag string, err error) error {
	var se *wire.SyntaxError
	var le *wire.LimitError
	var re *respErr
	switch {
	case errors.As(err, &re):
		if err := s.discard(nil); err != nil {
			return err
		}
		if re.kind == "NO" {
			// Updates are welcome after a NO; not after a BAD (RFC 9051 §7.1.3).
			if err := s.pushUpdates(re.expunges); err != nil {
				return err
			}
		}
		s.tagged(tag, re.kind, re.code, re.text)
		if errors.Is(err, errClose) {
			return errClose
		}
		return nil
	case errors.As(err, &se):
		s.tagged(tag, "BAD", "", "Error in IMAP command: "+se.Msg)
		return s.discard(err)
	case errors.As(err, &le):
		code := ""
		kind := "BAD"
		if le.TooBig {
			code, kind = "TOOBIG", "NO"
		}
		if le.Fatal {
			s.tagged(tag, kind, code, le.Msg)
			s.bye(le.Msg)
			return errClose
		}
		s.tagged(tag, kind, code, le.Msg)
		return s.discard(err)
	case errors.Is(err, errClose):
		return errClose
	case isConnErr(err):
		return err
	}
	s.logger.Error("imap: internal error", "err", err)
	s.tagged(tag, "NO", "SERVERBUG", "Internal error (id "+s.id+")")
	return s.discard(err)
}

// discard skips what is left of a failed command's line.
func (s *session) discard(cause error) error {
	if err := s.r.Discard(); err != nil {
		var le *wire.LimitError
		if errors.As(err, &le) {
			s.bye(le.Msg)
			return errClose
		}
		return err
	}
	return nil
}

// sanitize keeps a client string printable for a response.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

func (s *session) close() {
	s.srv.setIdleOn(s, nil)
	s.endNotify()
	s.unselect()
	if s.store != nil {
		s.store.Close()
		s.store = nil
	}
	s.conn.Close()
	s.r.Release()
	s.readBuf, s.crlfBuf, s.text = nil, nil, textScratch{}
	s.releaseMem()
	s.srv.dropSession(s)
}

// specialUse are the folders created at first login (RFC 6154), as the
// seed's Dovecot auto-creates them.
var specialUse = []struct{ name, attr string }{
	{"Drafts", `\Drafts`},
	{"Sent", `\Sent`},
	{"Junk", `\Junk`},
	{"Trash", `\Trash`},
}

func specialUseAttr(name string) string {
	for _, s := range specialUse {
		if s.name == name {
			return s.attr
		}
	}
	switch name {
	case "Sent Messages":
		return `\Sent`
	case "Archive":
		return `\Archive`
	}
	return ""
}

// checkMaildir validates a directory-provided path: absolute, clean, not
// the root, and under AllowedBase when set.
func (s *session) checkMaildir(u directory.User) (string, error) {
	// One rule for delivery and IMAP: the directory computes Maildir from
	// the mailbox query, as delivery does; no guess from the home here.
	m := u.Maildir
	if m == "" {
		return "", errors.New("the directory gave no maildir")
	}
	if !filepath.IsAbs(m) || strings.ContainsRune(m, 0) {
		return "", errors.New("maildir is not an absolute path")
	}
	clean := filepath.Clean(m)
	if clean != strings.TrimSuffix(m, "/") || clean == "/" {
		return "", errors.New("maildir is not a clean path")
	}
	if base := s.srv.opts.AllowedBase; base != "" {
		b := filepath.Clean(base)
		if !strings.HasPrefix(clean, b+"/") {
			return "", errors.New("maildir is outside the allowed base")
		}
	}
	return clean, nil
}

// ensureSpecialFolders gives a new mailbox, one without any folder yet,
// the special-use folders clients look for. A mailbox that has folders
// keeps its own layout: one moved from Dovecot with "Envoyés" and
// "Corbeille" does not get four empty English twins, and a folder the
// user deleted does not come back at every login.
func (s *session) ensureSpecialFolders() {
	if names, err := s.store.Folders(); err != nil || len(names) > 0 {
		return
	}
	for _, f := range specialUse {
		if s.store.Exists(f.name) {
			continue
		}
		if err := s.store.Create(f.name); err != nil && !errors.Is(err, mailstore.ErrFolderExists) {
			s.logger.Warn("imap: create special folder", "folder", f.name, "err", err)
			continue
		}
		if err := s.store.SetSubscribed(f.name, true); err != nil {
			s.logger.Warn("imap: subscribe special folder", "folder", f.name, "err", err)
		}
	}
}

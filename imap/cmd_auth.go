package imap

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/imap/mailstore"
	"courriel/imap/wire"
	"courriel/internal/connset"
)

// capabilities lists what the session may use now: login mechanisms
// before login (none on a plain connection before STARTTLS), the rest
// always, so a client can plan from the greeting.
func (s *session) capabilities() string {
	var b strings.Builder
	b.WriteString("IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE")
	if s.state == stateNotAuth {
		if s.tls {
			b.WriteString(" AUTH=PLAIN")
		} else {
			if s.srv.opts.TLSConfig != nil {
				b.WriteString(" STARTTLS")
			}
			b.WriteString(" LOGINDISABLED")
		}
	}
	b.WriteString(" NAMESPACE UIDPLUS MOVE UNSELECT SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES WITHIN STATUS=SIZE BINARY CHILDREN UTF8=ACCEPT QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE MULTIAPPEND CATENATE CONDSTORE QRESYNC SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT NOTIFY THREAD=ORDEREDSUBJECT THREAD=REFERENCES COMPRESS=DEFLATE APPENDLIMIT=")
	b.WriteString(strconv.FormatUint(uint64(s.srv.opts.AppendLimit), 10))
	return b.String()
}

func cmdCapability(s *session, tag string, _ bool) error {
	if err := s.r.CRLF(); err != nil {
		return err
	}
	s.w.Raw("* CAPABILITY " + s.capabilities() + "\r\n")
	return s.ok(tag, "", "CAPABILITY completed", true)
}

func cmdNoop(s *session, tag string, _ bool) error {
	if err := s.r.CRLF(); err != nil {
		return err
	}
	return s.ok(tag, "", "NOOP completed", true) // ok looks for changes
}

func cmdLogout(s *session, tag string, _ bool) error {
	if err := s.r.CRLF(); err != nil {
		return err
	}
	// The user's slot is free before the client can read the OK: a client
	// that logs out and at once logs in again (imaptest does, with as many
	// connections as the limit allows) must not find it still taken while
	// this session closes its folder.
	s.srv.loggedOut(s)
	s.bye("Logging out")
	s.tagged(tag, "OK", "", "Logout completed")
	s.state = stateLogout
	return nil
}

// ID (RFC 2971): up to 30 pairs, fields up to 30 octets, values up to
// 1,024; anything beyond is a BAD, never a dropped connection.
func cmdID(s *session, tag string, _ bool) error {
	fields, err := s.parseID()
	if err != nil {
		var se *wire.SyntaxError
		if errors.As(err, &se) {
			return bad("", "Invalid ID arguments")
		}
		return err
	}
	if len(fields) > 0 {
		var b strings.Builder
		for i := 0; i+1 < len(fields) && i < 8; i += 2 {
			b.WriteString(sanitize(fields[i]) + "=" + sanitize(fields[i+1]) + " ")
		}
		s.logger.Debug("imap: client ID", "id", b.String())
		if s.srv.hops != nil && s.state == stateNotAuth {
			s.takeOrigin(fields)
		}
	}
	s.w.Raw(`* ID ("name" "courriel")` + "\r\n")
	return s.ok(tag, "", "ID completed", true)
}

func (s *session) parseID() ([]string, error) {
	if err := s.r.SP(); err != nil {
		return nil, err
	}
	var fields []string
	c, err := s.r.Peek()
	if err != nil {
		return nil, err
	}
	if c == '(' {
		err = s.r.List(false, func() error {
			if len(fields) >= 60 {
				return bad("", "Too many ID fields")
			}
			k, err := s.r.String()
			if err != nil {
				return err
			}
			if len(k) > 1024 {
				return bad("", "ID field name too long")
			}
			if err := s.r.SP(); err != nil {
				return err
			}
			v, _, err := s.r.NString()
			if err != nil {
				return err
			}
			if len(v) > 1024 {
				return bad("", "ID value too long")
			}
			fields = append(fields, k, v)
			return nil
		})
	} else {
		_, ok, e := s.r.NString()
		if e == nil && ok {
			e = bad("", "ID takes a list or NIL")
		}
		err = e
	}
	if err == nil {
		err = s.r.CRLF()
	}
	return fields, err
}

func cmdStartTLS(s *session, tag string, _ bool) error {
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if s.tls || s.srv.opts.TLSConfig == nil {
		return bad("", "TLS is not available here")
	}
	if s.r.Buffered() > 0 {
		// Commands pipelined after STARTTLS would cross into TLS unprotected.
		s.tagged(tag, "BAD", "", "Data after STARTTLS")
		return errClose
	}
	s.tagged(tag, "OK", "", "Begin TLS negotiation now")
	if err := s.flush(); err != nil {
		return err
	}
	tc := tls.Server(s.conn, s.srv.opts.TLSConfig)
	_ = tc.SetDeadline(s.readDeadline(preAuthTimeout))
	if err := tc.Handshake(); err != nil {
		s.logger.Debug("imap: STARTTLS handshake failed", "err", err)
		s.saidBye = true // nothing in clear reaches a client speaking TLS
		return errClose
	}
	_ = tc.SetDeadline(time.Time{})
	// The reader and writer follow s.conn (sessionReader, sessionWriter).
	s.conn, s.tls = tc, true
	return nil
}

func cmdLogin(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	user, err := s.r.AString()
	if err != nil {
		return err
	}
	if err := s.r.SP(); err != nil {
		return err
	}
	pass, err := s.r.AString()
	if err != nil {
		return err
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if !s.tls {
		return no("PRIVACYREQUIRED", "Login only over TLS: use STARTTLS first")
	}
	return s.login(tag, user, pass)
}

// AUTHENTICATE PLAIN (RFC 4616), with SASL-IR (RFC 4959).
func cmdAuthenticate(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	mech, err := s.r.Atom()
	if err != nil {
		return err
	}
	ir, haveIR := "", false
	if sp, err := s.r.Is(' '); err != nil {
		return err
	} else if sp {
		if ir, err = s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) || c == '=' }, "initial response"); err != nil {
			return err
		}
		haveIR = true
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if !strings.EqualFold(mech, "PLAIN") {
		return no("", "Unsupported authentication mechanism")
	}
	// A front node's login may come in plain text when the cluster's
	// hops are configured without TLS (a private network); it always
	// sends its response at once.
	if !s.tls && !(haveIR && s.srv.plainHops()) {
		return no("PRIVACYREQUIRED", "Login only over TLS: use STARTTLS first")
	}
	if !haveIR {
		s.w.Raw("+ \r\n")
		if err := s.flush(); err != nil {
			return err
		}
		line, err := s.readLine(8192)
		if err != nil {
			return err
		}
		ir = line
	}
	if ir == "*" {
		return bad("", "Authentication aborted")
	}
	if ir == "=" {
		ir = ""
	}
	raw, err := base64.StdEncoding.DecodeString(ir)
	if err != nil {
		return bad("", "Invalid base64 in authentication response")
	}
	authz, user, pass, err := cluster.ParsePlain(raw)
	if err != nil {
		return s.loginFailed(tag, "", "malformed PLAIN response")
	}
	if user == cluster.ClusterLogin && s.srv.hops != nil {
		return s.hopLoginAs(tag, authz, pass)
	}
	if !s.tls {
		return no("PRIVACYREQUIRED", "Login only over TLS: use STARTTLS first")
	}
	if authz != "" && authz != user {
		return s.loginFailed(tag, user, "authorization identity differs")
	}
	return s.login(tag, user, pass)
}

// readLine reads one line of a SASL exchange, at most max bytes.
func (s *session) readLine(max int) (string, error) {
	s.r.Begin()
	tok, err := s.r.Token(func(c byte) bool { return c != '\r' && c != '\n' }, "response")
	if err != nil {
		var se *wire.SyntaxError
		if !errors.As(err, &se) {
			return "", err
		}
		tok = ""
	}
	if len(tok) > max {
		return "", bad("", "Response too long")
	}
	return tok, s.r.CRLF()
}

func (s *session) loginFailed(tag, login, reason string) error {
	d := s.srv.guard.Failed(login, connset.ParseIP(s.ip))
	s.fails++
	s.logger.Info("imap: login failed", "ip", s.ip, "reason", reason, "delay", d)
	if m := s.srv.opts.Metrics; m != nil {
		m.AuthFailure("imap")
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-s.srv.conns.Done():
		}
		t.Stop()
	}
	if s.fails >= maxFailedLogins {
		s.tagged(tag, "NO", "AUTHENTICATIONFAILED", "Authentication failed")
		s.bye("Too many failed logins")
		return errClose
	}
	return no("AUTHENTICATIONFAILED", "Authentication failed")
}

var errAuthUnavailable = no("UNAVAILABLE", "Authentication temporarily unavailable, try again later")

// login checks the credentials with the directory and opens the maildir.
func (s *session) login(tag, username, password string) error {
	// A NUL could truncate a name in C code further down (RFC 4616 forbids
	// it in PLAIN); never pass it on.
	if username == "" || password == "" || strings.ContainsRune(username, 0) || strings.ContainsRune(password, 0) ||
		len(username) > 256 || len(password) > 1024 {
		return s.loginFailed(tag, username, "malformed credentials")
	}
	if err := s.throttled(tag); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.AuthTimeout)
	defer cancel()
	u, err := s.srv.opts.Auth.Authenticate(ctx, username, password)
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrInvalidCredentials), errors.Is(err, directory.ErrNotFound):
		return s.loginFailed(tag, username, "invalid credentials")
	default:
		s.logger.Warn("imap: directory unavailable during login", "err", err)
		return errAuthUnavailable
	}
	s.srv.guard.Succeeded(username, connset.ParseIP(s.ip))
	return s.enter(tag, u)
}

// throttled refuses a login from a network that guessed too often: it is
// not heard at all; its login names are not, since anyone could lock
// their owners out.
func (s *session) throttled(tag string) error {
	if !s.srv.guard.Blocked(connset.ParseIP(s.ip)) {
		return nil
	}
	s.fails++
	s.logger.Warn("imap: login refused: address throttled", "ip", s.ip)
	if s.fails >= maxFailedLogins {
		s.tagged(tag, "NO", "UNAVAILABLE", "Too many failed logins from your address, try again later")
		s.bye("Too many failed logins")
		return errClose
	}
	return no("UNAVAILABLE", "Too many failed logins from your address, try again later")
}

// enter logs in u, whose identity is established: at home here it opens
// the maildir; homed on another node the session is passed through to
// that node (proxy.go), and nothing is opened or created here.
func (s *session) enter(tag string, u directory.User) error {
	if err, done := s.enterHome(tag, u); done {
		return err
	}
	maildir, err := s.checkMaildir(u)
	if err != nil {
		s.logger.Error("imap: refusing maildir from directory", "login", u.Login, "err", err)
		return errAuthUnavailable
	}
	if !s.srv.loggedIn(s, u.Login) {
		s.logger.Warn("imap: too many connections for user and address", "login", u.Login, "ip", s.ip)
		return no("LIMIT", "Too many connections for this user from your address")
	}
	owner := mailstore.Owner{UID: u.UID, GID: u.GID, Chown: s.srv.opts.Chown}
	var st *mailstore.Store
	if base := s.srv.opts.AllowedBase; base != "" {
		// No symbolic link below the configured base: a user must not
		// point ~/mailbox at another user's maildir.
		st, err = mailstore.OpenStoreUnder(filepath.Clean(base), strings.TrimPrefix(maildir, filepath.Clean(base)+"/"), owner)
	} else {
		st, err = mailstore.OpenStore(maildir, owner)
	}
	if err != nil {
		s.srv.loggedOut(s)
		s.logger.Error("imap: open maildir", "login", u.Login, "err", err)
		return errAuthUnavailable
	}
	st.SetUser(u.Login)
	s.user, s.store = u, st
	s.state = stateAuth
	s.logger = s.logger.With("user", u.Login)
	s.logger.Info("imap: login", "ip", s.ip)
	s.ensureSpecialFolders()
	s.tagged(tag, "OK", "CAPABILITY "+s.capabilities(), "Logged in")
	return nil
}

// ENABLE (RFC 5161): UTF8=ACCEPT and IMAP4rev2 here; CONDSTORE and QRESYNC
// join the set when they come.
func cmdEnable(s *session, tag string, _ bool) error {
	var names []string
	for {
		if eol, err := s.r.AtEOL(); err != nil {
			return err
		} else if eol {
			break
		}
		if err := s.r.SP(); err != nil {
			return err
		}
		a, err := s.r.Atom()
		if err != nil {
			return err
		}
		names = append(names, a)
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if len(names) == 0 {
		return bad("", "ENABLE needs a capability")
	}
	var on []string
	for _, n := range names {
		var e ext
		switch strings.ToUpper(n) {
		case "UTF8=ACCEPT":
			e = extUTF8
		case "IMAP4REV2":
			e = extRev2
		case "CONDSTORE":
			if !s.condstore() {
				s.enableCondstore()
				on = append(on, "CONDSTORE")
			}
			continue
		case "QRESYNC":
			e = extQresync
			s.enableCondstore() // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3)
		default:
			continue
		}
		if s.enabled&e == 0 {
			s.enabled |= e
			on = append(on, strings.ToUpper(n))
		}
	}
	s.w.Raw("* ENABLED")
	for _, n := range on {
		s.w.SP()
		s.w.Raw(n)
	}
	s.w.CRLF()
	return s.ok(tag, "", "Enabled", true)
}

func cmdNamespace(s *session, tag string, _ bool) error {
	if err := s.r.CRLF(); err != nil {
		return err
	}
	s.w.Raw(`* NAMESPACE (("" ".")) NIL NIL` + "\r\n")
	return s.ok(tag, "", "Namespace completed", true)
}

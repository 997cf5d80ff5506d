package imap

// IMAP on any node of a cluster. A user homed on another node logs in
// here (this node's directory replica, throttles and limits), then the
// session is passed through to the home node: this node opens its IMAP
// listener (STARTTLS when the hops use TLS), says who the client is with
// ID (x-originating-ip, x-originating-port, x-proxy-ttl, x-session-id, as
// Dovecot's proxy), logs in with SASL PLAIN as the user, authenticated by
// cluster.ClusterLogin and the shared secret, answers the client's login
// with the home node's capabilities and from then on copies bytes both
// ways (COMPRESS and IDLE pass through untouched). The home node trusts
// the ID values only once that login succeeded.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/internal/connset"
)

// The buffers of a proxied session's copies: each direction waits with a
// small one and borrows a large one only while bytes stream, so an idle
// proxied session holds no large buffer.
const (
	hopSmallBuf = 512
	hopBufSize  = 32 << 10
)

// maxHopLine bounds one line the home node sends during the hop's login.
const maxHopLine = 8 << 10

// hop is the connection to the home node of a session passed through.
type hop struct {
	conn net.Conn      // TLS after STARTTLS
	br   *bufio.Reader // the login's reader: what it holds beyond the login comes first
}

// plainHops says whether the cluster's hops are plain TCP, so that a
// front node's login is accepted before STARTTLS.
func (s *Server) plainHops() bool {
	return s.hops != nil && s.hops.Cluster().TLS("") == nil
}

// takeOrigin keeps the client's address, port, hop counter and session
// id from an ID command; they count only after a cluster login.
func (s *session) takeOrigin(fields []string) {
	for i := 0; i+1 < len(fields); i += 2 {
		if err := s.origin.Set(fields[i], fields[i+1]); err != nil {
			s.logger.Debug("imap: ID value ignored", "err", err)
		}
	}
}

var errHomeUnavailable = no("UNAVAILABLE", "Your mailbox is temporarily unavailable, try again later")

// hopLoginAs is a front node's login (AUTHENTICATE PLAIN with authcid
// cluster.ClusterLogin): with the shared secret it logs in as authz
// without the user's password, and the ID the front sent is trusted from
// then on. A wrong secret counts as a failed login.
func (s *session) hopLoginAs(tag, authz, secret string) error {
	if err := s.throttled(tag); err != nil {
		return err
	}
	if why := s.srv.hops.CheckLogin(secret, s.tls, cluster.PeerAddr(s.raw)); why != "" {
		s.logger.Warn("imap: cluster login refused", "why", why, "peer", s.raw.RemoteAddr().String())
		return s.loginFailed(tag, cluster.ClusterLogin, why)
	}
	if authz == "" || len(authz) > 256 || strings.ContainsRune(authz, 0) {
		return s.loginFailed(tag, cluster.ClusterLogin, "cluster login without a user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.opts.AuthTimeout)
	defer cancel()
	u, err := s.srv.users.LookupUser(ctx, authz)
	if err != nil {
		// The front found the user in its replica; this one may lag.
		s.logger.Warn("imap: cluster login for a user not found here", "login", sanitize(authz), "err", err)
		return errHomeUnavailable
	}
	s.srv.guard.Succeeded(cluster.ClusterLogin, connset.ParseIP(s.ip))
	s.hopLogin = true
	via := s.ip
	if s.origin.IP.IsValid() {
		s.ip, s.port = s.origin.IP.String(), s.origin.Port
	}
	s.logger = s.logger.With("via", via, "front_session", s.origin.Session)
	return s.enter(tag, u)
}

// enterHome handles a user not at home here: passed through to the home
// node, or refused for now. done is false for a user at home and not held.
func (s *session) enterHome(tag string, u directory.User) (err error, done bool) {
	n, ttl, remote, err := s.srv.hops.Route(u.Node, u.Home, s.srv.opts.Holds, &s.origin, s.hopLogin)
	switch {
	case errors.Is(err, cluster.ErrHeld):
		s.logger.Info("imap: login refused while the user is moved", "login", u.Login, "ip", s.ip)
	case errors.Is(err, cluster.ErrHopsExhausted):
		s.logger.Warn("imap: not passing a session on: hop counter exhausted", "login", u.Login, "home", n.Name)
	case err != nil:
		s.logger.Error("imap: login of a user whose home node is not configured", "login", u.Login, "err", err)
	case !remote:
		return nil, false
	default:
		return s.proxyTo(tag, u, n, ttl), true
	}
	return errHomeUnavailable, true
}

// proxyTo logs u in at its home node n and answers the client's login
// with what the home node says; the session loop then splices.
func (s *session) proxyTo(tag string, u directory.User, n cluster.Node, ttl int) error {
	if !s.srv.loggedIn(s, u.Login) {
		s.logger.Warn("imap: too many connections for user and address", "login", u.Login, "ip", s.ip)
		return no("LIMIT", "Too many connections for this user from your address")
	}
	h, caps, err := s.dialHome(n, u.Login, ttl)
	if err != nil {
		s.srv.loggedOut(s)
		s.logger.Warn("imap: home node unavailable", "login", u.Login, "home", n.Name, "err", err)
		return errHomeUnavailable
	}
	s.user, s.hop = u, h
	s.state = stateAuth
	s.logger = s.logger.With("user", u.Login, "home", n.Name)
	s.logger.Info("imap: login, passed through", "ip", s.ip)
	s.tagged(tag, "OK", "CAPABILITY "+caps, "Logged in")
	return nil
}

// dialHome opens the session of login at node n: dial, STARTTLS when the
// hops use TLS, ID and the cluster login pipelined. It returns the
// capabilities the home node reports after the login. The whole exchange
// is bounded by the connect timeout; a node that does not answer in time
// is remembered as down.
func (s *session) dialHome(n cluster.Node, login string, ttl int) (*hop, string, error) {
	c := s.srv.hops.Cluster()
	conn, br, err := s.srv.hops.DialHome(n, n.IMAP, func(br *bufio.Reader) error {
		greeting, err := hopLine(br)
		if err != nil {
			return fmt.Errorf("greeting: %w", err)
		}
		if !strings.HasPrefix(greeting, "* OK") {
			return fmt.Errorf("greeting %q", sanitize(greeting))
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// It answered: the login is bounded as the client's login is.
	_ = conn.SetDeadline(time.Now().Add(s.srv.opts.AuthTimeout))
	if host, _, _ := net.SplitHostPort(n.IMAP); c.TLS(host) != nil {
		if _, err := io.WriteString(conn, "H0 STARTTLS\r\n"); err != nil {
			return nil, "", err
		}
		if _, _, err := hopReply(br, "H0"); err != nil {
			return nil, "", fmt.Errorf("STARTTLS: %w", err)
		}
		tc := tls.Client(conn, c.TLS(host))
		if err := tc.Handshake(); err != nil {
			return nil, "", fmt.Errorf("TLS: %w", err)
		}
		conn = tc
		br.Reset(tc)
	}
	var b strings.Builder
	b.WriteString(`H1 ID (`)
	b.WriteString(strconv.Quote(cluster.IDOriginatingIP) + " " + strconv.Quote(s.ip))
	b.WriteString(" " + strconv.Quote(cluster.IDOriginatingPort) + ` "` + strconv.Itoa(int(s.port)) + `"`)
	b.WriteString(" " + strconv.Quote(cluster.IDProxyTTL) + ` "` + strconv.Itoa(ttl) + `"`)
	session := s.id
	if s.hopLogin && s.origin.Session != "" {
		session = s.origin.Session // one id along the whole chain
	}
	b.WriteString(" " + strconv.Quote(cluster.IDSessionID) + " " + strconv.Quote(session) + ")\r\n")
	b.WriteString("H2 AUTHENTICATE PLAIN " + cluster.PlainLogin(login, c.Secret()) + "\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, "", err
	}
	if _, _, err := hopReply(br, "H1"); err != nil {
		return nil, "", fmt.Errorf("ID: %w", err)
	}
	caps, untagged, err := hopReply(br, "H2")
	if err != nil {
		return nil, "", fmt.Errorf("login: %w", err)
	}
	if caps == "" {
		caps = untagged
	}
	_ = conn.SetDeadline(time.Time{})
	ok = true
	return &hop{conn: conn, br: br}, caps, nil
}

// hopLine reads one line of the home node's, without its CRLF.
func hopLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxHopLine {
		return "", errors.New("line too long")
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// hopReply reads up to the tagged reply to tag; an OK gives the
// CAPABILITY response code's list, and that of an untagged CAPABILITY.
func hopReply(br *bufio.Reader, tag string) (codeCaps, untaggedCaps string, err error) {
	for i := 0; i < 100; i++ {
		line, err := hopLine(br)
		if err != nil {
			return "", "", err
		}
		if rest, ok := strings.CutPrefix(line, "* CAPABILITY "); ok {
			untaggedCaps = rest
			continue
		}
		rest, ok := strings.CutPrefix(line, tag+" ")
		if !ok {
			continue
		}
		if st, ok := strings.CutPrefix(rest, "OK "); ok {
			if c, ok := strings.CutPrefix(st, "[CAPABILITY "); ok {
				if end := strings.IndexByte(c, ']'); end >= 0 {
					codeCaps = c[:end]
				}
			}
			return codeCaps, untaggedCaps, nil
		}
		return "", "", fmt.Errorf("refused: %s", sanitize(rest))
	}
	return "", "", errors.New("no reply")
}

// splice copies bytes both ways between the client and the home node
// until either side closes; the session then ends. What the client
// pipelined after its login goes first.
func (s *session) splice() {
	h := s.hop
	pending := s.r.TakeBuffered()
	s.r.Release()
	s.trimBuffers()
	_ = s.raw.SetDeadline(time.Time{})
	_ = s.conn.SetDeadline(time.Time{})
	var fromHome []byte
	if n := h.br.Buffered(); n > 0 {
		fromHome, _ = h.br.Peek(n)
	}
	h.br = nil
	sp := &cluster.Splice{
		Client:       s.conn,
		CloseClient:  func() { s.raw.Close() },
		Home:         h.conn,
		ToHome:       pending,
		ToClient:     fromHome,
		WriteTimeout: writeTimeout,
	}
	sp.Copy = func(dst, src net.Conn) { s.hopCopy(sp, dst, src) }
	sp.Run()
}

// hopCopy copies src to dst until either fails.
func (s *session) hopCopy(sp *cluster.Splice, dst, src net.Conn) {
	var small [hopSmallBuf]byte
	buf := small[:]
	var big *[]byte
	defer func() {
		if big != nil {
			s.srv.hopBufs.Put(big)
		}
	}()
	for {
		n, err := src.Read(buf)
		if n > 0 && sp.Write(dst, buf[:n]) != nil {
			return
		}
		if err != nil {
			return
		}
		switch {
		case big == nil && n == len(buf):
			// Bytes stream: a large buffer while they do.
			if p, _ := s.srv.hopBufs.Get().(*[]byte); p != nil {
				big = p
			} else {
				b := make([]byte, hopBufSize)
				big = &b
			}
			buf = *big
		case big != nil && n < hopSmallBuf:
			s.srv.hopBufs.Put(big)
			big, buf = nil, small[:]
		}
	}
}

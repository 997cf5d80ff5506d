package managesieve

// ManageSieve on any node of a cluster, as imap/proxy.go for IMAP: a user
// homed on another node logs in here, then this node opens the home
// node's ManageSieve listener (STARTTLS when the hops use TLS), says who
// the client is with XCLIENT ADDR= PORT= SESSION= TTL= (Dovecot's
// managesieve proxy), logs in with AUTHENTICATE "PLAIN" as the user,
// authenticated by cluster.ClusterLogin and the shared secret, and from
// then on copies bytes both ways. The home node trusts the XCLIENT
// values only once that login succeeded.

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

// maxHopLine bounds one line the home node sends during the hop's login.
const maxHopLine = 8 << 10

type hop struct {
	conn net.Conn
	br   *bufio.Reader
}

func (s *Server) plainHops() bool {
	return s.hops != nil && s.hops.Cluster().TLS("") == nil
}

// XCLIENT ADDR=ip PORT=port SESSION=id TTL=n: a front node's word about
// its client, kept until its cluster login makes it trusted; refused
// from anyone when this node is not in a cluster.
func cmdXClient(se *session, args []token) error {
	if se.srv.hops == nil {
		return no("", "Error in MANAGESIEVE command XCLIENT: Unknown command.")
	}
	if len(args) == 1 {
		for _, kv := range strings.Fields(args[0].s) {
			k, v, _ := strings.Cut(kv, "=")
			if err := se.origin.Set(k, v); err != nil {
				se.log.Debug("managesieve: XCLIENT value ignored", "err", err)
			}
		}
	}
	se.writeResp("OK", "", "Updated")
	return nil
}

var errHomeUnavailable = no("TRYLATER", "Your account is temporarily unavailable, try again later.")

// hopLoginAs is a front node's login: with the shared secret it logs in
// as authz without the user's password, and XCLIENT is trusted from then
// on. A wrong secret counts as a failed login.
func (se *session) hopLoginAs(authz, secret string) error {
	if err := se.throttled(); err != nil {
		return err
	}
	if why := se.srv.hops.CheckLogin(secret, se.tls, cluster.PeerAddr(se.raw)); why != "" {
		se.log.Warn("managesieve: cluster login refused", "why", why, "peer", se.raw.RemoteAddr().String())
		return se.loginFailed(cluster.ClusterLogin, why)
	}
	if authz == "" || len(authz) > 256 || strings.ContainsRune(authz, 0) {
		return se.loginFailed(cluster.ClusterLogin, "cluster login without a user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), se.srv.opts.AuthTimeout)
	defer cancel()
	u, err := se.srv.users.LookupUser(ctx, authz)
	if err != nil {
		se.log.Warn("managesieve: cluster login for a user not found here", "login", sanitize(authz), "err", err)
		return errHomeUnavailable
	}
	se.srv.guard.Succeeded(cluster.ClusterLogin, connset.ParseIP(se.ip))
	se.hopLogin = true
	via := se.ip
	if se.origin.IP.IsValid() {
		se.ip, se.port = se.origin.IP.String(), se.origin.Port
	}
	se.log = se.log.With("via", via, "front_session", se.origin.Session)
	return se.enter(u)
}

// enterHome handles a user not at home here: passed through to the home
// node, or refused for now. done is false for a user at home and not held.
func (se *session) enterHome(u directory.User) (err error, done bool) {
	n, ttl, remote, err := se.srv.hops.Route(u.Node, u.Home, se.srv.opts.Holds, &se.origin, se.hopLogin)
	switch {
	case errors.Is(err, cluster.ErrHeld):
		se.log.Info("managesieve: login refused while the user is moved", "login", u.Login, "ip", se.ip)
		return errHomeUnavailable, true
	case errors.Is(err, cluster.ErrHopsExhausted):
		se.log.Warn("managesieve: not passing a session on: hop counter exhausted", "login", u.Login, "home", n.Name)
		return errHomeUnavailable, true
	case err != nil:
		se.log.Error("managesieve: login of a user whose home node is not configured", "login", u.Login, "err", err)
		return errHomeUnavailable, true
	case !remote:
		return nil, false
	}
	if !se.srv.loggedIn(se, u.Login) {
		se.log.Warn("managesieve: too many connections for user and address", "login", u.Login, "ip", se.ip)
		return no("TRYLATER", "Too many connections for this user from your address."), true
	}
	h, err := se.dialHome(n, u.Login, ttl)
	if err != nil {
		se.srv.loggedOut(se)
		se.log.Warn("managesieve: home node unavailable", "login", u.Login, "home", n.Name, "err", err)
		return errHomeUnavailable, true
	}
	se.user, se.hop, se.state = u, h, stateAuth
	se.log = se.log.With("user", u.Login, "home", n.Name)
	se.log.Info("managesieve: login, passed through", "ip", se.ip)
	se.writeResp("OK", "", "Logged in.")
	return nil, true
}

// dialHome opens the session of login at node n, bounded by the connect
// timeout; a node that does not answer in time is remembered as down.
func (se *session) dialHome(n cluster.Node, login string, ttl int) (*hop, error) {
	c := se.srv.hops.Cluster()
	conn, br, err := se.srv.hops.DialHome(n, n.ManageSieve, func(br *bufio.Reader) error {
		if err := hopResponse(br); err != nil {
			return fmt.Errorf("greeting: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// It answered: the login is bounded as the client's login is.
	_ = conn.SetDeadline(time.Now().Add(se.srv.opts.AuthTimeout))
	if host, _, _ := net.SplitHostPort(n.ManageSieve); c.TLS(host) != nil {
		if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
			return nil, err
		}
		if err := hopResponse(br); err != nil {
			return nil, fmt.Errorf("STARTTLS: %w", err)
		}
		tc := tls.Client(conn, c.TLS(host))
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		conn = tc
		br.Reset(tc)
		if err := hopResponse(br); err != nil { // the capabilities again
			return nil, fmt.Errorf("after STARTTLS: %w", err)
		}
	}
	sid := se.id
	if se.hopLogin && se.origin.Session != "" {
		sid = se.origin.Session
	}
	cmd := "XCLIENT ADDR=" + se.ip + " PORT=" + strconv.Itoa(int(se.port)) + " SESSION=" + sid + " TTL=" + strconv.Itoa(ttl) + "\r\n" +
		`AUTHENTICATE "PLAIN" "` + cluster.PlainLogin(login, c.Secret()) + `"` + "\r\n"
	if _, err := io.WriteString(conn, cmd); err != nil {
		return nil, err
	}
	if err := hopResponse(br); err != nil {
		return nil, fmt.Errorf("XCLIENT: %w", err)
	}
	if err := hopResponse(br); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	ok = true
	return &hop{conn: conn, br: br}, nil
}

// hopResponse reads lines up to an OK (nil), a NO or a BYE (an error).
// Capability lines and others are skipped; the home node's literals do
// not occur before login.
func hopResponse(br *bufio.Reader) error {
	for i := 0; i < 100; i++ {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(b) > maxHopLine {
			return errors.New("line too long")
		}
		if err != nil {
			return err
		}
		line := strings.TrimRight(string(b), "\r\n")
		switch {
		case line == "OK" || strings.HasPrefix(line, "OK ") || strings.HasPrefix(line, "OK("):
			return nil
		case strings.HasPrefix(line, "NO") || strings.HasPrefix(line, "BYE"):
			return fmt.Errorf("refused: %s", sanitize(line))
		}
	}
	return errors.New("no reply")
}

// splice copies bytes both ways between the client and the home node
// until either side closes.
func (se *session) splice() {
	h := se.hop
	var pending, fromHome []byte
	if n := se.br.Buffered(); n > 0 {
		pending, _ = se.br.Peek(n)
		pending = append([]byte(nil), pending...)
	}
	if n := h.br.Buffered(); n > 0 {
		fromHome, _ = h.br.Peek(n)
	}
	_ = se.raw.SetDeadline(time.Time{})
	_ = se.conn.SetDeadline(time.Time{})
	sp := &cluster.Splice{
		Client:       se.conn,
		CloseClient:  func() { se.raw.Close() },
		Home:         h.conn,
		ToHome:       pending,
		ToClient:     fromHome,
		WriteTimeout: writeTimeout,
		// Copy nil: ManageSieve sessions are short and carry small
		// scripts, cluster.DefaultSpliceBuf each way is plenty.
	}
	sp.Run()
}

package managesieve

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/internal/acceptloop"
	"courriel/internal/connset"
	"courriel/loginguard"
	"courriel/sieve"
	"courriel/sieve/scripts"
)

// Authenticator checks a login; *directory.Directory implements it.
// Errors: directory.ErrInvalidCredentials, directory.ErrUnavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, login, password string) (directory.User, error)
}

// Metrics is what the server reports, with the listener "managesieve";
// *monitor.Metrics satisfies it.
type Metrics interface {
	ConnOpened(listener string)
	ConnClosed(listener string)
	AuthFailure(listener string)
}

const metricsListener = "managesieve"

// Defaults for the zero values of Options.
const (
	DefaultMaxConnsPerIP  = 50
	DefaultMaxUserIPConns = 10 // Dovecot's mail_max_userip_connections
	DefaultMaxConns       = 2000
	DefaultMaxLineLength  = 64 << 10 // Dovecot's managesieve_max_line_length
	DefaultMaxCommands    = 10000    // per connection
	DefaultMaxRedirects   = 4        // the interpreter's default, advertised as MAXREDIRECTS
	DefaultAuthTimeout    = 15 * time.Second
	DefaultIdleTimeout    = 30 * time.Minute // after login (Dovecot: 30 min)
	DefaultPreAuthTimeout = 60 * time.Second
)

// Connection rules that need no setting.
const (
	maxFailedLogins   = 3  // a connection is closed after this many
	maxErrors         = 20 // protocol errors of one connection
	maxPreAuthCmds    = 50 // commands before a login
	maxSmallLiteral   = 8 << 10
	literalTimeout    = 5 * time.Minute
	writeTimeout      = 5 * time.Minute
	shutdownByeWindow = 2 * time.Second
)

// Options configures a Server. Auth is required.
type Options struct {
	Auth      Authenticator
	TLSConfig *tls.Config // for STARTTLS; nil: no STARTTLS, so nobody can log in
	Logger    *slog.Logger
	Metrics   Metrics
	// Guard throttles failed logins; share the process's one with IMAP
	// and SMTP AUTH. Nil: one of the server's own.
	Guard *loginguard.Guard
	// Extensions are those the users' scripts may require (Pigeonhole's
	// sieve_extensions; the zero value is its default set): the SIEVE
	// capability lists them and PUTSCRIPT, CHECKSCRIPT and SETACTIVE
	// refuse a script requiring another. The deliverer must be given the
	// same set, or a script stored here would not run there.
	Extensions sieve.Extensions
	// GlobalExtensions are those only the administrator's scripts may
	// require (Pigeonhole's sieve_global_extensions; zero: none), as the
	// deliverer is given them: the SIEVE capability leaves them out and a
	// user's script may not require them, even when Extensions has them
	// ("its use is restricted to global scripts"); a script it includes
	// :global may.
	GlobalExtensions sieve.GlobalExtensions
	// AllowedBase, when set, is the directory every user's home must be
	// under (delivery's maildir_base): no symbolic link is followed out.
	AllowedBase string
	// Chown: files created for a user get its uid and gid (as root).
	Chown bool
	// Limits of each user's scripts (Pigeonhole's sieve_quota_*).
	Limits scripts.Limits
	// GlobalScripts is the directory `include :global` reads (the
	// deliverer's [sieve] global, Pigeonhole's sieve_global); "" for none.
	GlobalScripts string

	// Cluster, when set, is the node map: a user homed on another node
	// logs in here and the session is passed through to the home node
	// (proxy.go); a front node's cluster login is accepted. Auth must
	// then also implement UserLookup. Nil: a single node.
	Cluster *cluster.Cluster
	// Holds are the users being moved away from this node: their logins
	// are refused for now. Nil holds nobody.
	Holds *cluster.Holds

	MaxRedirects   int           // advertised as MAXREDIRECTS; default DefaultMaxRedirects
	MaxConnsPerIP  int           // before login; default DefaultMaxConnsPerIP
	MaxUserIPConns int           // per user and address after login; default DefaultMaxUserIPConns
	MaxConns       int           // total; default DefaultMaxConns
	MaxLineLength  int           // of a command outside literals; default DefaultMaxLineLength
	MaxCommands    int           // per connection; default DefaultMaxCommands
	AuthTimeout    time.Duration // one directory call; default DefaultAuthTimeout
	IdleTimeout    time.Duration // between commands after login; default DefaultIdleTimeout
	// PreAuthTimeout is how long a connection may stay without a login,
	// from connect, whatever it sends meanwhile (Dovecot's login
	// processes have such an absolute bound, 3 minutes); default
	// DefaultPreAuthTimeout.
	PreAuthTimeout time.Duration
}

// Server is the ManageSieve service.
type Server struct {
	opts  Options
	log   *slog.Logger
	guard *loginguard.Guard
	conns *connset.Set[*session]
	hops  *cluster.Hops // nil on a single node
	users UserLookup    // the cluster logins' lookups; nil on a single node
}

// NewServer validates o and builds a server.
func NewServer(o Options) (*Server, error) {
	if o.Auth == nil {
		return nil, errors.New("managesieve: Options.Auth is required")
	}
	if o.AllowedBase != "" && !filepath.IsAbs(o.AllowedBase) {
		return nil, fmt.Errorf("managesieve: AllowedBase %q is not absolute", o.AllowedBase)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxRedirects, DefaultMaxRedirects)
	def(&o.MaxConnsPerIP, DefaultMaxConnsPerIP)
	def(&o.MaxUserIPConns, DefaultMaxUserIPConns)
	def(&o.MaxConns, DefaultMaxConns)
	def(&o.MaxLineLength, DefaultMaxLineLength)
	def(&o.MaxCommands, DefaultMaxCommands)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&o.AuthTimeout, DefaultAuthTimeout)
	defd(&o.IdleTimeout, DefaultIdleTimeout)
	defd(&o.PreAuthTimeout, DefaultPreAuthTimeout)
	if o.Limits.MaxScriptSize <= 0 {
		o.Limits.MaxScriptSize = scripts.DefaultMaxScriptSize
	}
	var users UserLookup
	if o.Cluster != nil {
		var ok bool
		if users, ok = o.Auth.(UserLookup); !ok {
			return nil, errors.New("managesieve: with a Cluster, Options.Auth must implement UserLookup")
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	g := o.Guard
	if g == nil {
		g = loginguard.New(loginguard.Options{})
	}
	hops := cluster.NewHops(o.Cluster)
	conns := connset.New(connset.Limits{MaxConns: o.MaxConns, MaxConnsPerIP: o.MaxConnsPerIP, MaxUserIPConns: o.MaxUserIPConns},
		hops.FromNode, func(se *session) { se.raw.Close() })
	return &Server{opts: o, log: log, guard: g, conns: conns, hops: hops, users: users}, nil
}

// Serve accepts plain connections on ln (STARTTLS upgrades them) until
// Close.
func (s *Server) Serve(ln net.Listener) error {
	if !s.conns.AddListener(ln) {
		return nil
	}
	defer s.conns.RemoveListener(ln)
	return acceptloop.Run(ln, s.conns.Closed, nil, func(c net.Conn) {
		if se := s.admit(c); se != nil {
			go se.serve()
		}
	})
}

// admit applies the connection limits; over one the client gets a BYE.
func (s *Server) admit(c net.Conn) *session {
	ip := connset.RemoteIP(c.RemoteAddr())
	se, err := s.conns.Admit(ip, func() *session { return newSession(s, c, ip) })
	if err != nil {
		refuse := "Too many connections, try again later."
		switch {
		case errors.Is(err, connset.ErrTooManyFromIP):
			refuse = "Too many connections from your address."
		case errors.Is(err, connset.ErrClosing):
			refuse = "Server shutting down."
		}
		s.log.Warn("managesieve: connection refused", "ip", ip, "reason", refuse)
		go func() {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Write([]byte(`BYE (TRYLATER) "` + refuse + `"` + "\r\n"))
			c.Close()
		}()
		return nil
	}
	if m := s.opts.Metrics; m != nil {
		m.ConnOpened(metricsListener)
	}
	se.log.Debug("managesieve: connect", "ip", ip)
	return se
}

// loggedIn moves a session from its address's count to its user's; false
// when the user already has MaxUserIPConns from there or is being moved.
func (s *Server) loggedIn(se *session, login string) bool {
	return s.conns.LoggedIn(se, login, se.ip)
}

// loggedOut undoes loggedIn (UNAUTHENTICATE).
func (s *Server) loggedOut(se *session) { s.conns.LoggedOut(se) }

func (s *Server) dropSession(se *session) {
	if !s.conns.Drop(se) {
		return
	}
	if m := s.opts.Metrics; m != nil {
		m.ConnClosed(metricsListener)
	}
}

// Close stops listening and closes every connection.
func (s *Server) Close() error {
	_, err := s.conns.Close()
	return err
}

// Shutdown tells clients waiting for a command goodbye (BYE), lets
// commands in flight finish within a short window or ctx, then Closes.
func (s *Server) Shutdown(ctx context.Context) error {
	s.conns.CloseListeners() // no new connections while the present ones finish
	s.conns.Each(func(se *session) {
		se.shutdown.Store(true)
		_ = se.raw.SetReadDeadline(time.Now())
	})
	s.conns.Drain(ctx, shutdownByeWindow)
	return s.Close()
}

// UserLookup finds a user without a password, for the logins of the
// other cluster nodes; *directory.Directory implements it.
type UserLookup interface {
	LookupUser(ctx context.Context, login string) (directory.User, error)
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

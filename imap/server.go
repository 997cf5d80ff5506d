package imap

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
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"courriel/directory"
	"courriel/imap/mailstore"
)

// Authenticator checks a login; *directory.Directory implements it.
// Errors: directory.ErrInvalidCredentials, directory.ErrUnavailable.
type Authenticator interface {
	Authenticate(ctx context.Context, login, password string) (directory.User, error)
}

// Defaults for the zero values of Options.
const (
	// DefaultAppendLimit bounds one APPEND literal (advertised as APPENDLIMIT,
	// RFC 7889).
	DefaultAppendLimit = 64 << 20
	// DefaultMaxConnsPerIP bounds concurrent connections from one address
	// (Dovecot's mail_max_userip_connections is 10 per user and IP).
	DefaultMaxConnsPerIP = 20
	// DefaultIdleCheck is how often an idling session stats new/ and cur/ to
	// notice changes made by other processes.
	DefaultIdleCheck = 2 * time.Second
	// DefaultAuthTimeout bounds one directory call during LOGIN.
	DefaultAuthTimeout = 15 * time.Second
	// Failed-login delay: doubles per recent failure from one IP, capped.
	DefaultFailDelay    = 500 * time.Millisecond
	DefaultMaxFailDelay = 8 * time.Second
)

// The autologout timer (RFC 9051 §5.4: at least 30 minutes) is enforced by
// go-imap's imapserver: 35 minutes of silence in the authenticated state,
// 30 seconds for a command line before login.

// Options configures a Server. Auth is required.
type Options struct {
	Auth      Authenticator
	TLSConfig *tls.Config // for STARTTLS on plain listeners; nil: no STARTTLS
	Logger    *slog.Logger
	// AllowedBase, when set, is the directory every user's maildir must be
	// under; a directory entry pointing elsewhere cannot log in.
	AllowedBase string
	// Chown: files and directories created for a user get its UID/GID.
	Chown bool
	// Metrics receives session and login events; *monitor.Metrics
	// satisfies it. Nil: none.
	Metrics Metrics

	AppendLimit   uint32        // default DefaultAppendLimit
	MaxConnsPerIP int           // default DefaultMaxConnsPerIP
	IdleCheck     time.Duration // default DefaultIdleCheck
	AuthTimeout   time.Duration // default DefaultAuthTimeout
	FailDelay     time.Duration // default DefaultFailDelay; negative disables
	MaxFailDelay  time.Duration // default DefaultMaxFailDelay
}

// Server is the IMAP service.
type Server struct {
	opts Options
	log  *slog.Logger
	imap *imapserver.Server // plain listeners: STARTTLS, LOGINDISABLED until TLS
	// imapTLS serves implicit-TLS listeners. The library recognises TLS by
	// the connection being a *tls.Conn, which idConn (ID support) hides; as
	// every connection it gets is TLS underneath (Serve checks), it may
	// allow login at once, and it offers no STARTTLS.
	imapTLS *imapserver.Server
	reg     *mailstore.Registry
	closed  chan struct{}

	mu       sync.Mutex
	conns    map[string]int         // per client IP; guarded by mu
	fails    map[string]*failRecord // per client IP; guarded by mu
	sessions map[*session]struct{}  // guarded by mu
	wg       sync.WaitGroup         // one per live session
}

type failRecord struct {
	count int
	last  time.Time
}

// NewServer validates o and builds a server.
func NewServer(o Options) (*Server, error) {
	if o.Auth == nil {
		return nil, errors.New("imap: Options.Auth is required")
	}
	if o.AllowedBase != "" && !filepath.IsAbs(o.AllowedBase) {
		return nil, fmt.Errorf("imap: AllowedBase %q is not absolute", o.AllowedBase)
	}
	if o.AppendLimit == 0 {
		o.AppendLimit = DefaultAppendLimit
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if o.IdleCheck <= 0 {
		o.IdleCheck = DefaultIdleCheck
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = DefaultAuthTimeout
	}
	if o.FailDelay == 0 {
		o.FailDelay = DefaultFailDelay
	}
	if o.MaxFailDelay <= 0 {
		o.MaxFailDelay = DefaultMaxFailDelay
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		opts:     o,
		log:      log,
		reg:      mailstore.NewRegistry(),
		closed:   make(chan struct{}),
		conns:    make(map[string]int),
		fails:    make(map[string]*failRecord),
		sessions: make(map[*session]struct{}),
	}
	caps := goimap.CapSet{
		goimap.CapIMAP4rev1:    {},
		goimap.CapIMAP4rev2:    {},
		goimap.CapNamespace:    {},
		goimap.CapUIDPlus:      {},
		goimap.CapMove:         {},
		goimap.CapESearch:      {},
		goimap.CapListExtended: {},
		goimap.CapListStatus:   {},
		goimap.CapStatusSize:   {},
		goimap.CapSpecialUse:   {},
		goimap.CapChildren:     {},
		goimap.CapBinary:       {},
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession: s.newSession,
		Caps:       caps,
		Logger:     slogPrintf{log},
		TLSConfig:  o.TLSConfig,
	})
	s.imapTLS = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         caps,
		Logger:       slogPrintf{log},
		InsecureAuth: true, // every connection is TLS: see Serve
	})
	return s, nil
}

type slogPrintf struct{ l *slog.Logger }

func (p slogPrintf) Printf(format string, args ...any) {
	p.l.Warn("imapserver: " + fmt.Sprintf(format, args...))
}

// Serve accepts connections on ln until Close. With implicitTLS the listener
// already yields TLS connections (tls.NewListener, port 993); otherwise the
// connection is plain, STARTTLS is offered when a TLS config is set, and
// LOGINDISABLED is advertised (no login of any kind) until TLS is up.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	srv := s.imap
	if implicitTLS {
		srv = s.imapTLS
	}
	err := srv.Serve(idListener{Listener: ln, mustTLS: implicitTLS, log: s.log})
	select {
	case <-s.closed:
		return nil
	default:
	}
	return err
}

// Notify tells the server that mail was durably delivered into maildir (the
// user's INBOX path). Sessions with that INBOX selected or idling rescan it
// and push EXISTS at once. It does not block.
func (s *Server) Notify(maildir string) {
	mb := s.reg.Lookup(filepath.Clean(maildir), "")
	if mb == nil {
		return // nobody has it open: the next SELECT reads the directory
	}
	go func() {
		if err := mb.Sync(true); err != nil {
			s.log.Warn("imap: rescan after delivery failed", "maildir", maildir, "err", err)
		}
	}()
}

// Close stops listening and closes all connections at once.
func (s *Server) Close() error {
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return nil
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	err := s.imap.Close()
	if err2 := s.imapTLS.Close(); err == nil {
		err = err2
	}
	// Connections are closed; wait for their sessions to release their
	// folders so that nothing writes into a maildir after Close returns.
	s.wg.Wait()
	s.reg.SaveAll()
	return err
}

// Shutdown is Close after telling idling clients goodbye; ctx bounds it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	var list []*session
	for se := range s.sessions {
		list = append(list, se)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		for _, se := range list {
			_ = se.conn.Bye("Server shutting down")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return s.Close()
}

// Metrics is what the server reports; the consumer declares it.
type Metrics interface {
	IMAPSessionStarted()
	IMAPSessionEnded()
	AuthFailure(listener string)
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ip := remoteIP(c.NetConn().RemoteAddr())
	s.mu.Lock()
	if s.conns[ip] >= s.opts.MaxConnsPerIP {
		s.mu.Unlock()
		s.log.Warn("imap: too many connections", "ip", ip)
		return nil, nil, &goimap.Error{Type: goimap.StatusResponseTypeBye, Code: goimap.ResponseCodeLimit, Text: "Too many connections from your address"}
	}
	s.conns[ip]++
	s.wg.Add(1)
	se := &session{srv: s, conn: c, ip: ip, id: newID()}
	se.logger = s.log.With("conn_id", se.id)
	s.sessions[se] = struct{}{}
	s.mu.Unlock()
	if m := s.opts.Metrics; m != nil {
		m.IMAPSessionStarted()
	}
	se.logger.Debug("imap: connect", "ip", ip)
	return se, nil, nil
}

func (s *Server) dropSession(se *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[se]; !ok {
		return
	}
	delete(s.sessions, se)
	s.wg.Done()
	if m := s.opts.Metrics; m != nil {
		m.IMAPSessionEnded()
	}
	if s.conns[se.ip]--; s.conns[se.ip] <= 0 {
		delete(s.conns, se.ip)
	}
}

// failDelay records a failed login from ip and returns how long to wait
// before answering: repeated guesses from one address get slower.
func (s *Server) failDelay(ip string) time.Duration {
	if s.opts.FailDelay < 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(s.fails) > 10000 { // bound memory under a distributed attack
		for k, r := range s.fails {
			if now.Sub(r.last) > 15*time.Minute {
				delete(s.fails, k)
			}
		}
		if len(s.fails) > 10000 {
			clear(s.fails)
		}
	}
	r := s.fails[ip]
	if r == nil || now.Sub(r.last) > 15*time.Minute {
		r = &failRecord{}
		s.fails[ip] = r
	}
	r.count++
	r.last = now
	d := s.opts.FailDelay
	for i := 1; i < r.count && d < s.opts.MaxFailDelay; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxFailDelay)
}

func (s *Server) loginOK(ip string) {
	s.mu.Lock()
	delete(s.fails, ip)
	s.mu.Unlock()
}

func remoteIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// idListener wraps every accepted connection in an idConn. With mustTLS it
// refuses anything that is not TLS, since the implicit-TLS server lets every
// connection log in.
type idListener struct {
	net.Listener
	mustTLS bool
	log     *slog.Logger
}

func (l idListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if _, isTLS := c.(*tls.Conn); l.mustTLS && !isTLS {
			l.log.Error("imap: implicit-TLS listener yielded a plain connection; closing it", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		return newIDConn(c), nil
	}
}

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
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/imap/mailstore"
	"courriel/imap/wire"
	"courriel/internal/acceptloop"
	"courriel/internal/connset"
	"courriel/internal/dirwatch"
	"courriel/loginguard"
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
	// that have not logged in: generous, an office behind NAT shares one
	// address, and a logged-in connection counts against its user instead.
	DefaultMaxConnsPerIP = 200
	// DefaultMaxUserIPConns bounds logged-in connections of one user from
	// one address (Dovecot's mail_max_userip_connections).
	DefaultMaxUserIPConns = 10
	// DefaultMaxConns bounds all connections of the server.
	DefaultMaxConns = 20000
	// DefaultIdleCheck is how often an idling session stats new/ and cur/ to
	// notice changes made by other processes.
	DefaultIdleCheck = 2 * time.Second
	// DefaultWatchedIdleCheck replaces it where inotify watches the
	// folder: other programs' changes wake the session at once and the
	// poll is a safety net (Dovecot's mailbox_idle_check_interval).
	DefaultWatchedIdleCheck = 30 * time.Second
	// DefaultIdleNotifyInterval is how often a session in IDLE says
	// "* OK Still here", so that NAT and stateful firewalls keep the
	// connection (Dovecot's imap_idle_notify_interval).
	DefaultIdleNotifyInterval = 2 * time.Minute
	// DefaultAuthTimeout bounds one directory call during LOGIN.
	DefaultAuthTimeout = 15 * time.Second
	// DefaultLoginTimeout closes a connection not logged in this long
	// after it connected, whatever it sends: the other timeouts are reset
	// by every byte, and one byte every 20 s held a connection for good.
	// Dovecot's imap-login gives 3 minutes from connect
	// (MASTER_LOGIN_TIMEOUT_SECS); ManageSieve here 60 s.
	DefaultLoginTimeout = 60 * time.Second
	// Failed-login delay, SMTP AUTH's rules (see loginguard): the first two
	// failures are answered at once, then the delay doubles per failure of
	// a login name or network, capped.
	DefaultFailDelay    = time.Second
	DefaultMaxFailDelay = 16 * time.Second
	// maxFailedLogins closes a connection after this many failures.
	maxFailedLogins = 3
)

// Autologout (RFC 9051 §5.4: at least 30 minutes when authenticated):
// 35 minutes of silence in the authenticated state, IDLE included; 30
// seconds for the next command before login and for the rest of a command
// line once it started; 5 minutes of silence inside a literal. These are
// reset by every byte; Options.LoginTimeout is not.
const (
	authIdleTimeout   = 35 * time.Minute
	preAuthTimeout    = 30 * time.Second
	cmdReadTimeout    = 30 * time.Second
	literalTimeout    = 5 * time.Minute
	writeTimeout      = 5 * time.Minute
	shutdownByeWindow = 2 * time.Second
)

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
	// Guard throttles failed logins; nil: one of the server's own, with
	// FailDelay and MaxFailDelay. The process should share one Guard
	// between IMAP and SMTP AUTH.
	Guard *loginguard.Guard

	AppendLimit    uint32        // default DefaultAppendLimit
	MaxConnsPerIP  int           // before login; default DefaultMaxConnsPerIP
	MaxUserIPConns int           // per user and address after login; default DefaultMaxUserIPConns
	MaxConns       int           // total; default DefaultMaxConns
	IdleCheck      time.Duration // default DefaultIdleCheck
	AuthTimeout    time.Duration // default DefaultAuthTimeout
	LoginTimeout   time.Duration // from connect to login; default DefaultLoginTimeout
	FailDelay      time.Duration // default DefaultFailDelay; negative disables
	MaxFailDelay   time.Duration // default DefaultMaxFailDelay
	// WatchedIdleCheck is IdleCheck for a session in IDLE on a folder of a
	// local file system, which inotify watches; default
	// DefaultWatchedIdleCheck. PollOnly turns inotify off.
	WatchedIdleCheck time.Duration
	PollOnly         bool
	// IdleNotifyInterval is how often a session in IDLE writes "* OK
	// Still here" (idlewatch.go); default DefaultIdleNotifyInterval,
	// negative: never. While it is on, IDLE is not logged out.
	IdleNotifyInterval time.Duration
	// Cluster, when set, is the node map: a user homed on another node
	// is logged in here and the session passed through to the home node
	// (proxy.go); a front node's cluster login is accepted. Auth must
	// then also implement UserLookup. Nil: a single node.
	Cluster *cluster.Cluster
	// Holds are the users being moved away from this node: their logins
	// get NO [UNAVAILABLE]. Nil holds nobody.
	Holds *cluster.Holds
	// MaxBufferedBytes bounds the bytes all sessions together hold for
	// messages read whole into memory (membudget.go); default
	// DefaultMaxBufferedBytes. A session waits up to BufferedWait for
	// its share (default DefaultBufferedWait), then gets NO [UNAVAILABLE].
	MaxBufferedBytes int64
	BufferedWait     time.Duration
	// autologoutAfter and cmdReadAfter replace authIdleTimeout and
	// cmdReadTimeout when set (tests).
	autologoutAfter, cmdReadAfter time.Duration
	// notifyDelayAfter replaces notifyDelay when set (tests).
	notifyDelayAfter time.Duration
	// streamSearchAll has SEARCH BODY and TEXT stream every message from
	// its file, as they stream a large one (tests).
	streamSearchAll bool
	// textReadHook is called each time SEARCH BODY or TEXT reads a
	// message's text (tests).
	textReadHook func(uid uint32)
	// ParseHelpers bounds the goroutines that parse messages ahead of cold
	// FETCHes of ENVELOPE or BODYSTRUCTURE, all sessions together
	// (prefetch.go). 0: half the cores less one, so none on two cores,
	// where the other core is better left to the clients and the system
	// (measured there, the helpers cost more CPU in wake-ups than they
	// saved in time); negative: none.
	ParseHelpers int
}

// Server is the IMAP service.
type Server struct {
	opts  Options
	log   *slog.Logger
	guard *loginguard.Guard
	reg   *mailstore.Registry
	bufs  wire.Buffers // lent to connections with bytes in flight
	mem   *memBudget   // for messages read whole (Options.MaxBufferedBytes)
	conns *connset.Set[*session]
	// prefetchSlots bounds the goroutines parsing ahead of cold FETCHes,
	// all sessions together, to the cores the writers leave.
	prefetchSlots chan struct{}
	hops          *cluster.Hops // nil on a single node
	users         UserLookup    // the cluster logins' lookups; nil on a single node
	hopBufs       sync.Pool     // *[]byte of hopBufSize, lent to busy proxied sessions
	// folders wakes the sessions idling on a folder that another program
	// changed (idlewatch.go); nil without inotify.
	folders *dirwatch.Watcher[*mailstore.Mailbox]
	// warnedWatch: a failed watch was logged (once: the watch limit is
	// per user, and every IDLE would hit it again).
	warnedWatch atomic.Bool

	// mu orders wake-ups (wakeIdlers, mailboxChanged) against a session
	// leaving IDLE (stopIdle), and guards the two sets below.
	mu sync.Mutex
	// idlers are the sessions waiting on each mailbox (in IDLE, or on
	// the selected mailbox of a NOTIFY set), and notifiers those with a
	// NOTIFY set: whom wakeIdlers wakes, without a look at every
	// connection (20,000 of them, at each delivery into a watched folder).
	idlers    map[*mailstore.Mailbox]map[*session]struct{}
	notifiers map[*session]struct{}
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
	if o.MaxUserIPConns == 0 {
		o.MaxUserIPConns = DefaultMaxUserIPConns
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.IdleCheck <= 0 {
		o.IdleCheck = DefaultIdleCheck
	}
	if o.WatchedIdleCheck <= 0 {
		o.WatchedIdleCheck = max(o.IdleCheck, DefaultWatchedIdleCheck)
	}
	if o.IdleNotifyInterval == 0 {
		o.IdleNotifyInterval = DefaultIdleNotifyInterval
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = DefaultAuthTimeout
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = DefaultLoginTimeout
	}
	if o.FailDelay == 0 {
		o.FailDelay = DefaultFailDelay
	}
	if o.MaxFailDelay <= 0 {
		o.MaxFailDelay = DefaultMaxFailDelay
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if o.BufferedWait <= 0 {
		o.BufferedWait = DefaultBufferedWait
	}
	var users UserLookup
	if o.Cluster != nil {
		var ok bool
		if users, ok = o.Auth.(UserLookup); !ok {
			return nil, errors.New("imap: with a Cluster, Options.Auth must implement UserLookup")
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	g := o.Guard
	if g == nil {
		g = loginguard.New(loginguard.Options{BaseDelay: o.FailDelay, MaxDelay: o.MaxFailDelay})
	}
	hops := cluster.NewHops(o.Cluster)
	reg := mailstore.NewRegistry()
	reg.Logger = log
	s := &Server{
		opts:  o,
		log:   log,
		guard: g,
		reg:   reg,
		conns: connset.New(connset.Limits{MaxConns: o.MaxConns, MaxConnsPerIP: o.MaxConnsPerIP, MaxUserIPConns: o.MaxUserIPConns},
			hops.FromNode, func(se *session) { se.raw.Close() }),
		mem:           newMemBudget(o.MaxBufferedBytes),
		prefetchSlots: make(chan struct{}, parseHelpers(o.ParseHelpers)),
		hops:          hops,
		users:         users,
		idlers:        map[*mailstore.Mailbox]map[*session]struct{}{},
		notifiers:     map[*session]struct{}{},
	}
	if !o.PollOnly {
		w, err := dirwatch.New(func(changed []*mailstore.Mailbox) {
			for _, mb := range changed {
				s.wakeIdlers(mb, nil)
			}
		})
		if err != nil {
			log.Warn("imap: no inotify; sessions in IDLE poll their folder", "every", o.IdleCheck, "err", err)
		}
		s.folders = w
	}
	return s, nil
}

// autologout is how long a logged-in session may stay silent, IDLE
// included.
func (s *Server) autologout() time.Duration {
	if d := s.opts.autologoutAfter; d > 0 {
		return d
	}
	return authIdleTimeout
}

// cmdTimeout is how long the rest of a started command line may take to
// come, each read.
func (s *Server) cmdTimeout() time.Duration {
	if d := s.opts.cmdReadAfter; d > 0 {
		return d
	}
	return cmdReadTimeout
}

func parseHelpers(n int) int {
	if n == 0 {
		n = runtime.GOMAXPROCS(0)/2 - 1
	}
	return max(n, 0)
}

// Serve accepts connections on ln until Close. With implicitTLS the listener
// already yields TLS connections (tls.NewListener, port 993); otherwise the
// connection is plain, STARTTLS is offered when a TLS config is set, and
// LOGINDISABLED is advertised (no login of any kind) until TLS is up.
// KeptFolders says how many folders stay loaded after their last session
// (so that a client coming back finds them loaded) and the memory they
// hold by estimate, for metrics.
func (s *Server) KeptFolders() (folders int, bytes int64) { return s.reg.KeptFolders() }

func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	if !s.conns.AddListener(ln) {
		return nil
	}
	defer s.conns.RemoveListener(ln)
	return acceptloop.Run(ln, s.conns.Closed, nil, func(c net.Conn) {
		_, isTLS := c.(*tls.Conn)
		if implicitTLS && !isTLS {
			s.log.Error("imap: implicit-TLS listener yielded a plain connection; closing it", "remote", c.RemoteAddr())
			c.Close()
			return
		}
		if se := s.admit(c, isTLS); se != nil {
			go se.serve()
		}
	})
}

// admit applies the connection limits; over a limit the client gets a
// BYE and the connection is closed.
func (s *Server) admit(c net.Conn, isTLS bool) *session {
	ip := connset.RemoteIP(c.RemoteAddr())
	se, err := s.conns.Admit(ip, func() *session { return newSession(s, c, ip, isTLS) })
	if err != nil {
		refuse := "Too many connections, try again later"
		switch {
		case errors.Is(err, connset.ErrTooManyFromIP):
			refuse = "Too many connections from your address"
		case errors.Is(err, connset.ErrClosing):
			refuse = "Server shutting down"
		}
		s.log.Warn("imap: connection refused", "ip", ip, "reason", refuse)
		go func() {
			// The greeting may be a TLS handshake away: bounded.
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Write([]byte("* BYE [UNAVAILABLE] " + refuse + "\r\n"))
			c.Close()
		}()
		return nil
	}
	if m := s.opts.Metrics; m != nil {
		m.IMAPSessionStarted()
	}
	se.logger.Debug("imap: connect", "ip", ip)
	return se
}

// loggedIn counts a session for its user and address instead of under
// the cap on connections not logged in; false when the user already has
// MaxUserIPConns from there or is being moved.
func (s *Server) loggedIn(se *session, login string) bool {
	return s.conns.LoggedIn(se, login, se.ip)
}

// loggedOut undoes loggedIn: for a login that failed after counting, and
// at LOGOUT.
func (s *Server) loggedOut(se *session) { s.conns.LoggedOut(se) }

func (s *Server) dropSession(se *session) {
	if !s.conns.Drop(se) {
		return
	}
	if m := s.opts.Metrics; m != nil {
		m.IMAPSessionEnded()
	}
}

// wakeIdlers interrupts the socket wait of sessions idling on mb so that
// they report its changes at once.
func (s *Server) wakeIdlers(mb *mailstore.Mailbox, except *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wake := func(se *session) {
		se.woken.Store(true)
		_ = se.raw.SetReadDeadline(time.Now())
	}
	for se := range s.idlers[mb] {
		if se != except {
			wake(se)
		}
	}
	for se := range s.notifiers {
		if se != except && se.idleOn.Load() != mb && se.notifyWatches(mb) {
			wake(se)
		}
	}
}

// setIdleOn makes se wait on mb for wakeIdlers (nil: on nothing).
func (s *Server) setIdleOn(se *session, mb *mailstore.Mailbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := se.idleOn.Load(); old != nil {
		delete(s.idlers[old], se)
		if len(s.idlers[old]) == 0 {
			delete(s.idlers, old)
		}
	}
	se.idleOn.Store(mb)
	if mb != nil {
		set := s.idlers[mb]
		if set == nil {
			set = map[*session]struct{}{}
			s.idlers[mb] = set
		}
		set[se] = struct{}{}
	}
}

// setNotifier counts se among the sessions with a NOTIFY set, or not.
func (s *Server) setNotifier(se *session, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.notifiers[se] = struct{}{}
	} else {
		delete(s.notifiers, se)
	}
}

// Notify tells the server that mail was durably delivered into maildir (the
// user's INBOX path). Sessions with that INBOX selected see it at their
// next command, idling ones at once. It does not block.
func (s *Server) Notify(maildir string) {
	mb := s.reg.Lookup(filepath.Clean(maildir), "")
	if mb == nil {
		return // nobody has it open: the next SELECT reads the directory
	}
	go func() {
		if err := mb.Sync(true); err != nil {
			s.log.Warn("imap: rescan after delivery failed", "maildir", maildir, "err", err)
		}
		s.wakeIdlers(mb, nil)
	}()
}

// Delivered tells the server that a delivery agent durably placed the file
// name in new/ of folder directory dir ("" for INBOX, ".Junk") of maildir:
// when a session has that folder open, the one file is numbered and
// announced without listing the folder (a burst of deliveries into a
// 100,000-message INBOX costs a few system calls each), and idling
// sessions are woken. It does not block; delivery.Options.OnDelivered
// can be this method.
func (s *Server) Delivered(maildir, dir, name string) {
	clean := filepath.Clean(maildir)
	mb := s.reg.Lookup(clean, dir)
	if mb == nil {
		return // nobody has it open: the next SELECT reads the directory
	}
	go func() {
		if err := s.reg.Delivered(clean, dir, name); err != nil {
			s.log.Warn("imap: taking in a delivered message failed; the next look lists the folder", "maildir", maildir, "folder", dir, "err", err)
			_ = mb.Sync(true)
		}
		s.wakeIdlers(mb, nil)
	}()
}

// Close stops listening and closes all connections at once.
func (s *Server) Close() error {
	first, err := s.conns.Close()
	if first {
		// The sessions have released their folders: nothing writes into
		// a maildir after Close returns.
		s.reg.SaveAll()
		if s.folders != nil {
			s.folders.Close()
		}
	}
	return err
}

// Shutdown is Close after telling idling clients goodbye; ctx bounds it.
func (s *Server) Shutdown(ctx context.Context) error {
	s.conns.CloseListeners() // no new connections while the present ones finish
	s.conns.Each(func(se *session) {
		se.shutdown.Store(true)
		// Wakes a session waiting for a command or in IDLE: it sends BYE.
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

// Metrics is what the server reports; the consumer declares it.
type Metrics interface {
	IMAPSessionStarted()
	IMAPSessionEnded()
	AuthFailure(listener string)
}

func newID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

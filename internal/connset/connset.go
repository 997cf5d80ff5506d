package connset

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The refusals of Admit.
var (
	ErrTooMany       = errors.New("connset: too many connections")
	ErrTooManyFromIP = errors.New("connset: too many connections from the address")
	// ErrClosing: the listeners are closed (CloseListeners or Close);
	// a connection accepted just before is not taken on any more.
	ErrClosing = errors.New("connset: shutting down")
)

// Limits are the caps of a Set; each must be positive.
type Limits struct {
	MaxConns       int // all sessions
	MaxConnsPerIP  int // of one address, not logged in
	MaxUserIPConns int // of one login from one address, logged in
}

// Set is the sessions of one server, S being its session type. Safe for
// concurrent use.
type Set[S comparable] struct {
	lim Limits
	// exempt says whether an address is spared MaxConnsPerIP (a cluster
	// node's, whose connections carry many clients).
	exempt func(netip.Addr) bool
	// kick closes a session's connection; the session then ends and
	// calls Drop.
	kick   func(S)
	closed chan struct{}

	mu        sync.Mutex
	listeners map[net.Listener]struct{} // guarded by mu
	closing   bool                      // CloseListeners or Close ran; guarded by mu
	sessions  map[S]*entry              // guarded by mu
	perIP     map[string]int            // sessions not logged in, per peer address; guarded by mu
	perUserIP map[string]int            // logged-in sessions per userIPKey; guarded by mu
	barred    map[string]int            // logins refused during a move (EndUser); guarded by mu
	// empty is closed when the last session is dropped, and made anew
	// by the next Admit: Close and Drain wait on it. (A WaitGroup would
	// panic when a session is admitted while a Wait returns, which a
	// connection accepted during Drain did.) Guarded by mu.
	empty chan struct{}
}

// entry is what the Set counts a session under.
type entry struct {
	peer  string // the connection's address, counted in perIP before login
	login string // "" before login
	key   string // counted in perUserIP after login
}

// New returns an empty set. exempt may be nil (no address is exempt);
// kick closes a session's connection so that it ends.
func New[S comparable](lim Limits, exempt func(netip.Addr) bool, kick func(S)) *Set[S] {
	if exempt == nil {
		exempt = func(netip.Addr) bool { return false }
	}
	return &Set[S]{
		lim: lim, exempt: exempt, kick: kick,
		closed:    make(chan struct{}),
		listeners: map[net.Listener]struct{}{},
		sessions:  map[S]*entry{},
		perIP:     map[string]int{},
		perUserIP: map[string]int{},
		barred:    map[string]int{},
	}
}

// Admit counts a new session from peer, made by newSession under the
// set's lock when the caps allow it; otherwise ErrTooMany or
// ErrTooManyFromIP and newSession is not called.
func (s *Set[S]) Admit(peer string, newSession func() S) (S, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero S
	ip := ParseIP(peer)
	group := peerGroup(peer, ip)
	switch {
	case s.closing:
		return zero, ErrClosing
	case len(s.sessions) >= s.lim.MaxConns:
		return zero, ErrTooMany
	case s.perIP[group] >= s.lim.MaxConnsPerIP && !s.exempt(ip):
		return zero, ErrTooManyFromIP
	}
	se := newSession()
	s.perIP[group]++
	if len(s.sessions) == 0 {
		s.empty = make(chan struct{})
	}
	s.sessions[se] = &entry{peer: group}
	return se, nil
}

// peerGroup is what the per-address cap counts: the address, or its /64
// for IPv6, where one machine commonly holds a whole /64 (as smtp and
// loginguard count).
func peerGroup(peer string, ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return peer
}

// LoggedIn moves se from its peer's count to that of login from ip (the
// client's address, which after a front node's cluster login is not the
// peer's); false, and nothing counted, when login already has
// MaxUserIPConns from ip or is barred.
func (s *Set[S]) LoggedIn(se S, login, ip string) bool {
	key := userIPKey(login, ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sessions[se]
	if e == nil || s.perUserIP[key] >= s.lim.MaxUserIPConns || s.barred[login] > 0 {
		return false
	}
	s.perUserIP[key]++
	e.login, e.key = login, key
	decr(s.perIP, e.peer)
	return true
}

// LoggedOut undoes LoggedIn: se counts against its peer again.
func (s *Set[S]) LoggedOut(se S) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sessions[se]
	if e == nil || e.login == "" {
		return
	}
	decr(s.perUserIP, e.key)
	e.login, e.key = "", ""
	s.perIP[e.peer]++
}

// Drop removes an ended session; false when it was not in the set (it
// was dropped already).
func (s *Set[S]) Drop(se S) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sessions[se]
	if e == nil {
		return false
	}
	delete(s.sessions, se)
	if len(s.sessions) == 0 {
		close(s.empty)
	}
	if e.login != "" {
		decr(s.perUserIP, e.key)
	} else {
		decr(s.perIP, e.peer)
	}
	return true
}

// Len is the number of sessions.
func (s *Set[S]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Each calls f for every session, under the set's lock: f must not call
// the set.
func (s *Set[S]) Each(f func(S)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for se := range s.sessions {
		f(se)
	}
}

// EndUser kicks every session of login (its home is leaving this node),
// refuses the user's logins until release is called (once; more calls do
// nothing), and returns once the kicked sessions have been dropped, or
// ctx ends. The refusal covers a login that was already past its other
// checks when the move began.
func (s *Set[S]) EndUser(ctx context.Context, login string) (ended int, release func(), err error) {
	var kicked []S
	s.mu.Lock()
	s.barred[login]++
	for se, e := range s.sessions {
		if e.login == login {
			s.kick(se)
			kicked = append(kicked, se)
		}
	}
	s.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			decr(s.barred, login)
			s.mu.Unlock()
		})
	}
	// Sessions are dropped after they let go of the user's files: polled,
	// a move is rare.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		left := 0
		for _, se := range kicked {
			if _, ok := s.sessions[se]; ok {
				left++
			}
		}
		s.mu.Unlock()
		if left == 0 {
			return len(kicked), release, nil
		}
		select {
		case <-ctx.Done():
			return len(kicked), release, ctx.Err()
		case <-t.C:
		}
	}
}

// AddListener registers ln for Close; false, with ln closed, when the set
// is closed already.
func (s *Set[S]) AddListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Closed() {
		ln.Close()
		return false
	}
	s.listeners[ln] = struct{}{}
	return true
}

// RemoveListener forgets ln (its Serve returned).
func (s *Set[S]) RemoveListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// CloseListeners closes the listeners and forgets them: no new sessions
// while the present ones finish.
func (s *Set[S]) CloseListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
		delete(s.listeners, ln)
	}
}

// Done is closed by Close.
func (s *Set[S]) Done() <-chan struct{} { return s.closed }

// Closed says whether Close was called.
func (s *Set[S]) Closed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Close closes the listeners, kicks every session and waits until all are
// dropped. first is false, and nothing done, when Close was called before;
// err is the first listener's failure to close.
func (s *Set[S]) Close() (first bool, err error) {
	s.mu.Lock()
	if s.Closed() {
		s.mu.Unlock()
		return false, nil
	}
	close(s.closed)
	s.closing = true
	for ln := range s.listeners {
		if e := ln.Close(); e != nil && err == nil {
			err = e
		}
	}
	for se := range s.sessions {
		s.kick(se)
	}
	empty := s.emptyLocked()
	s.mu.Unlock()
	<-empty
	return true, err
}

// emptyLocked is closed once no session is left.
func (s *Set[S]) emptyLocked() <-chan struct{} {
	if len(s.sessions) == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return s.empty
}

// Drain waits until every session is dropped, ctx ends or window passes.
func (s *Set[S]) Drain(ctx context.Context, window time.Duration) {
	s.mu.Lock()
	done := s.emptyLocked()
	s.mu.Unlock()
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-t.C:
	}
}

func userIPKey(login, ip string) string { return login + "\x00" + ip }

func decr(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// ParseIP parses a session's address; the zero Addr when it is none.
func ParseIP(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// RemoteIP is the host part of a connection's remote address, the key the
// caps count by ("" for none).
func RemoteIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

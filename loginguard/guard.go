package loginguard

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Defaults for the zero values of Options.
const (
	DefaultBaseDelay  = 500 * time.Millisecond
	DefaultMaxDelay   = 30 * time.Second
	DefaultWindow     = 15 * time.Minute
	DefaultMaxEntries = 100000
	// DefaultNetFailuresPerStep: a network (an office behind NAT) gets
	// this many failures per doubling of the delay, a login name one.
	DefaultNetFailuresPerStep = 4
)

// Options configures a Guard.
type Options struct {
	BaseDelay  time.Duration // delay after the first failure; negative disables
	MaxDelay   time.Duration
	Window     time.Duration // a count is forgotten after this long without failures
	MaxEntries int           // bound on remembered names and networks together
	// NetFailuresPerStep is how many failures from one network double its
	// delay once.
	NetFailuresPerStep int
	Now                func() time.Time // tests use a fake clock
}

// Guard counts failed logins. It is safe for concurrent use.
type Guard struct {
	o  Options
	mu sync.Mutex
	// byKey holds "l:"+login and "n:"+network entries; guarded by mu.
	byKey map[string]*entry
}

type entry struct {
	fails int
	last  time.Time
}

// New returns a Guard.
func New(o Options) *Guard {
	if o.BaseDelay == 0 {
		o.BaseDelay = DefaultBaseDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.NetFailuresPerStep <= 0 {
		o.NetFailuresPerStep = DefaultNetFailuresPerStep
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Guard{o: o, byKey: make(map[string]*entry)}
}

// Network is the unit an address is throttled as: the address itself for
// IPv4, its /64 for IPv6 (one customer's allocation).
func Network(ip netip.Addr) string {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return "invalid"
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func loginKey(login string) string { return "l:" + strings.ToLower(login) }
func netKey(ip netip.Addr) string  { return "n:" + Network(ip) }

// countLocked returns the live failure count of key.
func (g *Guard) countLocked(key string, now time.Time) int {
	e := g.byKey[key]
	if e == nil {
		return 0
	}
	if now.Sub(e.last) > g.o.Window {
		delete(g.byKey, key)
		return 0
	}
	return e.fails
}

func (g *Guard) delayFor(steps int) time.Duration {
	if steps <= 0 || g.o.BaseDelay < 0 {
		return 0
	}
	d := g.o.BaseDelay
	for i := 1; i < steps && d < g.o.MaxDelay; i++ {
		d *= 2
	}
	return min(d, g.o.MaxDelay)
}

// Delay is how long to wait before checking an attempt for login from ip:
// it grows with the failures of that login (from anywhere) and of ip's
// network (against any login).
func (g *Guard) Delay(login string, ip netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.o.Now()
	lf := g.countLocked(loginKey(login), now)
	nf := g.countLocked(netKey(ip), now)
	steps := max(lf, (nf+g.o.NetFailuresPerStep-1)/g.o.NetFailuresPerStep)
	return g.delayFor(steps)
}

// Failed records a failed attempt.
func (g *Guard) Failed(login string, ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.o.Now()
	for _, k := range []string{loginKey(login), netKey(ip)} {
		n := g.countLocked(k, now)
		if n == 0 {
			g.makeRoomLocked(now)
		}
		g.byKey[k] = &entry{fails: n + 1, last: now}
	}
}

// Succeeded records a successful login: the login's count is cleared;
// the network's is not (its other guesses stay counted).
func (g *Guard) Succeeded(login string, ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.byKey, loginKey(login))
}

// makeRoomLocked keeps the table under MaxEntries: expired entries go
// first, then the oldest half (the entries least likely to matter).
func (g *Guard) makeRoomLocked(now time.Time) {
	if len(g.byKey) < g.o.MaxEntries {
		return
	}
	for k, e := range g.byKey {
		if now.Sub(e.last) > g.o.Window {
			delete(g.byKey, k)
		}
	}
	if len(g.byKey) < g.o.MaxEntries {
		return
	}
	var cutoff time.Time
	n := 0
	for _, e := range g.byKey { // a sample's median age stands for the table's
		if n == 0 || e.last.Before(cutoff) == (n%2 == 0) {
			cutoff = e.last
		}
		if n++; n >= 64 {
			break
		}
	}
	for k, e := range g.byKey {
		if !e.last.After(cutoff) {
			delete(g.byKey, k)
		}
	}
}

// Len is the number of remembered entries (for tests and metrics).
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byKey)
}

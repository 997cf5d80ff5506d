package loginguard

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Options tune a Guard; zero values take the defaults in brackets.
type Options struct {
	FreeFailures int           // failures answered at once (2)
	BaseDelay    time.Duration // delay after the first paid failure, doubled after each (1s); negative: no delays
	MaxDelay     time.Duration // cap of the delay (16s)
	NetLimit     int           // failures from one network in Window before it is refused without checking (10); negative: never
	Window       time.Duration // failures older than this are forgotten (15 min)
	MaxEntries   int           // bound of each table, against memory exhaustion (10000)
	Now          func() time.Time
}

func (o *Options) setDefaults() {
	if o.FreeFailures == 0 {
		o.FreeFailures = 2
	}
	if o.BaseDelay == 0 {
		o.BaseDelay = time.Second
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 16 * time.Second
	}
	if o.NetLimit == 0 {
		o.NetLimit = 10
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Guard counts failed logins. It is safe for concurrent use; one Guard is
// meant to be shared by all listeners of a process.
type Guard struct {
	o      Options
	mu     sync.Mutex
	nets   map[string]*rec // guarded by mu
	logins map[string]*rec // guarded by mu
}

type rec struct {
	n    int
	last time.Time
}

// New returns a Guard.
func New(o Options) *Guard {
	o.setDefaults()
	return &Guard{o: o, nets: map[string]*rec{}, logins: map[string]*rec{}}
}

// Network is the unit an address is counted as: the address itself for
// IPv4, its /64 for IPv6 (what one customer usually gets).
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

func loginKey(login string) string {
	if len(login) > 256 {
		login = login[:256]
	}
	// The directory matches logins as LDAP does (RFC 4518): case and
	// white space around and between words do not count, so " bob" and
	// "BOB  " are bob's login, and must share bob's count.
	return strings.ToLower(strings.Join(strings.Fields(login), " "))
}

// countLocked returns the live count of k, forgetting it once stale.
func (g *Guard) countLocked(m map[string]*rec, k string, now time.Time) int {
	r := m[k]
	if r == nil {
		return 0
	}
	if now.Sub(r.last) > g.o.Window {
		delete(m, k)
		return 0
	}
	return r.n
}

// Blocked reports whether ip's network failed too often to be heard: the
// attempt is refused without checking the password.
func (g *Guard) Blocked(ip netip.Addr) bool {
	if g.o.NetLimit < 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.countLocked(g.nets, Network(ip), g.o.Now()) >= g.o.NetLimit
}

// Failed records a failed attempt and returns how long to wait before
// answering it.
func (g *Guard) Failed(login string, ip netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.o.Now()
	n := 0
	for _, t := range []struct {
		m map[string]*rec
		k string
	}{{g.nets, Network(ip)}, {g.logins, loginKey(login)}} {
		c := g.countLocked(t.m, t.k, now) + 1
		g.pruneLocked(t.m, now)
		t.m[t.k] = &rec{n: c, last: now}
		n = max(n, c)
	}
	return g.delay(n)
}

// Delay is what the next failure of login from ip would wait, without
// recording anything (for a protocol that waits before checking).
func (g *Guard) Delay(login string, ip netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.o.Now()
	n := max(g.countLocked(g.nets, Network(ip), now), g.countLocked(g.logins, loginKey(login), now)) + 1
	return g.delay(n)
}

func (g *Guard) delay(n int) time.Duration {
	if n <= g.o.FreeFailures || g.o.BaseDelay < 0 {
		return 0
	}
	d := g.o.BaseDelay
	for i := g.o.FreeFailures + 1; i < n && d < g.o.MaxDelay; i++ {
		d *= 2
	}
	return min(d, g.o.MaxDelay)
}

// Succeeded records a successful login: the login's count is cleared; the
// network's is not.
func (g *Guard) Succeeded(login string, ip netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.logins, loginKey(login))
}

// pruneLocked keeps a table under MaxEntries: stale entries first, then
// any (an attacker with that many addresses loses some of its counts,
// which is better than running out of memory).
func (g *Guard) pruneLocked(m map[string]*rec, now time.Time) {
	if len(m) < g.o.MaxEntries {
		return
	}
	for k, r := range m {
		if now.Sub(r.last) > g.o.Window {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) < g.o.MaxEntries {
			break
		}
		delete(m, k)
	}
}

// Len is the number of remembered networks and login names.
func (g *Guard) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.nets) + len(g.logins)
}

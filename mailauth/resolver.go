package mailauth

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"
)

// Resolver is what the checks ask DNS; *net.Resolver is one, and so is the
// caching resolver NewResolver returns.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Cache bounds: Go's resolver does not hand out TTLs, so answers are kept
// a fixed time, shorter than most mail-related TTLs (SPF, DKIM and DMARC
// records are commonly 300 s to 1 h); "does not exist" shorter still.
// Temporary failures are never kept.
const (
	cacheTTL         = 5 * time.Minute
	negativeCacheTTL = time.Minute
	cacheEntries     = 20000
)

// NewResolver returns a caching resolver that asks the DNS server at addr
// ("host:port"), or the system's when addr is "".
func NewResolver(addr string) Resolver {
	var r *net.Resolver
	if addr == "" {
		r = net.DefaultResolver
	} else {
		r = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
	}
	return &cachingResolver{next: r, entries: map[string]cacheEntry{}, now: time.Now}
}

// cachingResolver keeps answers for cacheTTL. The lock is held only around
// map operations, never during a lookup: a slow DNS server delays the
// sessions that ask it, not the others. Two sessions asking the same name at
// once both ask the server.
type cachingResolver struct {
	next Resolver
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	val     any
	err     error
	expires time.Time
}

func (c *cachingResolver) get(key string) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return e, false
	}
	if c.now().After(e.expires) {
		delete(c.entries, key)
		return e, false
	}
	return e, true
}

func (c *cachingResolver) put(key string, val any, err error) {
	ttl := cacheTTL
	if err != nil {
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			return // temporary or unknown: ask again next time
		}
		ttl = negativeCacheTTL
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= cacheEntries {
		// Full: drop the expired ones, and if none, an arbitrary tenth
		// (map order), which bounds both memory and the time under the lock.
		now := c.now()
		for k, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < cacheEntries*9/10 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cacheEntry{val: val, err: err, expires: c.now().Add(ttl)}
}

func lookup[T any](c *cachingResolver, ctx context.Context, kind, name string, f func(context.Context, string) (T, error)) (T, error) {
	if kind != "PTR" {
		name = absolute(name)
	}
	key := kind + " " + strings.ToLower(name)
	if e, ok := c.get(key); ok {
		v, _ := e.val.(T)
		return v, e.err
	}
	v, err := f(ctx, name)
	c.put(key, v, err)
	return v, err
}

func (c *cachingResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookup(c, ctx, "TXT", name, c.next.LookupTXT)
}

func (c *cachingResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return lookup(c, ctx, "MX", name, c.next.LookupMX)
}

func (c *cachingResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return lookup(c, ctx, "A", host, c.next.LookupIPAddr)
}

func (c *cachingResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return lookup(c, ctx, "PTR", addr, c.next.LookupAddr)
}

// absolute is name with a final dot, so that the resolver asks for it
// alone: the system's resolver tries a relative name that does not exist
// with resolv.conf's search list (or the host name's domain) appended,
// and a wildcard record there (_dmarc.typo.example.org.example.net) would
// answer for a domain that has none. Postfix turns the search list off
// for its lookups (RES_DNSRCH) for the same reason. An address is left as
// it is.
func absolute(name string) string {
	if name == "" || strings.HasSuffix(name, ".") || net.ParseIP(name) != nil {
		return name
	}
	return name + "."
}

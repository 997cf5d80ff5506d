package mailauth

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// TestResolverCache: answers and "no such name" are asked once within
// their TTL, temporary failures every time; entries expire; the cache
// stays bounded.
func TestResolverCache(t *testing.T) {
	d := testenv.StartDNS(t, `a.test. TXT "x"`)
	d.ServFail("down.test")
	r := NewResolver(d.Addr).(*cachingResolver)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	ask := func(name string) int {
		before := d.Queries()
		r.LookupTXT(ctx, name)
		return d.Queries() - before
	}
	if ask("a.test") == 0 || ask("a.test") != 0 || ask("A.TEST") != 0 {
		t.Error("answer not cached")
	}
	if ask("nx.test") == 0 || ask("nx.test") != 0 {
		t.Error("NXDOMAIN not cached")
	}
	if ask("down.test") == 0 || ask("down.test") == 0 {
		t.Error("SERVFAIL cached")
	}
	now = now.Add(negativeCacheTTL + time.Second)
	if ask("nx.test") == 0 || ask("a.test") != 0 {
		t.Error("negative entry kept past its TTL, or positive one dropped before")
	}
	now = now.Add(cacheTTL)
	if ask("a.test") == 0 {
		t.Error("positive entry kept past its TTL")
	}
	for i := range cacheEntries + 100 {
		r.put(fmt.Sprintf("TXT n%d.test", i), []string{"x"}, nil)
	}
	if n := len(r.entries); n > cacheEntries {
		t.Errorf("%d entries, bound %d", n, cacheEntries)
	}
}

// namesResolver records the names it is asked.
type namesResolver struct{ asked []string }

func (n *namesResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	n.asked = append(n.asked, name)
	return []string{"v=spf1 -all"}, nil
}

func (n *namesResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	n.asked = append(n.asked, name)
	return nil, nil
}

func (n *namesResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	n.asked = append(n.asked, host)
	return nil, nil
}

func (n *namesResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	n.asked = append(n.asked, addr)
	return nil, nil
}

// Every name is asked absolute (a final dot): a relative one that does
// not exist is tried again by the system's resolver with the search list
// appended, where a wildcard would answer SPF, DKIM or DMARC for a domain
// without any. Addresses stay as they are; "x" and "x." are one entry.
func TestResolverAsksAbsoluteNames(t *testing.T) {
	next := &namesResolver{}
	r := &cachingResolver{next: next, entries: map[string]cacheEntry{}, now: time.Now}
	ctx := context.Background()
	r.LookupTXT(ctx, "_dmarc.example.org")
	r.LookupTXT(ctx, "_dmarc.example.org.")
	r.LookupMX(ctx, "example.org")
	r.LookupIPAddr(ctx, "mx.example.org")
	r.LookupIPAddr(ctx, "192.0.2.1")
	r.LookupIPAddr(ctx, "2001:db8::1")
	r.LookupAddr(ctx, "192.0.2.1")
	want := []string{"_dmarc.example.org.", "example.org.", "mx.example.org.", "192.0.2.1", "2001:db8::1", "192.0.2.1"}
	if !slices.Equal(next.asked, want) {
		t.Errorf("asked %q, want %q", next.asked, want)
	}
}

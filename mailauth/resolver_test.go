package mailauth

import (
	"context"
	"fmt"
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

package directory_test

import (
	"context"
	"fmt"
	"testing"

	"courriel/directory"
	"courriel/internal/testenv"
)

// BenchmarkResolveRecipient measures recipient resolution against a real
// slapd: cold (cache off: every lookup reaches the server) and cached.
// It reports lookups/s and LDAP searches per recipient.
func BenchmarkResolveRecipient(b *testing.B) {
	s := testenv.StartSlapd(b)
	ctx := context.Background()
	addrs := []string{"test0@hosted-domain.com", "alice@hosted-domain.com", "chain1@hosted-domain.com", "xomail@xoyize.xyz"}
	for _, mode := range []string{"cold", "cached"} {
		for _, addr := range addrs {
			b.Run(fmt.Sprintf("%s/%s", mode, addr), func(b *testing.B) {
				o := options(s)
				if mode == "cold" {
					o.CacheTTL, o.NegativeCacheTTL = -1, -1
				}
				d, err := directory.New(o)
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				// Warm the connection pool and, for "cached", the cache; domain
				// classification is per domain, so count it separately.
				if _, err := d.ResolveRecipient(ctx, addr); err != nil {
					b.Fatal(err)
				}
				start := d.Stats().Searches
				b.ResetTimer()
				for b.Loop() {
					if _, err := d.ResolveRecipient(ctx, addr); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(d.Stats().Searches-start)/float64(b.N), "searches/op")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
			})
		}
	}
	b.Run("cold-parallel/test0@hosted-domain.com", func(b *testing.B) {
		o := options(s)
		o.CacheTTL, o.NegativeCacheTTL = -1, -1
		o.PoolSize = 8
		d, _ := directory.New(o)
		defer d.Close()
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
}

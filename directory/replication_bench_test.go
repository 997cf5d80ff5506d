package directory_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"courriel/directory"
	"courriel/internal/testenv"
)

// BenchmarkReplication prints the figures of a cluster's directory, on a
// real OpenLDAP provider (syncprov) and consumer (refreshAndPersist):
//
//   - lag: N modifies of alice's mailHost on the provider, one at a time;
//     for each, from the provider's answer (committed) until the consumer
//     returns the new value (polled without pause).
//   - watcher: the same, until a Directory reading the consumer, with
//     answers cached for an hour, returns the new home node: replication,
//     the persistent sync search's notification, the flush, a new search.
//   - ttl: the same without the watcher, cache TTL 1 s: the answer changes
//     when its TTL epoch ends (uniform in [0, TTL] after replication).
//
// go test -run XXX -bench Replication -benchtime 1000x ./directory/
// (COURRIEL_BENCH_TTL_N: modifies of the ttl case, default 20).
func BenchmarkReplication(b *testing.B) {
	r := testenv.StartReplicated(b)
	ctx := context.Background()
	alice := "uid=alice," + testenv.MailBase
	pc := benchConn(b, r.Provider, testenv.AdminDN, testenv.AdminPassword)
	cc := benchConn(b, r.Consumer, testenv.ReaderDN, testenv.ReaderPassword)
	r.Provider.Modify(b, "dn: "+alice+"\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: start\n")
	r.WaitFor(b, alice, "mailHost", "start")
	seq := 0
	// modify sets a new mailHost on the provider and returns it once the
	// provider has answered.
	modify := func(b *testing.B) string {
		seq++
		v := "n" + strconv.Itoa(seq)
		req := ldap.NewModifyRequest(alice, nil)
		req.Replace("mailHost", []string{v})
		if err := pc.Modify(req); err != nil {
			b.Fatal(err)
		}
		return v
	}
	// measure runs n modifies and waits after each until seen(v).
	measure := func(b *testing.B, n int, seen func(v string) bool) []time.Duration {
		lags := make([]time.Duration, 0, n)
		for range n {
			v := modify(b)
			t0 := time.Now()
			deadline := t0.Add(30 * time.Second)
			for !seen(v) {
				if time.Now().After(deadline) {
					b.Fatalf("%s not seen after 30 s", v)
				}
			}
			lags = append(lags, time.Since(t0))
		}
		return lags
	}

	b.Run("lag", func(b *testing.B) {
		lags := measure(b, b.N, func(v string) bool {
			res, err := cc.Search(ldap.NewSearchRequest(alice, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 10, false,
				"(objectClass=*)", []string{"mailHost"}, nil))
			if err != nil {
				b.Fatal(err)
			}
			return len(res.Entries) == 1 && res.Entries[0].GetAttributeValue("mailHost") == v
		})
		report(b, "replication lag (provider commit → consumer returns the value)", lags)
	})

	lookup := func(b *testing.B, d *directory.Directory) func(string) bool {
		return func(v string) bool {
			u, err := d.LookupUser(ctx, "alice")
			if err != nil {
				b.Fatal(err)
			}
			return u.Node == v
		}
	}
	b.Run("watcher", func(b *testing.B) {
		o := replicaOptions(r)
		d, err := directory.New(o)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		w := d.NewWatcher(nil)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { w.Run(wctx); close(done) }()
		defer func() { cancel(); <-done }()
		for deadline := time.Now().Add(30 * time.Second); !w.Status().Connected; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatal("watcher not connected")
			}
		}
		before := d.Stats()
		lags := measure(b, b.N, lookup(b, d))
		after := d.Stats()
		report(b, "courriel sees the change with the watcher (cache TTL 1 h)", lags)
		fmt.Printf("    lookups answered from the cache meanwhile: %d, LDAP searches: %d\n",
			after.CacheHits-before.CacheHits, after.Searches-before.Searches)
	})

	b.Run("ttl", func(b *testing.B) {
		n := 20
		if s := os.Getenv("COURRIEL_BENCH_TTL_N"); s != "" {
			n, _ = strconv.Atoi(s)
		}
		o := replicaOptions(r)
		o.CacheTTL, o.NegativeCacheTTL = time.Second, time.Second
		d, err := directory.New(o)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		// n modifies whatever b.N: each waits up to a TTL.
		lags := measure(b, n, lookup(b, d))
		report(b, "courriel sees the change without the watcher (cache TTL 1 s)", lags)
	})
}

func benchConn(b *testing.B, s *testenv.Slapd, dn, pw string) *ldap.Conn {
	b.Helper()
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(dn, pw); err != nil {
		b.Fatal(err)
	}
	return c
}

// report prints p50/p99/max of lags and adds them to the benchmark line.
func report(b *testing.B, what string, lags []time.Duration) {
	if len(lags) == 0 {
		return
	}
	s := slices.Clone(lags)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	fmt.Printf("%s, %d modifies: p50 %v  p99 %v  max %v\n", what, len(s),
		pct(0.50).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), s[len(s)-1].Round(time.Microsecond))
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
}

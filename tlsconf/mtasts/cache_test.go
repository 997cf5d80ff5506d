package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// policyServer is the HTTPS server of mta-sts.<domain> on loopback, with a
// certificate from the test CA for the names given.
type policyServer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	body    string
	ctype   string
	status  int
	fetches atomic.Int32
}

func newPolicyServer(t *testing.T, ca *testenv.CA, names ...string) *policyServer {
	ps := &policyServer{ctype: "text/plain; charset=utf-8", status: 200}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.fetches.Add(1)
		ps.mu.Lock()
		body, ctype, status := ps.body, ps.ctype, ps.status
		ps.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		if status == http.StatusFound {
			http.Redirect(w, r, "https://elsewhere.test/", status)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, names...)}}
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *policyServer) set(body, ctype string, status int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.body, ps.ctype, ps.status = body, ctype, status
}

// dialer sends every connection to the policy server, whatever the name:
// the DNS of mta-sts.<domain> is not what is under test.
func (ps *policyServer) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	target := ps.srv.Listener.Addr().String()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !strings.HasSuffix(addr, ":443") {
			return nil, errors.New("not 443")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
}

const enforcePolicy = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"

func newCache(t *testing.T, dir string, dns *testenv.DNS, ca *testenv.CA, ps *policyServer, now func() time.Time) *Cache {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dns.Addr)
	}}
	c, err := New(Options{Dir: dir, Resolver: r, RootCAs: ca.Pool(), DialContext: ps.dialer(), FetchTimeout: 5 * time.Second, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCacheFetchPersistAndRefresh(t *testing.T) {
	ca := testenv.NewCA(t)
	dns := testenv.StartDNS(t, `_mta-sts.example.test. TXT "v=STSv1; id=one"`)
	ps := newPolicyServer(t, ca, "mta-sts.example.test")
	ps.set(enforcePolicy, "text/plain", 200)
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	c := newCache(t, dir, dns, ca, ps, clock)
	ctx := context.Background()

	res := c.Get(ctx, "example.test")
	if res.Policy == nil || res.Policy.Mode != ModeEnforce || !res.Policy.Match("mx.example.test") || res.Err != nil {
		t.Fatalf("first Get: %+v", res)
	}
	// Same id, fresh: no fetch.
	if res := c.Get(ctx, "example.test"); res.Policy == nil || !res.Cached || ps.fetches.Load() != 1 {
		t.Fatalf("second Get: %+v, fetches %d", res, ps.fetches.Load())
	}
	// A restart: a new cache on the same directory, the policy host down.
	ps.set("", "text/plain", 500)
	dns.Remove("_mta-sts.example.test")
	dns.Set(t, `_mta-sts.example.test. TXT "v=STSv1; id=two"`)
	c2 := newCache(t, dir, dns, ca, ps, clock)
	res = c2.Get(ctx, "example.test")
	if res.Policy == nil || res.Policy.Mode != ModeEnforce || res.Err == nil || !res.Cached {
		t.Fatalf("after restart with the host down: %+v", res)
	}
	if ps.fetches.Load() != 2 {
		t.Fatalf("id changed but no fetch tried: %d", ps.fetches.Load())
	}
	// A host that just failed is not asked again at once.
	if res := c2.Get(ctx, "example.test"); res.Policy == nil || ps.fetches.Load() != 2 {
		t.Fatalf("asked the failed host again at once: %+v, %d fetches", res, ps.fetches.Load())
	}
	// The host back with a testing policy under the new id.
	ps.set(strings.Replace(enforcePolicy, "enforce", "testing", 1), "text/plain", 200)
	now = now.Add(6 * time.Minute)
	if res := c2.Get(ctx, "example.test"); res.Policy == nil || res.Policy.Mode != ModeTesting || res.Cached {
		t.Fatalf("after the host came back: %+v", res)
	}
	// Near expiry the policy is fetched again although the id is the same.
	now = now.Add(23 * time.Hour)
	before := ps.fetches.Load()
	if res := c2.Get(ctx, "example.test"); res.Policy == nil || ps.fetches.Load() != before+1 {
		t.Fatalf("near expiry: %+v, fetches %d→%d", res, before, ps.fetches.Load())
	}
	// Past expiry with the host down and the record gone: no policy.
	ps.set("", "text/plain", 500)
	dns.Remove("_mta-sts.example.test")
	now = now.Add(48 * time.Hour)
	if res := c2.Get(ctx, "example.test"); res.Policy != nil {
		t.Fatalf("expired policy still applied: %+v", res)
	}
}

func TestCacheRefusesBadFetches(t *testing.T) {
	ca := testenv.NewCA(t)
	dns := testenv.StartDNS(t, `_mta-sts.example.test. TXT "v=STSv1; id=one"`)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		certFor string
		body    string
		ctype   string
		status  int
		invalid bool
		webpki  bool
	}{
		{name: "certificate for another name", certFor: "other.test", body: enforcePolicy, ctype: "text/plain", status: 200, webpki: true},
		{name: "redirect", certFor: "mta-sts.example.test", status: http.StatusFound},
		{name: "not found", certFor: "mta-sts.example.test", body: enforcePolicy, ctype: "text/plain", status: 404},
		{name: "html", certFor: "mta-sts.example.test", body: enforcePolicy, ctype: "text/html", status: 200},
		{name: "huge", certFor: "mta-sts.example.test", body: enforcePolicy + strings.Repeat("x: y\n", 20000), ctype: "text/plain", status: 200},
		{name: "bad syntax", certFor: "mta-sts.example.test", body: "version: STSv1\nmode: enforce\n", ctype: "text/plain", status: 200, invalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := newPolicyServer(t, ca, tc.certFor)
			ps.set(tc.body, tc.ctype, tc.status)
			c := newCache(t, t.TempDir(), dns, ca, ps, time.Now)
			res := c.Get(ctx, "example.test")
			var fe *FetchError
			if res.Policy != nil || !errors.As(res.Err, &fe) {
				t.Fatalf("got %+v", res)
			}
			if fe.Invalid != tc.invalid || fe.WebPKI != tc.webpki {
				t.Errorf("classified invalid=%v webpki=%v: %v", fe.Invalid, fe.WebPKI, fe)
			}
		})
	}
}

func TestCacheNoRecord(t *testing.T) {
	ca := testenv.NewCA(t)
	dns := testenv.StartDNS(t, `example.test. TXT "v=spf1 -all"`)
	ps := newPolicyServer(t, ca, "mta-sts.example.test")
	ps.set(enforcePolicy, "text/plain", 200)
	c := newCache(t, t.TempDir(), dns, ca, ps, time.Now)
	if res := c.Get(context.Background(), "example.test"); res.Policy != nil || res.Err != nil || ps.fetches.Load() != 0 {
		t.Fatalf("got %+v after %d fetches", res, ps.fetches.Load())
	}
	// Hostile domain names never reach the file system or a URL.
	if res := c.Get(context.Background(), "../../etc/passwd"); res.Policy != nil {
		t.Fatal("path accepted")
	}
}

// Refetch asks the policy host again under an unchanged TXT id, at most
// once per policy id every refetchEvery.
func TestCacheRefetch(t *testing.T) {
	ca := testenv.NewCA(t)
	dns := testenv.StartDNS(t, `_mta-sts.example.test. TXT "v=STSv1; id=one"`)
	ps := newPolicyServer(t, ca, "mta-sts.example.test")
	ps.set(enforcePolicy, "text/plain", 200)
	now := time.Now()
	c := newCache(t, t.TempDir(), dns, ca, ps, func() time.Time { return now })
	ctx := context.Background()
	if res := c.Get(ctx, "example.test"); res.Policy == nil || ps.fetches.Load() != 1 {
		t.Fatalf("first Get: %+v", res)
	}
	// The domain moved its MX and its policy, the TXT id unchanged.
	moved := strings.Replace(enforcePolicy, "mx.example.test", "mx2.example.test", 1)
	ps.set(moved, "text/plain", 200)
	if res := c.Get(ctx, "example.test"); !res.Cached || res.Policy.Match("mx2.example.test") {
		t.Fatalf("Get under the same id fetched: %+v", res)
	}
	// Just fetched: not asked again yet.
	if res := c.Refetch(ctx, "example.test"); !res.Cached || ps.fetches.Load() != 1 {
		t.Fatalf("Refetch right after the fetch: %+v, %d fetches", res, ps.fetches.Load())
	}
	now = now.Add(refetchEvery)
	res := c.Refetch(ctx, "example.test")
	if res.Cached || res.Policy == nil || !res.Policy.Match("mx2.example.test") || ps.fetches.Load() != 2 {
		t.Fatalf("Refetch: %+v, %d fetches", res, ps.fetches.Load())
	}
	if res := c.Get(ctx, "example.test"); !res.Cached || !res.Policy.Match("mx2.example.test") {
		t.Fatalf("the refetched policy is not the cached one: %+v", res)
	}
	// Again at once: the host is not asked.
	if res := c.Refetch(ctx, "example.test"); !res.Cached || ps.fetches.Load() != 2 {
		t.Fatalf("second Refetch at once: %+v, %d fetches", res, ps.fetches.Load())
	}
	now = now.Add(refetchEvery - time.Second)
	if c.Refetch(ctx, "example.test"); ps.fetches.Load() != 2 {
		t.Fatalf("Refetch before refetchEvery asked the host: %d fetches", ps.fetches.Load())
	}
	now = now.Add(2 * time.Second)
	if c.Refetch(ctx, "example.test"); ps.fetches.Load() != 3 {
		t.Fatalf("Refetch after refetchEvery did not ask the host: %d fetches", ps.fetches.Load())
	}
	// A host that is down: the cached policy stays, with the error.
	ps.set("", "text/plain", 500)
	now = now.Add(refetchEvery)
	if res := c.Refetch(ctx, "example.test"); res.Policy == nil || !res.Cached || res.Err == nil || !res.Policy.Match("mx2.example.test") {
		t.Fatalf("Refetch with the host down: %+v", res)
	}
}

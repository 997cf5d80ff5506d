package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"courriel/tlsconf"
)

// TestMain turns off pebble's random validation sleeps and bad-nonce
// injection, which it reads only from the environment (set once here, before
// any test runs, so the tests can stay parallel).
func TestMain(m *testing.M) {
	os.Setenv("PEBBLE_VA_NOSLEEP", "1")
	os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	os.Exit(m.Run())
}

const acmeHost = "mail.courriel.test"

// testPebble is an in-process pebble ACME server on loopback whose VA
// resolves every name to 127.0.0.1 and validates TLS-ALPN-01 on tlsPort.
type testPebble struct {
	srv    *httptest.Server
	ca     *ca.CAImpl
	orders atomic.Int64 // newOrder requests
	trust  *x509.CertPool
}

func startPebble(t *testing.T, tlsPort int) *testPebble {
	t.Helper()
	logger := log.New(io.Discard, "", 0) // pebble's goroutines outlive the test
	store := db.NewMemoryStore()
	p := &testPebble{}
	p.ca = ca.New(logger, store, "", "ecdsa", 0, 1,
		map[string]ca.Profile{"default": {Description: "test"}})
	v := va.New(logger, 0, tlsPort, false, startDNS(t), store)
	w := wfe.New(logger, store, v, p.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := w.Handler()
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.orders.Add(1)
		}
		h.ServeHTTP(rw, r)
	}))
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	p.trust = x509.NewCertPool()
	p.trust.AddCert(p.ca.GetRootCert(0).Cert)
	return p
}

func (p *testPebble) apiRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.srv.Certificate())
	return pool
}

// startDNS answers every A query over TCP (pebble's VA resolver uses TCP)
// with 127.0.0.1, and every other query with an empty NOERROR (RFC 1035
// §4.1). It returns its address.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveDNS(c)
		}
	}()
	return ln.Addr().String()
}

func serveDNS(c net.Conn) {
	defer c.Close()
	for {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil || len(q) < 12 {
			return
		}
		// Question: labels up to the root label, then QTYPE and QCLASS.
		i := 12
		for i < len(q) && q[i] != 0 {
			i += int(q[i]) + 1
		}
		if i+5 > len(q) {
			return
		}
		question := q[12 : i+5]
		qtype := binary.BigEndian.Uint16(q[i+1:])
		r := make([]byte, 12, 64)
		copy(r, q[:2])                                              // ID
		binary.BigEndian.PutUint16(r[2:], 0x8400|uint16(q[2]&1)<<8) // QR, AA, RD echoed
		binary.BigEndian.PutUint16(r[4:], 1)                        // QDCOUNT
		r = append(r, question...)
		if qtype == 1 { // A
			binary.BigEndian.PutUint16(r[6:], 1) // ANCOUNT
			r = append(r, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
		}
		var out [2]byte
		binary.BigEndian.PutUint16(out[:], uint16(len(r)))
		if _, err := c.Write(append(out[:], r...)); err != nil {
			return
		}
	}
}

// serveTLS serves cfg on ln: each connection is handshaken, then drained.
func serveTLS(t *testing.T, ln net.Listener, cfg *tls.Config) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					_, _ = io.Copy(io.Discard, tc)
				}
			}()
		}
	}()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// acmeDial handshakes with cfg and returns the state.
func acmeDial(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func TestACMEObtainServeAndCache(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	addr := ln.Addr().String()
	p := startPebble(t, ln.Addr().(*net.TCPAddr).Port)
	cacheDir := filepath.Join(t.TempDir(), "acme")
	logger, logs := newLogger(t)
	opts := tlsconf.ACMEOptions{
		DirectoryURL: p.srv.URL + "/dir",
		Email:        "postmaster@courriel.test",
		Hostnames:    []string{"Mail.Courriel.Test."},
		CacheDir:     cacheDir,
		RootCAs:      p.apiRoots(),
		Logger:       logger,
	}
	m, err := tlsconf.NewACME(opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := m.ServerConfig()
	if cfg.MinVersion != tls.VersionTLS12 || len(cfg.NextProtos) != 0 || cfg.GetConfigForClient == nil {
		t.Fatalf("ServerConfig: MinVersion %x NextProtos %q GetConfigForClient set %v",
			cfg.MinVersion, cfg.NextProtos, cfg.GetConfigForClient != nil)
	}
	serveTLS(t, ln, cfg)
	if m.Certificate() != nil {
		t.Fatal("Certificate before Obtain is not nil")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := m.Obtain(ctx); err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d orders after Obtain, want 1", n)
	}
	if !strings.Contains(logs.String(), "ACME certificate in service") {
		t.Fatal("issuance not logged")
	}

	// A verifying client, with SNI, trusting only pebble's root.
	st, err := acmeDial(addr, &tls.Config{ServerName: acmeHost, RootCAs: p.trust, NextProtos: []string{"imap"}})
	if err != nil {
		t.Fatalf("verifying handshake: %v", err)
	}
	leaf := st.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeHost {
		t.Fatalf("served names %q", leaf.DNSNames)
	}
	if st.NegotiatedProtocol != "" {
		t.Fatalf("negotiated %q with a normal client", st.NegotiatedProtocol)
	}
	if got := m.Certificate(); got == nil || !got.Equal(leaf) {
		t.Fatal("Certificate() is not the served leaf")
	}

	// No SNI (IP literal), and an unknown SNI: the same certificate, and
	// nothing ordered for the unknown name.
	for _, sni := range []string{"", "other.courriel.test"} {
		st, err := acmeDial(addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("SNI %q: %v", sni, err)
		}
		if !st.PeerCertificates[0].Equal(leaf) {
			t.Fatalf("SNI %q: served %q", sni, st.PeerCertificates[0].DNSNames)
		}
	}

	// A challenge connection for a name outside Hostnames is refused.
	if _, err := acmeDial(addr, &tls.Config{ServerName: "other.courriel.test", InsecureSkipVerify: true,
		NextProtos: []string{"acme-tls/1"}}); err == nil {
		t.Fatal("acme-tls/1 handshake for a foreign name succeeded")
	}
	_, err = m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.courriel.test",
		SupportedProtos: []string{"acme-tls/1"}})
	var hna *tlsconf.HostNotAllowedError
	if !errors.Is(err, tlsconf.ErrHostNotAllowed) || !errors.As(err, &hna) || hna.Name != "other.courriel.test" {
		t.Fatalf("foreign challenge: %v", err)
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d orders after foreign names, want 1", n)
	}
	checkCachePerms(t, cacheDir)

	// Stop the CA: a second Manager on the same cache serves the same
	// certificate without it.
	p.srv.Close()
	m2, err := tlsconf.NewACME(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln2 := listen(t)
	serveTLS(t, ln2, m2.ServerConfig())
	st, err = acmeDial(ln2.Addr().String(), &tls.Config{ServerName: acmeHost, RootCAs: p.trust})
	if err != nil {
		t.Fatalf("handshake with the cached certificate: %v", err)
	}
	if !st.PeerCertificates[0].Equal(leaf) {
		t.Fatal("second Manager served another certificate")
	}
	if err := m2.Obtain(ctx); err != nil {
		t.Fatalf("Obtain from cache: %v", err)
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}

func checkCachePerms(t *testing.T, dir string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 { // account key, certificate
		t.Fatalf("%d files in the cache", files)
	}
}

// A CA that refuses is not asked again on every handshake. (A CA that
// answers 5xx is retried by the acme client within autocert's 5-minute
// bound; a permanent 4xx error ends the attempt at once.)
func TestACMEFailureBackoff(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "refused", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	logger, logs := newLogger(t)
	m, err := tlsconf.NewACME(tlsconf.ACMEOptions{
		DirectoryURL: srv.URL + "/dir",
		Hostnames:    []string{acmeHost},
		CacheDir:     t.TempDir(),
		RootCAs:      pool,
		Logger:       logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Obtain(ctx); err == nil {
		t.Fatal("Obtain succeeded against a failing CA")
	}
	first := hits.Load()
	if first == 0 {
		t.Fatal("the CA was not contacted")
	}
	_, err = m.GetCertificate(&tls.ClientHelloInfo{ServerName: acmeHost})
	if err == nil || !strings.Contains(err.Error(), "retrying after") {
		t.Fatalf("handshake during backoff: %v", err)
	}
	if hits.Load() != first {
		t.Fatal("the CA was contacted again during the backoff")
	}
	if n := strings.Count(logs.String(), "cannot obtain a certificate"); n != 1 {
		t.Fatalf("failure logged %d times, want once", n)
	}
}

func TestNewACMEOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ok := tlsconf.ACMEOptions{DirectoryURL: "https://127.0.0.1:1/dir", Hostnames: []string{acmeHost}, CacheDir: dir}
	tests := []struct {
		name string
		edit func(*tlsconf.ACMEOptions)
		ok   bool
	}{
		{"valid", func(*tlsconf.ACMEOptions) {}, true},
		{"trailing dot and case", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{"MAIL.courriel.test."} }, true},
		{"no directory", func(o *tlsconf.ACMEOptions) { o.DirectoryURL = "" }, false},
		{"plain http", func(o *tlsconf.ACMEOptions) { o.DirectoryURL = "http://127.0.0.1:1/dir" }, false},
		{"no cache", func(o *tlsconf.ACMEOptions) { o.CacheDir = "" }, false},
		{"no names", func(o *tlsconf.ACMEOptions) { o.Hostnames = nil }, false},
		{"IP literal", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{"192.0.2.1"} }, false},
		{"wildcard", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{"*.courriel.test"} }, false},
		{"single label", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{"localhost"} }, false},
		{"unicode", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{"mél.courriel.test"} }, false},
		{"empty label", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{"mail..test"} }, false},
		{"hyphen edge", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{"-mail.courriel.test"} }, false},
		{"long label", func(o *tlsconf.ACMEOptions) { o.Hostnames = []string{strings.Repeat("a", 64) + ".test"} }, false},
		{"cache is a file", func(o *tlsconf.ACMEOptions) {
			f := filepath.Join(dir, "file")
			_ = os.WriteFile(f, nil, 0o600)
			o.CacheDir = f
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			m, err := tlsconf.NewACME(o)
			if tc.ok != (err == nil) {
				t.Fatalf("NewACME: %v, want ok=%v", err, tc.ok)
			}
			if err == nil && m.Certificate() != nil {
				t.Fatal("a certificate before any handshake")
			}
		})
	}
	// A cache directory open to others is narrowed to 0700.
	wide := filepath.Join(dir, "wide")
	if err := os.Mkdir(wide, 0o755); err != nil {
		t.Fatal(err)
	}
	o := ok
	o.CacheDir = wide
	if _, err := tlsconf.NewACME(o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(wide); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir mode %v, %v", fi.Mode().Perm(), err)
	}
}

// Without Obtain, the first client's handshake orders the certificate.
func TestACMELazyOnHandshake(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	p := startPebble(t, ln.Addr().(*net.TCPAddr).Port)
	logger, _ := newLogger(t)
	m, err := tlsconf.NewACME(tlsconf.ACMEOptions{
		DirectoryURL: p.srv.URL + "/dir",
		Hostnames:    []string{acmeHost},
		CacheDir:     t.TempDir(),
		RootCAs:      p.apiRoots(),
		Logger:       logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	serveTLS(t, ln, m.ServerConfig())
	st, err := acmeDial(ln.Addr().String(), &tls.Config{ServerName: acmeHost, RootCAs: p.trust})
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	if names := st.PeerCertificates[0].DNSNames; len(names) != 1 || names[0] != acmeHost {
		t.Fatalf("served names %q", names)
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}

package tlsconf_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/tlsconf"
)

func TestNewErrors(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	good := ca.issue(t, leafOpts{})
	other := ca.issue(t, leafOpts{})
	now := time.Now()
	expired := ca.issue(t, leafOpts{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})
	future := ca.issue(t, leafOpts{notBefore: now.Add(time.Hour), notAfter: now.Add(48 * time.Hour)})
	weak := ca.issue(t, leafOpts{rsaBits: 1024})

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(ecKey)
	// Deprecated API on purpose: legacy encrypted PEM is what old tools
	// (openssl genrsa -aes128) write, and it must be recognised.
	encBlock, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", der, []byte("pw"), x509.PEMCipherAES128)
	if err != nil {
		t.Fatal(err)
	}
	encrypted := pem.EncodeToMemory(encBlock)
	pkcs8Enc := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0}})
	junkCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	junkKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER")})

	tests := []struct {
		name     string
		cert     []byte // nil: file absent
		key      []byte
		certDir  bool // the cert path is a directory
		want     error
		wantFile string // "cert" or "key": the file named in the error
		wantText string
		// wantOrder: the error says the server's certificate comes first
		wantOrder bool
	}{
		{name: "missing cert", cert: nil, key: good.keyPEM, want: tlsconf.ErrMissing, wantFile: "cert"},
		{name: "missing key", cert: good.certPEM, key: nil, want: tlsconf.ErrMissing, wantFile: "key"},
		{name: "cert is a directory", certDir: true, key: good.keyPEM, want: tlsconf.ErrUnreadable, wantFile: "cert"},
		{name: "cert not PEM", cert: []byte("hello\n"), key: good.keyPEM, want: tlsconf.ErrBadPEM, wantFile: "cert", wantText: "no PEM CERTIFICATE block"},
		{name: "cert empty", cert: []byte{}, key: good.keyPEM, want: tlsconf.ErrBadPEM, wantFile: "cert"},
		{name: "cert block not DER", cert: junkCert, key: good.keyPEM, want: tlsconf.ErrBadPEM, wantFile: "cert", wantText: "certificate #1"},
		{name: "paths swapped", cert: good.keyPEM, key: good.certPEM, want: tlsconf.ErrBadPEM, wantFile: "cert", wantText: "swapped"},
		{name: "key not PEM", cert: good.certPEM, key: []byte("hello\n"), want: tlsconf.ErrBadPEM, wantFile: "key", wantText: "no PEM PRIVATE KEY block"},
		{name: "key block not DER", cert: good.certPEM, key: junkKey, want: tlsconf.ErrBadPEM, wantFile: "key"},
		{name: "key encrypted legacy", cert: good.certPEM, key: encrypted, want: tlsconf.ErrBadPEM, wantFile: "key", wantText: "encrypted"},
		{name: "key encrypted pkcs8", cert: good.certPEM, key: pkcs8Enc, want: tlsconf.ErrBadPEM, wantFile: "key", wantText: "encrypted"},
		{name: "key of another cert", cert: good.certPEM, key: other.keyPEM, want: tlsconf.ErrKeyMismatch, wantFile: "key", wantText: "does not belong"},
		// cat chain.pem cert.pem: refused, as OpenSSL refuses it for
		// Postfix and Dovecot, with the order to fix.
		{name: "chain with the leaf last", cert: append(append([]byte(nil), ca.pem...), good.certPEM...), key: good.keyPEM, want: tlsconf.ErrKeyMismatch, wantFile: "key",
			wantText: "key belongs to certificate #2 of", wantOrder: true},
		{name: "weak RSA key", cert: weak.certPEM, key: weak.keyPEM, want: tlsconf.ErrWeakKey, wantFile: "key", wantText: "1024 bits"},
		{name: "expired", cert: expired.certPEM, key: expired.keyPEM, want: tlsconf.ErrExpired, wantFile: "cert"},
		{name: "not yet valid", cert: future.certPEM, key: future.keyPEM, want: tlsconf.ErrNotYetValid, wantFile: "cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
			if tt.certDir {
				if err := os.Mkdir(certFile, 0o700); err != nil {
					t.Fatal(err)
				}
			} else if tt.cert != nil {
				writeFile(t, certFile, tt.cert)
			}
			if tt.key != nil {
				writeFile(t, keyFile, tt.key)
			}
			m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
			if err == nil {
				t.Fatalf("New succeeded (%v), want %v", m.Certificate().Subject, tt.want)
			}
			t.Log(err)
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q is not %v", err, tt.want)
			}
			for _, kind := range []error{tlsconf.ErrMissing, tlsconf.ErrUnreadable, tlsconf.ErrBadPEM,
				tlsconf.ErrKeyMismatch, tlsconf.ErrExpired, tlsconf.ErrNotYetValid, tlsconf.ErrWeakKey} {
				if kind != tt.want && errors.Is(err, kind) {
					t.Errorf("error %q is also %v", err, kind)
				}
			}
			var fe *tlsconf.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FileError", err)
			}
			wantPath := certFile
			if tt.wantFile == "key" {
				wantPath = keyFile
			}
			if fe.File != wantPath || !strings.Contains(err.Error(), wantPath) {
				t.Errorf("error names %q (%q), want %q", fe.File, err, wantPath)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not say %q", err, tt.wantText)
			}
			if order := strings.Contains(err.Error(), "the server's certificate first, then its intermediates"); order != tt.wantOrder {
				t.Errorf("error %q says the order is at fault: %v, want %v", err, order, tt.wantOrder)
			}
			if tt.want == tlsconf.ErrMissing && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q is not fs.ErrNotExist", err)
			}
		})
	}
}

func TestExpirySoonWarning(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	for _, tt := range []struct {
		left time.Duration
		warn bool
	}{
		{13 * 24 * time.Hour, true},
		{15 * 24 * time.Hour, false},
	} {
		p := ca.issue(t, leafOpts{notAfter: time.Now().Add(tt.left)})
		certFile, keyFile := writePair(t, t.TempDir(), p)
		log, buf := newLogger(t)
		if _, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Logger: log}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(buf.String(), "expires soon"); got != tt.warn {
			t.Errorf("%v left: warned %v, want %v", tt.left, got, tt.warn)
		}
	}
}

func TestNewRequiresBothFiles(t *testing.T) {
	t.Parallel()
	for _, o := range []tlsconf.Options{{}, {CertFile: "c.pem"}, {KeyFile: "k.pem"}} {
		if _, err := tlsconf.New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

func TestNewValidityUsesClock(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	p := ca.issue(t, leafOpts{})
	certFile, keyFile := writePair(t, t.TempDir(), p)
	for _, tt := range []struct {
		now  time.Time
		want error
	}{
		{p.leaf.NotBefore.Add(-time.Second), tlsconf.ErrNotYetValid},
		{p.leaf.NotBefore.Add(time.Second), nil},
		{p.leaf.NotAfter.Add(-time.Second), nil},
		{p.leaf.NotAfter.Add(time.Second), tlsconf.ErrExpired},
	} {
		_, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Now: func() time.Time { return tt.now }})
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("at %v: err = %v, want %v", tt.now, err, tt.want)
		}
	}
}

func TestNewCombinedFileAndChain(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	p := ca.issue(t, leafOpts{})
	// Key first, then leaf, then the CA: the leaf is the first certificate.
	both := filepath.Join(t.TempDir(), "both.pem")
	writeFile(t, both, append(append(append([]byte(nil), p.keyPEM...), p.certPEM...), ca.pem...))
	m, err := tlsconf.New(tlsconf.Options{CertFile: both, KeyFile: both})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Certificate().SerialNumber; got.Cmp(p.leaf.SerialNumber) != 0 {
		t.Errorf("leaf serial %v, want %v", got, p.leaf.SerialNumber)
	}
	// The chain is served whole.
	addr := serveEcho(t, m.ServerConfig())
	c, err := dial(t, addr, tlsconfClient(ca))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.ConnectionState().PeerCertificates); n != 2 {
		t.Errorf("served %d certificates, want leaf + CA", n)
	}
}

func TestNewHostnameWarnings(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	p := ca.issue(t, leafOpts{names: []string{"mail.example.org", "192.0.2.1"}})
	certFile, keyFile := writePair(t, t.TempDir(), p)
	tests := []struct {
		hostnames []string
		warn      string // "" no warning
	}{
		{[]string{"mail.example.org"}, ""},
		{[]string{"MAIL.example.org.", "192.0.2.1"}, ""},
		{[]string{"mail.example.org", "imap.example.net"}, "hostnames=imap.example.net "},
		{[]string{"192.0.2.2"}, "hostnames=192.0.2.2 "},
	}
	for _, tt := range tests {
		log, buf := newLogger(t)
		if _, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Hostnames: tt.hostnames, Logger: log}); err != nil {
			t.Fatal(err)
		}
		got := buf.String()
		warned := strings.Contains(got, "not valid for these host names")
		if warned != (tt.warn != "") || !strings.Contains(got, tt.warn) {
			t.Errorf("hostnames %v: log\n%s\nwant warning %q", tt.hostnames, got, tt.warn)
		}
	}
	if bad := tlsconf.CheckHostnames(p.leaf, []string{"mail.example.org", "x.example.org", "", "[192.0.2.1]"}); len(bad) != 1 || bad[0] != "x.example.org" {
		t.Errorf("CheckHostnames = %q, want [x.example.org]", bad)
	}
}

// managedServer starts an echo server with a Manager over freshly written
// files and returns what tests need to swap them.
type managedServer struct {
	ca                *testCA
	m                 *tlsconf.Manager
	addr              string
	certFile, keyFile string
	first             testPair
	log               *logBuffer
}

func newManagedServer(t *testing.T, o tlsconf.Options) *managedServer {
	t.Helper()
	s := &managedServer{ca: newTestCA(t, "test CA")}
	s.first = s.ca.issue(t, leafOpts{})
	s.certFile, s.keyFile = writePair(t, t.TempDir(), s.first)
	o.CertFile, o.KeyFile = s.certFile, s.keyFile
	o.Logger, s.log = newLogger(t)
	m, err := tlsconf.New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.m = m
	s.addr = serveEcho(t, m.ServerConfig())
	return s
}

func (s *managedServer) served(t *testing.T) string {
	t.Helper()
	return servedSerial(t, s.addr, s.ca.pool()).String()
}

func TestRenewedCertificateServedWithoutRestart(t *testing.T) {
	t.Parallel()
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: 0})
	old, err := dial(t, s.addr, tlsconfClient(s.ca))
	if err != nil {
		t.Fatal(err)
	}
	echo(t, old, "before renewal")
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(s.first.leaf.SerialNumber) != 0 {
		t.Fatalf("first handshake served %v, want %v", got, s.first.leaf.SerialNumber)
	}

	renewed := s.ca.issue(t, leafOpts{})
	writePair(t, filepath.Dir(s.certFile), renewed)

	if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
		t.Errorf("after renewal served %s, want %s", got, want)
	}
	if got := s.m.Certificate().SerialNumber; got.Cmp(renewed.leaf.SerialNumber) != 0 {
		t.Errorf("Certificate() = %v, want %v", got, renewed.leaf.SerialNumber)
	}
	echo(t, old, "after renewal") // the connection opened before still works
}

func TestInPlaceRewriteNoticed(t *testing.T) {
	t.Parallel()
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: 0})
	renewed := s.ca.issue(t, leafOpts{})
	// Same inode, truncate and rewrite (cp, a shell redirection).
	for _, f := range []struct {
		path string
		data []byte
	}{{s.keyFile, renewed.keyPEM}, {s.certFile, renewed.certPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
		t.Errorf("after rewrite served %s, want %s", got, want)
	}
}

func TestHalfUpdatedPairKeepsOld(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Now()}
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: 0, Now: clock.now})
	later := &laterFuncs{}
	s.m.SetAfterFunc(later.afterFunc)
	renewed := s.ca.issue(t, leafOpts{})

	// The renewal tool wrote the new key; the certificate is not there
	// yet, and does not come: once the files have stood still, that is
	// an error (TestCertbotSymlinkSwapSettles: before).
	writeFile(t, s.keyFile, renewed.keyPEM)
	for range 2 {
		if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
			t.Fatalf("half-updated: served %s, want the old %s", got, want)
		}
	}
	if strings.Contains(s.log.String(), "still serving the previous one") {
		t.Errorf("logged as an error before the files stood still:\n%s", s.log)
	}
	delays, retry := later.take()
	if len(retry) != 1 {
		t.Fatalf("second look asked for %d times, want once", len(retry))
	}
	clock.add(delays[0])
	retry[0]()
	for range 2 {
		if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
			t.Fatalf("half-updated: served %s, want the old %s", got, want)
		}
	}
	if n := strings.Count(s.log.String(), "still serving the previous one"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, s.log)
	}
	if !strings.Contains(s.log.String(), "private key does not match") {
		t.Errorf("log does not give the reason:\n%s", s.log)
	}

	// Then the certificate: the pair is whole again and served.
	writeFile(t, s.certFile, renewed.certPEM)
	if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
		t.Errorf("completed: served %s, want %s", got, want)
	}
}

func TestReloadRejectsExpiredAndMissing(t *testing.T) {
	t.Parallel()
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: 0})
	now := time.Now()
	expired := s.ca.issue(t, leafOpts{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})
	writePair(t, filepath.Dir(s.certFile), expired)
	if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
		t.Errorf("expired renewal: served %s, want the old %s", got, want)
	}
	if err := s.m.Reload(); !errors.Is(err, tlsconf.ErrExpired) {
		t.Errorf("Reload() = %v, want ErrExpired", err)
	}
	if err := os.Remove(s.certFile); err != nil {
		t.Fatal(err)
	}
	if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
		t.Errorf("missing file: served %s, want the old %s", got, want)
	}
	if err := s.m.Reload(); !errors.Is(err, tlsconf.ErrMissing) {
		t.Errorf("Reload() = %v, want ErrMissing", err)
	}
	if got := s.m.Certificate().SerialNumber; got.Cmp(s.first.leaf.SerialNumber) != 0 {
		t.Errorf("Certificate() = %v after failed reloads, want the old %v", got, s.first.leaf.SerialNumber)
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	// Negative interval: handshakes never look at the files, only Reload.
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: -1})
	renewed := s.ca.issue(t, leafOpts{})
	writePair(t, filepath.Dir(s.certFile), renewed)
	if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
		t.Fatalf("before Reload served %s, want the old %s", got, want)
	}
	if err := s.m.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
		t.Errorf("after Reload served %s, want %s", got, want)
	}
	// Reload of unchanged files is harmless.
	if err := s.m.Reload(); err != nil {
		t.Fatal(err)
	}
	// A bad Reload keeps the current pair.
	writeFile(t, s.keyFile, s.first.keyPEM)
	if err := s.m.Reload(); !errors.Is(err, tlsconf.ErrKeyMismatch) {
		t.Errorf("Reload() = %v, want ErrKeyMismatch", err)
	}
	if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
		t.Errorf("after failed Reload served %s, want %s", got, want)
	}
}

func TestReloadCheckInterval(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: time.Minute, Now: now})
	// The first handshake checks (and finds nothing new), starting the interval.
	if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
		t.Fatalf("served %s, want %s", got, want)
	}
	renewed := s.ca.issue(t, leafOpts{})
	writePair(t, filepath.Dir(s.certFile), renewed)
	if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
		t.Errorf("within the interval served %s, want the old %s", got, want)
	}
	mu.Lock()
	clock = clock.Add(61 * time.Second)
	mu.Unlock()
	if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
		t.Errorf("after the interval served %s, want %s", got, want)
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	// No handshake happens until Watch has picked up the renewal, so only
	// Watch can have loaded it.
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.m.Watch(ctx)
		close(done)
	}()
	renewed := s.ca.issue(t, leafOpts{})
	writePair(t, filepath.Dir(s.certFile), renewed)
	deadline := time.Now().Add(20 * time.Second)
	for s.m.Certificate().SerialNumber.Cmp(renewed.leaf.SerialNumber) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not pick up the renewed certificate")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// tlsconfClient is a verifying client config trusting ca.
func tlsconfClient(ca *testCA) *tls.Config {
	return tlsconf.ClientConfig(tlsconf.PolicyVerify, "localhost", ca.pool())
}

// TestHandshakesDuringRenewals swaps pairs (key first, then certificate,
// as a renewal does) while clients handshake: every handshake must succeed,
// which it could not if a half-updated pair were ever served (the key would
// not sign for the certificate).
func TestHandshakesDuringRenewals(t *testing.T) {
	t.Parallel()
	s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: 0})
	pairs := []testPair{s.first}
	for range 4 {
		pairs = append(pairs, s.ca.issue(t, leafOpts{}))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dial(t, s.addr, tlsconfClient(s.ca))
				if err != nil {
					errs <- err
					return
				}
				c.Close()
			}
		}()
	}
	for i := range 20 {
		p := pairs[(i+1)%len(pairs)]
		writeFile(t, s.keyFile, p.keyPEM)
		time.Sleep(time.Millisecond) // let handshakes see the half-updated state
		writeFile(t, s.certFile, p.certPEM)
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handshake during renewals: %v", err)
	}
	final := pairs[20%len(pairs)]
	if got, want := s.served(t), final.leaf.SerialNumber.String(); got != want {
		t.Errorf("after renewals served %s, want the last %s", got, want)
	}
}

// A reload naming other files (postfix reload, doveadm reload after
// smtpd_tls_cert_file or ssl_cert changed) serves them from then on; files
// that do not load leave the running pair, and the old files, in service.
func TestSetFiles(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name    string
		write   func(t *testing.T, s *managedServer, dir string) (certFile, keyFile string)
		wantErr error // nil: the new pair is served
	}{
		{"valid pair", func(t *testing.T, s *managedServer, dir string) (string, string) {
			return writePair(t, dir, s.ca.issue(t, leafOpts{}))
		}, nil},
		{"combined file", func(t *testing.T, s *managedServer, dir string) (string, string) {
			p := s.ca.issue(t, leafOpts{})
			f := filepath.Join(dir, "combined.pem")
			writeFile(t, f, append(append([]byte(nil), p.keyPEM...), p.certPEM...))
			return f, f
		}, nil},
		{"key of another certificate", func(t *testing.T, s *managedServer, dir string) (string, string) {
			certFile, _ := writePair(t, dir, s.ca.issue(t, leafOpts{}))
			return certFile, s.keyFile
		}, tlsconf.ErrKeyMismatch},
		{"expired", func(t *testing.T, s *managedServer, dir string) (string, string) {
			return writePair(t, dir, s.ca.issue(t, leafOpts{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}))
		}, tlsconf.ErrExpired},
		{"missing", func(t *testing.T, s *managedServer, dir string) (string, string) {
			return filepath.Join(dir, "none.pem"), filepath.Join(dir, "none.key")
		}, tlsconf.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newManagedServer(t, tlsconf.Options{ReloadCheckInterval: 0})
			certFile, keyFile := tt.write(t, s, t.TempDir())
			err := s.m.SetFiles(certFile, keyFile)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("SetFiles = %v, want %v", err, tt.wantErr)
			}
			wantCert, wantKey := certFile, keyFile
			if tt.wantErr != nil {
				wantCert, wantKey = s.certFile, s.keyFile
				if got, want := s.served(t), s.first.leaf.SerialNumber.String(); got != want {
					t.Errorf("served %s, want the old %s", got, want)
				}
				// The old files are still the ones followed: their
				// renewal is served.
				renewed := s.ca.issue(t, leafOpts{})
				writePair(t, filepath.Dir(s.certFile), renewed)
				if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
					t.Errorf("after renewing the old files served %s, want %s", got, want)
				}
			} else {
				c, err := tls.X509KeyPair(mustRead(t, certFile), mustRead(t, keyFile))
				if err != nil {
					t.Fatal(err)
				}
				if got, want := s.served(t), c.Leaf.SerialNumber.String(); got != want {
					t.Errorf("served %s, want the new %s", got, want)
				}
				// The new files are the ones followed from now on.
				renewed := s.ca.issue(t, leafOpts{})
				writeFile(t, certFile+".new", append(append([]byte(nil), renewed.keyPEM...), renewed.certPEM...))
				if err := os.Rename(certFile+".new", certFile); err != nil {
					t.Fatal(err)
				}
				if keyFile != certFile {
					writeFile(t, keyFile, renewed.keyPEM)
				}
				if got, want := s.served(t), renewed.leaf.SerialNumber.String(); got != want {
					t.Errorf("after renewing the new files served %s, want %s", got, want)
				}
			}
			if c, k := s.m.Files(); c != wantCert || k != wantKey {
				t.Errorf("Files() = %s, %s; want %s, %s", c, k, wantCert, wantKey)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

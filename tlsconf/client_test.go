package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"courriel/tlsconf"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    tlsconf.Policy
		wantErr bool
		require bool
	}{
		{"none", tlsconf.PolicyNone, false, false},
		{"may", tlsconf.PolicyMay, false, false},
		{"encrypt", tlsconf.PolicyEncrypt, false, true},
		{"verify", tlsconf.PolicyVerify, false, true},
		{"", "", true, false},
		{"VERIFY", "", true, false},
		{" may", "", true, false},
		{"secure", "", true, false},
		{"dane", "", true, false},
		{"verify\n", "", true, false},
		{"yes", "", true, false},
	}
	for _, tt := range tests {
		got, err := tlsconf.ParsePolicy(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.RequiresTLS() != tt.require {
			t.Errorf("%q.RequiresTLS() = %v", got, !tt.require)
		}
	}
}

func TestClientConfig(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "right CA")
	wrong := newTestCA(t, "wrong CA")
	certFile, keyFile := writePair(t, t.TempDir(), ca.issue(t, leafOpts{names: []string{"mx.example.org", "localhost"}}))
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveEcho(t, m.ServerConfig())
	// An old server that speaks only TLS 1.1.
	old := m.ServerConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	old.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	oldAddr := serveEcho(t, old)

	if cfg := tlsconf.ClientConfig(tlsconf.PolicyNone, "mx.example.org", nil); cfg != nil {
		t.Errorf("none: config %+v, want nil", cfg)
	}
	tests := []struct {
		name       string
		policy     tlsconf.Policy
		serverName string
		roots      *x509.CertPool
		addr       string
		ok         bool
		wantErr    string // "authority", "hostname" or ""
	}{
		{"verify right CA", tlsconf.PolicyVerify, "mx.example.org", ca.pool(), addr, true, ""},
		{"verify wrong CA", tlsconf.PolicyVerify, "mx.example.org", wrong.pool(), addr, false, "authority"},
		{"verify system roots", tlsconf.PolicyVerify, "mx.example.org", nil, addr, false, "authority"},
		{"verify wrong name", tlsconf.PolicyVerify, "other.example.org", ca.pool(), addr, false, "hostname"},
		{"unknown policy fails closed", tlsconf.Policy("bogus"), "mx.example.org", wrong.pool(), addr, false, "authority"},
		{"encrypt wrong CA", tlsconf.PolicyEncrypt, "other.example.org", wrong.pool(), addr, true, ""},
		{"may wrong CA", tlsconf.PolicyMay, "other.example.org", wrong.pool(), addr, true, ""},
		{"may TLS 1.1 server", tlsconf.PolicyMay, "mx.example.org", nil, oldAddr, false, ""},
		{"verify TLS 1.1 server", tlsconf.PolicyVerify, "mx.example.org", ca.pool(), oldAddr, false, ""},
	}
	for _, tt := range tests {
		cfg := tlsconf.ClientConfig(tt.policy, tt.serverName, tt.roots)
		if cfg == nil {
			t.Fatalf("%s: nil config", tt.name)
		}
		c, err := dial(t, tt.addr, cfg)
		if tt.ok != (err == nil) {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
			continue
		}
		if err == nil {
			echo(t, c, "hello")
			continue
		}
		var ua x509.UnknownAuthorityError
		var he x509.HostnameError
		switch {
		case tt.wantErr == "authority" && !errors.As(err, &ua):
			t.Errorf("%s: err = %v, want an unknown authority", tt.name, err)
		case tt.wantErr == "hostname" && !errors.As(err, &he):
			t.Errorf("%s: err = %v, want a host name mismatch", tt.name, err)
		}
	}
	// Control: the TLS 1.1 server does answer a client that allows it.
	lax := tlsconf.ClientConfig(tlsconf.PolicyMay, "mx.example.org", nil)
	lax.MinVersion = tls.VersionTLS10
	if _, err := dial(t, oldAddr, lax); err != nil {
		t.Errorf("control: TLS 1.1 server unreachable: %v", err)
	}
}

func TestLoadCAPool(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "right CA")
	other := newTestCA(t, "other CA")
	leaf := ca.issue(t, leafOpts{}).leaf
	verifies := func(pool *x509.CertPool) bool {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"})
		return err == nil
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "ca.pem")
	writeFile(t, file, append(append([]byte(nil), other.pem...), ca.pem...))
	pool, err := tlsconf.LoadCAPool(file)
	if err != nil {
		t.Fatal(err)
	}
	if !verifies(pool) {
		t.Error("file: the second certificate of the bundle is not trusted")
	}

	// A CApath: hash symlinks, a README, a subdirectory, a dangling link,
	// one corrupt file; the good certificate is found.
	capath := filepath.Join(dir, "certs")
	for _, d := range []string{capath, filepath.Join(capath, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(capath, "other.pem"), other.pem)
	writeFile(t, filepath.Join(capath, "README"), []byte("not a certificate\n"))
	writeFile(t, filepath.Join(capath, "broken.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	writeFile(t, filepath.Join(capath, "sub", "ca.pem"), ca.pem)
	if err := os.Symlink("missing.pem", filepath.Join(capath, "dead.0")); err != nil {
		t.Fatal(err)
	}
	pool, err = tlsconf.LoadCAPool(capath)
	if err != nil {
		t.Fatal(err)
	}
	if verifies(pool) {
		t.Error("dir: a certificate in a subdirectory was trusted")
	}
	writeFile(t, filepath.Join(capath, "right.pem"), ca.pem)
	if err := os.Symlink("right.pem", filepath.Join(capath, "abcd1234.0")); err != nil {
		t.Fatal(err)
	}
	pool, err = tlsconf.LoadCAPool(capath)
	if err != nil {
		t.Fatal(err)
	}
	if !verifies(pool) {
		t.Error("dir: right CA not trusted")
	}

	// Failures.
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	onlyBroken := filepath.Join(dir, "onlybroken")
	if err := os.Mkdir(onlyBroken, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(onlyBroken, "b.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	for _, tt := range []struct {
		path string
		want error
	}{
		{filepath.Join(dir, "nope.pem"), tlsconf.ErrMissing},
		{filepath.Join(capath, "README"), tlsconf.ErrBadPEM},
		{filepath.Join(capath, "broken.pem"), tlsconf.ErrBadPEM},
		{empty, tlsconf.ErrBadPEM},
		{onlyBroken, tlsconf.ErrBadPEM},
	} {
		if _, err := tlsconf.LoadCAPool(tt.path); !errors.Is(err, tt.want) {
			t.Errorf("LoadCAPool(%s) = %v, want %v", tt.path, err, tt.want)
		}
	}
}

func TestLoadCAPoolSystem(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/etc/ssl/certs", "/etc/ssl/certs/ca-certificates.crt"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s: %v", p, err)
		}
		if _, err := tlsconf.LoadCAPool(p); err != nil {
			t.Errorf("LoadCAPool(%s): %v", p, err)
		}
	}
}

package tlsconf_test

import (
	"crypto/rsa"
	"crypto/tls"
	"testing"

	"courriel/tlsconf"
)

// laxServerConfig accepts what ServerConfig must refuse; handshakes that
// succeed against it and fail against ServerConfig prove the refusal is
// ours, not the client's.
func laxServerConfig(m *tlsconf.Manager) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS10,
		GetCertificate: m.GetCertificate,
		CipherSuites:   allSuites(),
	}
}

func allSuites() []uint16 {
	var ids []uint16
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		ids = append(ids, s.ID)
	}
	return ids
}

// newServers returns a Manager over a fresh pair (RSA when rsaBits > 0) and
// the addresses of a ServerConfig server and of a lax one.
func newServers(t *testing.T, rsaBits int) (ca *testCA, strict, lax string) {
	t.Helper()
	ca = newTestCA(t, "test CA")
	certFile, keyFile := writePair(t, t.TempDir(), ca.issue(t, leafOpts{rsaBits: rsaBits}))
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, ReloadCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return ca, serveEcho(t, m.ServerConfig()), serveEcho(t, laxServerConfig(m))
}

func TestServerProtocolVersions(t *testing.T) {
	t.Parallel()
	ca, strict, lax := newServers(t, 0)
	// The TLS 1.2-only AEAD suites would refuse 1.0 and 1.1 by themselves;
	// a listener that resets CipherSuites must still refuse them, by
	// MinVersion.
	certFile, keyFile := writePair(t, t.TempDir(), ca.issue(t, leafOpts{}))
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg := m.ServerConfig()
	srvCfg.CipherSuites = nil
	strictVersionOnly := serveEcho(t, srvCfg)
	tests := []struct {
		version uint16
		ok      bool
	}{
		{tls.VersionTLS10, false},
		{tls.VersionTLS11, false},
		{tls.VersionTLS12, true},
		{tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		name := tls.VersionName(tt.version)
		cfg := tlsconfClient(ca)
		cfg.MinVersion, cfg.MaxVersion = tt.version, tt.version
		if tt.version < tls.VersionTLS12 {
			// Go's TLS 1.0/1.1 client has only CBC suites for ECDSA.
			cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}
		c, err := dial(t, lax, cfg.Clone())
		if err != nil {
			t.Fatalf("%s: control handshake with the lax server failed: %v", name, err)
		}
		c.Close()
		if c, err := dial(t, strictVersionOnly, cfg.Clone()); tt.ok != (err == nil) {
			t.Errorf("%s, Go's default suites: handshake err = %v, want ok=%v", name, err, tt.ok)
		} else if err == nil {
			c.Close()
		}
		c, err = dial(t, strict, cfg)
		if tt.ok != (err == nil) {
			t.Errorf("%s: handshake err = %v, want ok=%v", name, err, tt.ok)
			continue
		}
		if err == nil {
			if v := c.ConnectionState().Version; v != tt.version {
				t.Errorf("%s: negotiated %s", name, tls.VersionName(v))
			}
			echo(t, c, "hello")
		}
	}
}

func TestServerCipherSuites(t *testing.T) {
	t.Parallel()
	ecCA, ecStrict, ecLax := newServers(t, 0)
	rsaCA, rsaStrict, rsaLax := newServers(t, 2048)
	type server struct {
		ca          *testCA
		strict, lax string
	}
	ec, rsa := server{ecCA, ecStrict, ecLax}, server{rsaCA, rsaStrict, rsaLax}
	tests := []struct {
		srv   server
		suite uint16
		ok    bool
	}{
		{ec, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{ec, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, true},
		{ec, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
		{rsa, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true},
		{rsa, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, true},
		{rsa, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true},
		// CBC, even with ECDHE.
		{ec, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{ec, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
		{ec, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false},
		{rsa, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false},
		{rsa, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, false},
		// Static RSA key exchange, even with GCM (no forward secrecy).
		{rsa, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},
		{rsa, tls.TLS_RSA_WITH_AES_256_GCM_SHA384, false},
		{rsa, tls.TLS_RSA_WITH_AES_128_CBC_SHA, false},
		// 3DES and RC4.
		{rsa, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, false},
		{rsa, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, false},
		{rsa, tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA, false},
		{ec, tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, false},
	}
	for _, tt := range tests {
		name := tls.CipherSuiteName(tt.suite)
		cfg := tlsconfClient(tt.srv.ca)
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tt.suite}
		c, err := dial(t, tt.srv.lax, cfg.Clone())
		if err != nil {
			t.Fatalf("%s: control handshake with the lax server failed: %v", name, err)
		}
		c.Close()
		c, err = dial(t, tt.srv.strict, cfg)
		if tt.ok != (err == nil) {
			t.Errorf("%s: handshake err = %v, want ok=%v", name, err, tt.ok)
			continue
		}
		if err == nil {
			if got := c.ConnectionState().CipherSuite; got != tt.suite {
				t.Errorf("%s: negotiated %s", name, tls.CipherSuiteName(got))
			}
			echo(t, c, "hello")
		}
	}
}

func TestServerCurves(t *testing.T) {
	t.Parallel()
	ca, strict, _ := newServers(t, 0)
	tests := []struct {
		name  string
		prefs []tls.CurveID // nil: Go's defaults
		max   uint16
		want  tls.CurveID
	}{
		{"default 1.3 is post-quantum hybrid", nil, tls.VersionTLS13, tls.X25519MLKEM768},
		{"X25519 1.2", []tls.CurveID{tls.X25519}, tls.VersionTLS12, tls.X25519},
		{"P-256 1.3", []tls.CurveID{tls.CurveP256}, tls.VersionTLS13, tls.CurveP256},
		{"P-384 1.2", []tls.CurveID{tls.CurveP384}, tls.VersionTLS12, tls.CurveP384},
	}
	for _, tt := range tests {
		cfg := tlsconfClient(ca)
		cfg.CurvePreferences, cfg.MaxVersion = tt.prefs, tt.max
		c, err := dial(t, strict, cfg)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := c.ConnectionState().CurveID; got != tt.want {
			t.Errorf("%s: negotiated %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestServerConfigIndependent(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	certFile, keyFile := writePair(t, t.TempDir(), ca.issue(t, leafOpts{}))
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	a, b := m.ServerConfig(), m.ServerConfig()
	if a.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x", a.MinVersion)
	}
	a.CipherSuites[0] = tls.TLS_RSA_WITH_RC4_128_SHA
	a.NextProtos = []string{"imap"}
	if b.CipherSuites[0] == tls.TLS_RSA_WITH_RC4_128_SHA || b.NextProtos != nil {
		t.Error("changing one listener's config changed another's")
	}
}

// ChooseCertificate serves each client the pair for the name it asks
// for (SNI), the first pair to a client without SNI or asking for a name
// no pair holds, and the RSA pair of the same names to a client that
// cannot use ECDSA.
func TestChooseCertificate(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	pair := func(o leafOpts) *tlsconf.Manager {
		t.Helper()
		certFile, keyFile := writePair(t, t.TempDir(), ca.issue(t, o))
		m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, ReloadCheckInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	main := pair(leafOpts{names: []string{"mx.example.org", "127.0.0.1"}})
	domain2 := pair(leafOpts{names: []string{"mail.domain2.example", "*.domain3.example"}})
	rsaPair := pair(leafOpts{names: []string{"mx.example.org", "127.0.0.1"}, rsaBits: 2048})
	cfg := main.ServerConfig()
	cfg.GetCertificate = tlsconf.ChooseCertificate(main, domain2, rsaPair)
	addr := serveEcho(t, cfg)
	tests := []struct {
		serverName string
		rsaOnly    bool
		want       string // the served certificate's first name
	}{
		{"mx.example.org", false, "mx.example.org"},
		{"", false, "mx.example.org"},
		{"mail.domain2.example", false, "mail.domain2.example"},
		{"imap.domain3.example", false, "mail.domain2.example"},
		{"unknown.example", false, "mx.example.org"},
		{"mx.example.org", true, "mx.example.org"},
	}
	for _, tt := range tests {
		c := &tls.Config{ServerName: tt.serverName, InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
		if tt.rsaOnly {
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		}
		conn, err := dial(t, addr, c)
		if err != nil {
			t.Errorf("SNI %q rsa-only %v: %v", tt.serverName, tt.rsaOnly, err)
			continue
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		_, isRSA := leaf.PublicKey.(*rsa.PublicKey)
		if leaf.DNSNames[0] != tt.want || isRSA != tt.rsaOnly {
			t.Errorf("SNI %q rsa-only %v: served %v (RSA %v), want %s", tt.serverName, tt.rsaOnly, leaf.DNSNames, isRSA, tt.want)
		}
		conn.Close()
	}
}

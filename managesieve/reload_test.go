package managesieve

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"

	"courriel/internal/testenv"
	"courriel/tlsconf"
)

// STARTTLS serves the certificate of a tlsconf.Manager, as serve wires
// it: a renewed pair, once reloaded (SIGHUP or the file watch), is what
// the next STARTTLS gets.
func TestCertificateReload(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := dir+"/cert.pem", dir+"/key.pem"
	c1, k1 := ca.Issue(t, "localhost", "127.0.0.1")
	copyTo(t, c1, certFile)
	copyTo(t, k1, keyFile)
	mgr, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Hostnames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) { o.TLSConfig = mgr.ServerConfig() })
	serial := func() string {
		c := e.dial(t)
		if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "OK") {
			t.Fatalf("STARTTLS: %q", r)
		}
		tc := tls.Client(c.conn, ca.ClientTLSConfig("localhost"))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		return tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	c2, k2 := ca.Issue(t, "localhost", "127.0.0.1")
	copyTo(t, c2, certFile)
	copyTo(t, k2, keyFile)
	if err := mgr.Reload(); err != nil {
		t.Fatal(err)
	}
	if after := serial(); after == before {
		t.Fatal("the renewed certificate is not served after the reload")
	}
}

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

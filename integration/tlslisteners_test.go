package integration

import (
	"crypto/tls"
	"fmt"
	"testing"

	"courriel/internal/testenv"
)

// Per-listener TLS settings: imaps serves its own certificate, submissions
// offers TLS 1.3 only, the others keep the shared certificate and TLS 1.2.
func TestPerListenerTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	imapCert, imapKey := ca.Issue(t, "imap.localhost", "localhost", "127.0.0.1")
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf(`
[tls.listeners.imaps]
cert_file = %q
key_file = %q

[tls.listeners.submissions]
min_version = "1.3"
`, imapCert, imapKey)))
	handshake := func(addr string, max uint16) (*tls.ConnectionState, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost", RootCAs: ca.Pool(), MaxVersion: max})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		st := c.ConnectionState()
		return &st, nil
	}
	st, err := handshake(s.IMAPS, tls.VersionTLS12)
	if err != nil {
		t.Fatalf("imaps over TLS 1.2: %v", err)
	}
	if names := st.PeerCertificates[0].DNSNames; len(names) == 0 || names[0] != "imap.localhost" {
		t.Errorf("imaps serves %v, want its own certificate", names)
	}
	if _, err := handshake(s.Subs, tls.VersionTLS12); err == nil {
		t.Error("submissions accepted TLS 1.2 with min_version 1.3")
	}
	st, err = handshake(s.Subs, tls.VersionTLS13)
	if err != nil {
		t.Fatalf("submissions over TLS 1.3: %v", err)
	}
	if names := st.PeerCertificates[0].DNSNames; len(names) == 0 || names[0] == "imap.localhost" {
		t.Errorf("submissions serves %v, want the shared certificate", names)
	}
}

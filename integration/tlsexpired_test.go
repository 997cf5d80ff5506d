package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An expired certificate does not keep courriel from starting (a renewal
// that failed before a reboot): as Postfix and Dovecot, it serves it and
// logs an error naming the file and the date; check-config reports it.
func TestServeStartsWithExpiredCertificate(t *testing.T) {
	notAfter := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	certFile, keyFile, serial := writeExpiredPair(t, notAfter)
	s := startServer(t, withTOML(fmt.Sprintf(`
[tls.listeners.imaps]
cert_file = %q
key_file = %q
`, certFile, keyFile)))

	var line string
	for l := range strings.Lines(s.logs()) {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, certFile) {
			line = l
		}
	}
	if date := notAfter.Format(time.RFC3339); !strings.Contains(line, date) {
		t.Errorf("no ERROR line naming %s and %s in the log", certFile, date)
	}

	// An MTA doing opportunistic TLS does not verify: it gets the certificate.
	c, err := tls.Dial("tcp", s.IMAPS, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("imaps handshake without verification: %v", err)
	}
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(serial) != 0 {
		t.Errorf("imaps serves %v, want the expired certificate %v", got, serial)
	}
	c.Close()

	out, _ := run(t, "", binary, "check-config", "-q", "-config", s.config)
	if !strings.Contains(out, "warn tls: certificate "+certFile+" is valid only from") || strings.Contains(out, "FAIL tls: certificate "+certFile+":") {
		t.Errorf("check-config with an expired certificate: want a warning, not a failure:\n%s", out)
	}
}

// writeExpiredPair writes a self-signed certificate for localhost that
// expired at notAfter, and its key.
func writeExpiredPair(t *testing.T, notAfter time.Time) (certFile, keyFile string, serial *big.Int) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial = big.NewInt(time.Now().UnixNano())
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    notAfter.Add(-90 * 24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "expired.pem"), filepath.Join(dir, "expired.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, serial
}

package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"courriel/internal/atomicfile"
)

// Self-signed certificate parameters for `courriel demo`.
const (
	// selfSignedLifetime: one year, under the 398 days some clients (Apple)
	// accept for a server certificate even when trusted by hand.
	selfSignedLifetime = 365 * 24 * time.Hour
	// selfSignedRenewBefore: a pair with less left than this is replaced
	// rather than reused.
	selfSignedRenewBefore = 30 * 24 * time.Hour
	// SelfSignedCertName and SelfSignedKeyName are the files SelfSigned
	// writes in its directory.
	SelfSignedCertName = "cert.pem"
	SelfSignedKeyName  = "key.pem"
)

// defaultSelfSignedNames are used when SelfSigned gets no host names: the
// demo listens on loopback.
var defaultSelfSignedNames = []string{"localhost", "127.0.0.1", "::1"}

// SelfSigned returns dir/cert.pem and dir/key.pem, an ECDSA P-256
// self-signed certificate valid one year for hostnames (DNS names or IP
// literals; localhost and the loopback addresses when empty). dir is created
// 0700 and the key written 0600. A pair already there is reused when it
// loads, covers every host name and has more than 30 days left, so clients
// that pinned it keep working across demo runs; otherwise it is replaced.
func SelfSigned(dir string, hostnames []string) (certFile, keyFile string, err error) {
	if len(hostnames) == 0 {
		hostnames = defaultSelfSignedNames
	}
	var dns []string
	var ips []net.IP
	for _, h := range hostnames {
		h = strings.TrimSuffix(strings.TrimSpace(h), ".")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if !validDNSName(h) {
			return "", "", fmt.Errorf("tls: self-signed: %q is neither a host name nor an IP address", h)
		}
		dns = append(dns, strings.ToLower(h))
	}
	if len(dns) == 0 && len(ips) == 0 {
		return "", "", errors.New("tls: self-signed: no usable host name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("tls: self-signed: %w", err)
	}
	certFile = filepath.Join(dir, SelfSignedCertName)
	keyFile = filepath.Join(dir, SelfSignedKeyName)

	now := time.Now()
	if c, err := loadPair(certFile, keyFile, now); err == nil &&
		c.Leaf.NotAfter.Sub(now) > selfSignedRenewBefore &&
		len(CheckHostnames(c.Leaf, hostnames)) == 0 {
		return certFile, keyFile, nil
	}

	certPEM, keyPEM, err := newSelfSigned(dns, ips, now)
	if err != nil {
		return "", "", err
	}
	// Key first, certificate second: a crash in between leaves a mismatched
	// pair, which the next run detects and replaces.
	if err := atomicfile.Write(keyFile, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("tls: self-signed: %w", err)
	}
	if err := atomicfile.Write(certFile, certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("tls: self-signed: %w", err)
	}
	return certFile, keyFile, nil
}

func newSelfSigned(dns []string, ips []net.IP, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: self-signed: %w", err)
	}
	// RFC 5280 §4.1.2.2: positive, at most 20 octets; 128 random bits.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("tls: self-signed: %w", err)
	}
	cn := ""
	if len(dns) > 0 {
		cn = dns[0]
	} else {
		cn = ips[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"courriel demo"}},
		DNSNames:              dns,
		IPAddresses:           ips,
		NotBefore:             now.Add(-time.Hour), // tolerate client clock skew
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: self-signed: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: self-signed: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// validDNSName accepts LDH labels (RFC 1123 §2.1), with a leading "*." for
// a wildcard, as x509 SANs must be.
func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

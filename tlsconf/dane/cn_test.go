package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// A DANE-TA leaf is matched by its DNS-IDs when it has any, else by its
// CN-ID (RFC 7672 §3.2.3), as Postfix matches it: a private CA's leaf
// that names the MX host in its common name alone is authenticated, not
// deferred for ever.
func TestVerifyTACommonName(t *testing.T) {
	t.Parallel()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "private CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(cn string, dnsNames ...string) *x509.Certificate {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, DNSNames: dnsNames,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, anchor, key.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	recs := []Record{{UsageDANETA, SelectorSPKI, MatchSHA256, sha256Of(anchor.RawSubjectPublicKeyInfo)}}
	names := []string{"mx.example.test", "example.test"}
	for _, tc := range []struct {
		name string
		leaf *x509.Certificate
		ok   bool
	}{
		{"CN is the MX host", leaf("mx.example.test"), true},
		{"CN is the nexthop, another case", leaf("Example.TEST"), true},
		{"CN wildcard over one label", leaf("*.example.test"), true},
		{"CN wildcard stands for a label, not none", leaf("*.mx.example.test"), false},
		{"CN of another host", leaf("mx.elsewhere.test"), false},
		{"DNS-IDs only, when present", leaf("mx.example.test", "mx.elsewhere.test"), false},
		{"DNS-ID", leaf("whatever", "mx.example.test"), true},
	} {
		_, err := Verify(tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.leaf, anchor}}, recs, names)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

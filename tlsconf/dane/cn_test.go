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

// Go's Verify applies name constraints to the subjectAltName only: a leaf
// with none chains under a constrained CA whatever its CN says. The CN is
// taken only where the constraints of every CA of the chain allow it, as
// OpenSSL (Postfix) takes it, and a wildcard CN only over two labels at
// least, as X509_check_host: else a sub-CA constrained to org.example, or
// any CA at all with CN=*.test, vouches for mx.victim.test.
func TestVerifyTACommonNameConstrained(t *testing.T) {
	t.Parallel()
	now := time.Now()
	issue := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = big.NewInt(now.UnixNano())
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key
	}
	caTmpl := func(name string, permitted, excluded []string) *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage:                    x509.KeyUsageCertSign,
			PermittedDNSDomainsCritical: len(permitted) > 0,
			PermittedDNSDomains:         permitted, ExcludedDNSDomains: excluded,
		}
	}
	root, rootKey := issue(caTmpl("root", nil, nil), nil, nil)
	recs := []Record{{UsageDANETA, SelectorSPKI, MatchSHA256, sha256Of(root.RawSubjectPublicKeyInfo)}}
	names := []string{"mx.victim.test", "victim.test"}
	for _, tc := range []struct {
		name                string
		permitted, excluded []string // the sub-CA's; none: the leaf is the root's
		cn                  string
		dnsNames            []string
		ok                  bool
	}{
		{name: "CN under an unconstrained anchor", cn: "mx.victim.test", ok: true},
		{name: "CN under a sub-CA permitted another domain", permitted: []string{"org.example"}, cn: "mx.victim.test"},
		{name: "CN wildcard over a TLD", cn: "*.test"},
		{name: "CN wildcard over a TLD, constrained", permitted: []string{"org.example"}, cn: "*.test"},
		{name: "CN under a sub-CA permitted its domain", permitted: []string{"victim.test"}, cn: "mx.victim.test", ok: true},
		{name: "CN under a sub-CA permitted only names under another", permitted: []string{".mx.victim.test"}, cn: "mx.victim.test"},
		{name: "CN under a sub-CA excluded from its domain", excluded: []string{"victim.test"}, cn: "mx.victim.test"},
		{name: "CN under a sub-CA excluded from another", excluded: []string{"org.example"}, cn: "mx.victim.test", ok: true},
		{name: "CN wildcard, permitted", permitted: []string{"victim.test"}, cn: "*.victim.test", ok: true},
		{name: "CN wildcard for an excluded host", excluded: []string{"mx.victim.test"}, cn: "*.victim.test"},
		{name: "DNS-ID under a sub-CA permitted its domain", permitted: []string{"victim.test"}, cn: "whatever", dnsNames: []string{"mx.victim.test"}, ok: true},
		{name: "DNS-ID wildcard over a TLD", cn: "mx.victim.test", dnsNames: []string{"*.test"}},
		{name: "DNS-ID wildcard over a TLD, absolute", cn: "mx.victim.test", dnsNames: []string{"*.test."}},
		{name: "DNS-ID wildcard over a TLD beside the host's", dnsNames: []string{"*.test", "mx.victim.test"}, ok: true},
		{name: "DNS-ID wildcard over two labels", dnsNames: []string{"*.victim.test"}, ok: true},
	} {
		issuer, issuerKey, chain := root, rootKey, []*x509.Certificate{root}
		if tc.permitted != nil || tc.excluded != nil {
			issuer, issuerKey = issue(caTmpl("sub-CA", tc.permitted, tc.excluded), root, rootKey)
			chain = append([]*x509.Certificate{issuer}, chain...)
		}
		leaf, _ := issue(&x509.Certificate{
			Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.dnsNames,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, issuer, issuerKey)
		_, err := Verify(tls.ConnectionState{PeerCertificates: append([]*x509.Certificate{leaf}, chain...)}, recs, names)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

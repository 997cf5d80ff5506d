package dane

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"testing"

	"courriel/internal/testenv"
)

func leafOf(t *testing.T, c tls.Certificate) *x509.Certificate {
	t.Helper()
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func sha256Of(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
func sha512Of(b []byte) []byte { h := sha512.Sum512(b); return h[:] }

func TestVerify(t *testing.T) {
	ca := testenv.NewCA(t)
	other := testenv.NewCA(t)
	leaf := leafOf(t, ca.IssueCertificate(t, "mx.example.test"))
	wrongName := leafOf(t, ca.IssueCertificate(t, "elsewhere.test"))
	anchor := ca.Certificate()
	state := func(chain ...*x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: chain}
	}
	names := []string{"mx.example.test", "example.test"}
	for _, tc := range []struct {
		name  string
		recs  []Record
		chain []*x509.Certificate
		ok    bool
	}{
		{"EE spki sha256", []Record{{3, 1, 1, sha256Of(leaf.RawSubjectPublicKeyInfo)}}, []*x509.Certificate{leaf}, true},
		{"EE cert sha512", []Record{{3, 0, 2, sha512Of(leaf.Raw)}}, []*x509.Certificate{leaf}, true},
		{"EE cert full", []Record{{3, 0, 0, leaf.Raw}}, []*x509.Certificate{leaf}, true},
		{"EE ignores the name", []Record{{3, 1, 1, sha256Of(wrongName.RawSubjectPublicKeyInfo)}}, []*x509.Certificate{wrongName}, true},
		{"EE mismatch", []Record{{3, 1, 1, sha256Of(wrongName.RawSubjectPublicKeyInfo)}}, []*x509.Certificate{leaf}, false},
		{"TA spki sha256", []Record{{2, 1, 1, sha256Of(anchor.RawSubjectPublicKeyInfo)}}, []*x509.Certificate{leaf, anchor}, true},
		{"TA cert sha256", []Record{{2, 0, 1, sha256Of(anchor.Raw)}}, []*x509.Certificate{leaf, anchor}, true},
		{"TA anchor not sent", []Record{{2, 0, 1, sha256Of(anchor.Raw)}}, []*x509.Certificate{leaf}, false},
		{"TA full certificate in DNS, not sent", []Record{{2, 0, 0, anchor.Raw}}, []*x509.Certificate{leaf}, true},
		{"TA full certificate of another CA", []Record{{2, 0, 0, other.Certificate().Raw}}, []*x509.Certificate{leaf}, false},
		{"TA full record that is no certificate", []Record{{2, 0, 0, []byte("not a certificate")}}, []*x509.Certificate{leaf}, false},
		{"TA wrong name", []Record{{2, 0, 1, sha256Of(anchor.Raw)}}, []*x509.Certificate{wrongName, anchor}, false},
		{"TA other anchor", []Record{{2, 0, 1, sha256Of(other.Certificate().Raw)}}, []*x509.Certificate{leaf, anchor}, false},
		{"TA does not match the leaf", []Record{{2, 0, 1, sha256Of(leaf.Raw)}}, []*x509.Certificate{leaf, anchor}, false},
	} {
		_, err := Verify(state(tc.chain...), Usable(tc.recs), names)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, ErrNoMatch) {
			t.Errorf("%s: %v is not ErrNoMatch", tc.name, err)
		}
	}
}

func TestUsable(t *testing.T) {
	d32 := make([]byte, 32)
	for _, tc := range []struct {
		r  Record
		ok bool
	}{
		{Record{3, 1, 1, d32}, true},
		{Record{2, 0, 1, d32}, true},
		{Record{0, 0, 1, d32}, false}, // PKIX-TA: not for SMTP
		{Record{1, 0, 1, d32}, false}, // PKIX-EE
		{Record{4, 0, 1, d32}, false},
		{Record{3, 2, 1, d32}, false},
		{Record{3, 1, 3, d32}, false},
		{Record{3, 1, 1, d32[:31]}, false},
		{Record{3, 1, 2, d32}, false},
		{Record{3, 1, 0, nil}, false},
	} {
		if tc.r.Usable() != tc.ok {
			t.Errorf("%v: usable %v", tc.r, !tc.ok)
		}
	}
	many := make([]Record, 500)
	for i := range many {
		many[i] = Record{3, 1, 1, d32}
	}
	if n := len(Usable(many)); n != MaxRecords {
		t.Errorf("Usable kept %d of 500", n)
	}
}

func TestResolver(t *testing.T) {
	d32 := hex.EncodeToString(make([]byte, 32))
	records := []string{
		"example.test. MX 10 mx.example.test.",
		"mx.example.test. A 127.0.0.1",
		"_25._tcp.mx.example.test. TLSA 3 1 1 " + d32,
		"insecure.test. MX 10 mx.insecure.test.",
		"alias.example.test. CNAME mx.example.test.",
		"loop1.example.test. CNAME loop2.example.test.",
		"loop2.example.test. CNAME loop1.example.test.",
	}
	// Hundreds of TLSA records: the answer is truncated over UDP, read
	// over TCP, and cut to a bounded number.
	for i := range 300 {
		records = append(records, fmt.Sprintf("_25._tcp.big.example.test. TLSA 3 1 1 %064x", i))
	}
	dns := testenv.StartDNS(t, records...)
	dns.Validating()
	dns.Insecure("insecure.test")
	r := NewResolver(dns.Addr)
	ctx := context.Background()

	mxs, secure, err := r.LookupMX(ctx, "example.test")
	if err != nil || !secure || len(mxs) != 1 || mxs[0].Host != "mx.example.test." {
		t.Fatalf("MX: %v %v %v", mxs, secure, err)
	}
	if _, secure, err := r.LookupMX(ctx, "insecure.test"); err != nil || secure {
		t.Fatalf("insecure MX: secure=%v err=%v", secure, err)
	}
	ips, cn, secure, err := r.LookupIPAddr(ctx, "mx.example.test")
	if err != nil || !secure || cn != "mx.example.test" || len(ips) != 1 || !ips[0].IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("A: %v %q %v %v", ips, cn, secure, err)
	}
	ips, cn, secure, err = r.LookupIPAddr(ctx, "alias.example.test")
	if err != nil || !secure || cn != "mx.example.test" || len(ips) != 1 {
		t.Fatalf("A through a CNAME: %v %q %v %v", ips, cn, secure, err)
	}
	if _, _, _, err := r.LookupIPAddr(ctx, "loop1.example.test"); err == nil {
		t.Fatal("a CNAME loop gave addresses")
	}
	recs, secure, err := r.LookupTLSA(ctx, 25, "mx.example.test")
	if err != nil || !secure || len(recs) != 1 || !recs[0].Usable() {
		t.Fatalf("TLSA: %v %v %v", recs, secure, err)
	}
	recs, _, err = r.LookupTLSA(ctx, 25, "big.example.test")
	if err != nil || len(recs) != MaxRecords*4 {
		t.Fatalf("300 TLSA records: got %d, %v", len(recs), err)
	}
	var de *net.DNSError
	if _, secure, err := r.LookupTLSA(ctx, 25, "nothere.example.test"); !errors.As(err, &de) || !de.IsNotFound || !secure {
		t.Fatalf("absent TLSA: secure=%v err=%v", secure, err)
	}
	dns.ServFail("_25._tcp.bogus.example.test")
	if _, _, err := r.LookupTLSA(ctx, 25, "bogus.example.test"); !errors.As(err, &de) || de.IsNotFound {
		t.Fatalf("SERVFAIL TLSA: %v", err)
	}
}

func TestValidates(t *testing.T) {
	plain := testenv.StartDNS(t, ". NS a.root-servers.net.")
	if err := NewResolver(plain.Addr).Validates(context.Background()); err == nil {
		t.Error("a resolver without the AD bit passed")
	}
	validating := testenv.StartDNS(t, ". NS a.root-servers.net.")
	validating.Validating()
	if err := NewResolver(validating.Addr).Validates(context.Background()); err != nil {
		t.Error(err)
	}
}

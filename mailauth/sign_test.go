package mailauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"courriel/internal/testenv"
)

const testMessage = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Hello  there\r\n" +
	"Date: Sun, 06 Dec 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Body line one   \r\n" +
	"line two\r\n\r\n\r\n"

// testKeys makes a selector's key pair with GenerateKeys, as `courriel
// dkim keygen` does, and publishes its records on d.
func testKeys(t testing.TB, d *testenv.DNS, domain, sel string) DomainKeys {
	t.Helper()
	dir := t.TempDir()
	paths, err := GenerateKeys(dir, domain, sel)
	if err != nil {
		t.Fatal(err)
	}
	dk := DomainKeys{Domain: domain, Selector: sel, Keys: map[Algorithm]crypto.Signer{}}
	for a, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
		if filepath.Dir(p) != filepath.Join(dir, domain) {
			t.Errorf("key written to %s", p)
		}
		k, err := LoadKey(p, a)
		if err != nil {
			t.Fatal(err)
		}
		dk.Keys[a] = k
		txt, err := TXTRecord(k)
		if err != nil {
			t.Fatal(err)
		}
		if d != nil {
			d.Set(t, DNSSelector(sel, a)+"._domainkey."+domain+". 300 IN TXT "+ZoneStrings(txt))
		}
	}
	if len(dk.Keys) != 2 {
		t.Fatalf("keygen wrote %d keys, want 2", len(dk.Keys))
	}
	return dk
}

func sign(t testing.TB, s *Signer, msg string) string {
	t.Helper()
	sig, err := s.Sign(strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	return string(sig) + msg
}

// TestSignVerifiedByDkimpy: both signatures of a message verify with
// Debian's dkimpy, which reads the keys from the test's DNS server; a
// change to a signed field, or a second From, fails both.
func TestSignVerifiedByDkimpy(t *testing.T) {
	d := testenv.StartDNS(t)
	s, err := NewSigner([]DomainKeys{testKeys(t, d, "example.org", "s2026")})
	if err != nil {
		t.Fatal(err)
	}
	signed := sign(t, s, testMessage)
	if n := strings.Count(signed, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", n, signed)
	}
	for _, want := range []string{"a=ed25519-sha256", "a=rsa-sha256", "c=relaxed/relaxed", "s=s2026-ed25519", "s=s2026-rsa", "d=example.org"} {
		if !strings.Contains(signed, want) {
			t.Errorf("signature lacks %s:\n%s", want, signed)
		}
	}
	// dkimpy checks one signature per call (idx), in header order.
	const verify = `
import sys, dkim
msg = sys.stdin.buffer.read()
res = []
for i in range(2):
    try:
        ok = dkim.DKIM(msg).verify(idx=i)
    except dkim.ValidationError:
        ok = False
    res.append("pass" if ok else "fail")
print(" ".join(res))
`
	cases := []struct {
		name string
		msg  string
		want string
	}{
		{"as signed", signed, "pass pass"},
		// Relaxed canonicalisation: whitespace inside lines and trailing
		// empty lines may change on the way.
		{"whitespace changed", strings.Replace(strings.Replace(signed, "Hello  there", "Hello there", 1), "one   \r\n", "one\r\n", 1) + "\r\n", "pass pass"},
		{"subject changed", strings.Replace(signed, "Hello  there", "Hello world", 1), "fail fail"},
		{"body changed", strings.Replace(signed, "line two", "line 2", 1), "fail fail"},
		{"From added (oversigned)", strings.Replace(signed, "From: Alice", "From: Mallory <m@evil.example>\r\nFrom: Alice", 1), "fail fail"},
		{"Reply-To added (oversigned)", strings.Replace(signed, "To: bob", "Reply-To: m@evil.example\r\nTo: bob", 1), "fail fail"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := runOracle(t, d.Addr, verify, []byte(c.msg)); got != c.want {
				t.Errorf("dkimpy: %s, want %s", got, c.want)
			}
		})
	}
	// And go-msgauth's verifier agrees through our resolver.
	r := NewResolver(d.Addr)
	vs, err := dkim.VerifyWithOptions(strings.NewReader(signed), &dkim.VerifyOptions{
		LookupTXT: func(n string) ([]string, error) { return r.LookupTXT(context.Background(), n) },
	})
	if err != nil || len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
		t.Fatalf("go-msgauth: %v %+v", err, vs)
	}
}

// TestSignOnlyOwnDomains: mail from a domain without keys is not signed,
// nor one with two authors.
func TestSignOnlyOwnDomains(t *testing.T) {
	s, err := NewSigner([]DomainKeys{testKeys(t, nil, "example.org", "a")})
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"From: x@example.com", "From: a@example.org, b@example.org", "From: a@example.org\r\nFrom: b@example.org", "X: no from"} {
		msg := from + "\r\nSubject: x\r\n\r\nbody\r\n"
		if sig, err := s.Sign(strings.NewReader(msg), int64(len(msg))); err != nil || sig != nil {
			t.Errorf("%q: signed %q, %v", from, sig, err)
		}
	}
	// The author's domain is matched without regard to case, and is what
	// follows the last '@' (a quoted local part may hold one).
	for _, from := range []string{"<A@EXAMPLE.ORG>", `"x@y" <"x@y"@example.org>`} {
		msg := "From: " + from + "\r\n\r\nx\r\n"
		if sig, _ := s.Sign(strings.NewReader(msg), int64(len(msg))); bytes.Count(sig, []byte("DKIM-Signature:")) != 2 {
			t.Errorf("From: %s not signed: %q", from, sig)
		}
	}
}

// TestKeyRecordMatch: MatchRecord accepts the published record of the key
// (even split into strings and with spaces in p=) and refuses another key,
// another algorithm and a revoked record.
func TestKeyRecordMatch(t *testing.T) {
	dk := testKeys(t, nil, "example.org", "a")
	other := testKeys(t, nil, "example.org", "b")
	for _, a := range algorithms {
		rec, _ := TXTRecord(dk.Keys[a])
		otherRec, _ := TXTRecord(other.Keys[a])
		spaced := strings.Replace(rec, "p=", "p= ", 1)
		if err := MatchRecord([]string{"unrelated", spaced}, dk.Keys[a]); err != nil {
			t.Errorf("%s: own record refused: %v", a, err)
		}
		if err := MatchRecord([]string{otherRec}, dk.Keys[a]); err == nil {
			t.Errorf("%s: another key's record accepted", a)
		}
		if err := MatchRecord([]string{"v=DKIM1; k=" + string(a) + "; p="}, dk.Keys[a]); err == nil {
			t.Errorf("%s: revoked record accepted", a)
		}
		if err := MatchRecord(nil, dk.Keys[a]); err == nil {
			t.Errorf("%s: no record accepted", a)
		}
	}
	if _, err := LoadKey(writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(dk.Keys[RSA].(*rsa.PrivateKey))), Ed25519); err == nil {
		t.Error("an RSA key loaded as Ed25519")
	}
	if _, err := GenerateKeys(t.TempDir(), "example.org", "../x"); err == nil {
		t.Error("keygen took a selector with a slash")
	}
}

func writePEM(t testing.TB, typ string, der []byte) string {
	p := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// dkimpyKeys are keys for messages signed by dkimpy: PKCS#1 RSA and a raw
// Ed25519 seed, the formats dkimpy reads.
func dkimpyKeys(t testing.TB, d *testenv.DNS, domain string) (rsaPEM, edSeed string) {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for sel, k := range map[string]crypto.Signer{"py-rsa": rk, "py-ed": ek} {
		rec, _ := TXTRecord(k)
		d.Set(t, sel+"._domainkey."+domain+". 300 IN TXT "+ZoneStrings(rec))
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})),
		base64.StdEncoding.EncodeToString(ek.Seed())
}

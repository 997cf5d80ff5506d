package mailauth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Algorithm is a DKIM key type. Every selector of ours is a pair: one
// Ed25519 key (RFC 8463) and one RSA-2048 key, each under its own DNS
// name, because two TXT records at one name give undefined results
// (RFC 6376 §3.6.2.2) and receivers that do not know Ed25519 still need
// the RSA signature.
type Algorithm string

const (
	Ed25519 Algorithm = "ed25519"
	RSA     Algorithm = "rsa"
)

// Algorithms in the order signatures are added.
var algorithms = [...]Algorithm{Ed25519, RSA}

// DNSSelector is the DNS selector of one key of configuration selector sel:
// "sel-ed25519" or "sel-rsa".
func DNSSelector(sel string, a Algorithm) string { return sel + "-" + string(a) }

// rsaBits: RFC 8301 requires at least 1024 and recommends 2048; larger keys
// do not fit in one 255-octet TXT string and some DNS providers mangle them.
const rsaBits = 2048

// GenerateKeys writes the key pair of selector sel for domain into
// dir/domain/ as PKCS#8 PEM files of mode 0600 and returns their paths. It
// never overwrites an existing key: rotating means a new selector.
func GenerateKeys(dir, domain, sel string) (map[Algorithm]string, error) {
	if !validLabel(sel) {
		return nil, fmt.Errorf("dkim keygen: selector %q: want letters, digits and '-'", sel)
	}
	if !validDomain(domain) {
		return nil, fmt.Errorf("dkim keygen: domain %q is not a host name", domain)
	}
	dd := filepath.Join(dir, strings.ToLower(domain))
	if err := os.MkdirAll(dd, 0o700); err != nil {
		return nil, fmt.Errorf("dkim keygen: %w", err)
	}
	paths := map[Algorithm]string{}
	for _, a := range algorithms {
		var key crypto.Signer
		var err error
		switch a {
		case Ed25519:
			_, key, err = ed25519.GenerateKey(rand.Reader)
		case RSA:
			key, err = rsa.GenerateKey(rand.Reader, rsaBits)
		}
		if err != nil {
			return nil, fmt.Errorf("dkim keygen: %s: %w", a, err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("dkim keygen: %s: %w", a, err)
		}
		p := filepath.Join(dd, DNSSelector(sel, a)+".pem")
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("dkim keygen: %w", err)
		}
		err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p)
			return nil, fmt.Errorf("dkim keygen: writing %s: %w", p, err)
		}
		paths[a] = p
	}
	return paths, nil
}

// LoadKey reads a PEM private key (PKCS#8, or PKCS#1 for RSA) and checks
// that it is of type a (RSA keys: at least 1024 bits, RFC 8301).
func LoadKey(path string, a Algorithm) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("dkim key %s: no PEM block", path)
	}
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		err = fmt.Errorf("PEM type %q", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %w", path, err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		if a == Ed25519 {
			return k, nil
		}
	case *rsa.PrivateKey:
		if a == RSA {
			if k.N.BitLen() < 1024 {
				return nil, fmt.Errorf("dkim key %s: RSA key of %d bits, want at least 1024", path, k.N.BitLen())
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("dkim key %s: not an %s key", path, a)
}

// TXTRecord is the value of the DKIM key record for key's public half
// (RFC 6376 §3.6.1), as one string: split it into strings of at most 255
// octets in a zone file (ZoneStrings).
func TXTRecord(key crypto.Signer) (string, error) {
	a, p, err := publicKey(key.Public())
	if err != nil {
		return "", err
	}
	return "v=DKIM1; k=" + string(a) + "; p=" + p, nil
}

func publicKey(pub crypto.PublicKey) (Algorithm, string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Ed25519, base64.StdEncoding.EncodeToString(k), nil
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", "", fmt.Errorf("dkim: %w", err)
		}
		return RSA, base64.StdEncoding.EncodeToString(der), nil
	}
	return "", "", fmt.Errorf("dkim: unsupported key type %T", pub)
}

// ZoneStrings quotes v as a zone file's TXT data, in strings of at most 255
// octets.
func ZoneStrings(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	return strings.Join(parts, " ")
}

// ErrNoKeyRecord: the TXT records hold no DKIM key (not published yet).
var ErrNoKeyRecord = errors.New("no DKIM key record")

// MatchRecord says whether one of the published TXT records txts is the
// record of key: same algorithm and same public key. A record revoked (empty
// p=) or of another key is a mismatch.
func MatchRecord(txts []string, key crypto.Signer) error {
	a, p, err := publicKey(key.Public())
	if err != nil {
		return err
	}
	var found []string
	for _, t := range txts {
		tags := parseTags(t)
		if tags == nil || (tags["v"] != "" && tags["v"] != "DKIM1") {
			continue
		}
		k := tags["k"]
		if k == "" {
			k = "rsa"
		}
		pp := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, tags["p"])
		if Algorithm(k) == a && pp == p {
			return nil
		}
		found = append(found, fmt.Sprintf("k=%s p=%.20s…", k, pp))
	}
	if len(found) == 0 {
		return ErrNoKeyRecord
	}
	return fmt.Errorf("published key differs (%s)", strings.Join(found, ", "))
}

// parseTags reads a tag=value list (RFC 6376 §3.2); nil if malformed.
func parseTags(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Split(s, ";") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

func validLabel(s string) bool {
	if s == "" || len(s) > 50 || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if !validLabel(l) || len(l) > 63 {
			return false
		}
	}
	return true
}

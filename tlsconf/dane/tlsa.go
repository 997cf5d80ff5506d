package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Record is one TLSA record (RFC 6698 §2.1).
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// TLSA usages, selectors and matching types (RFC 7218 names).
const (
	UsagePKIXTA = 0
	UsagePKIXEE = 1
	UsageDANETA = 2
	UsageDANEEE = 3

	SelectorCert = 0
	SelectorSPKI = 1

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Limits on hostile input.
const (
	// MaxRecords is how many TLSA records are considered; the rest of a
	// larger RRset is ignored.
	MaxRecords = 32
	maxChain   = 10
	maxFull    = 16 << 10 // a full certificate or key in a record
)

func (r Record) String() string {
	d := hex.EncodeToString(r.Data)
	if len(d) > 64 {
		d = d[:64] + "…"
	}
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, d)
}

// Usable reports whether an SMTP client may authenticate with r (RFC 7672
// §3.1.3 and RFC 7671 §4: PKIX usages are not for SMTP; an unknown
// parameter or a digest of the wrong length makes the record unusable).
func (r Record) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0 && len(r.Data) <= maxFull
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Usable returns the usable records among rs, at most MaxRecords.
func Usable(rs []Record) []Record {
	var out []Record
	for _, r := range rs {
		if len(out) == MaxRecords {
			break
		}
		if r.Usable() {
			out = append(out, r)
		}
	}
	return out
}

// matches reports whether cert matches the record's selector and data.
func (r Record) matches(cert *x509.Certificate) bool {
	var b []byte
	switch r.Selector {
	case SelectorCert:
		b = cert.Raw
	case SelectorSPKI:
		b = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return bytes.Equal(b, r.Data)
	case MatchSHA256:
		h := sha256.Sum256(b)
		return bytes.Equal(h[:], r.Data)
	case MatchSHA512:
		h := sha512.Sum512(b)
		return bytes.Equal(h[:], r.Data)
	}
	return false
}

// ErrNoMatch: the chain matches none of the usable records. RFC 7672 §2.2:
// the delivery must not go on to this host (nor in clear text).
var ErrNoMatch = errors.New("dane: no TLSA record matches the server's certificate chain")

// Verify checks a server's chain against usable TLSA records. names are
// what a DANE-TA-authenticated leaf may be issued to: the TLSA base domain
// (the MX host) and the next-hop domain (RFC 7672 §3.2.2); DANE-EE needs no
// name. It returns the record that matched.
func Verify(cs tls.ConnectionState, records []Record, names []string) (Record, error) {
	chain := cs.PeerCertificates
	if len(chain) == 0 {
		return Record{}, errors.New("dane: the server sent no certificate")
	}
	if len(chain) > maxChain {
		chain = chain[:maxChain]
	}
	leaf := chain[0]
	var taErr error
	for _, r := range records {
		switch r.Usage {
		case UsageDANEEE:
			if r.matches(leaf) {
				return r, nil
			}
		case UsageDANETA:
			// The anchor is a certificate the server sent (RFC 7671 §5.2.2
			// asks servers to include it); the leaf itself is no anchor.
			for i := 1; i < len(chain); i++ {
				if !r.matches(chain[i]) {
					continue
				}
				if err := verifyToAnchor(chain[:i], chain[i], names); err != nil {
					taErr = err
					continue
				}
				return r, nil
			}
			// "2 0 0" publishes the whole anchor certificate: the server
			// need not send it (RFC 7671 §5.2.2).
			if r.Selector == SelectorCert && r.MatchingType == MatchFull {
				if anchor, err := x509.ParseCertificate(r.Data); err == nil {
					if err := verifyToAnchor(chain, anchor, names); err != nil {
						taErr = err
						continue
					}
					return r, nil
				}
			}
		}
	}
	if taErr != nil {
		return Record{}, fmt.Errorf("%w (DANE-TA: %v)", ErrNoMatch, taErr)
	}
	return Record{}, ErrNoMatch
}

// verifyToAnchor checks that the leaf (chain[0]) chains to anchor through
// the other certificates of chain, and that it names one of names.
func verifyToAnchor(chain []*x509.Certificate, anchor *x509.Certificate, names []string) error {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return err
	}
	for _, n := range names {
		if n != "" && namesHost(chains, strings.TrimSuffix(n, ".")) {
			return nil
		}
	}
	return fmt.Errorf("certificate names none of %s", strings.Join(names, ", "))
}

// namesHost matches host against the leaf of chains (the chains Verify
// built from it to the anchor) as RFC 7672 §3.2.3 says: its DNS-IDs
// (subjectAltName dNSName) when it has any, else its CN-ID, the subject's
// common name, as Postfix (OpenSSL's X509_check_host) does. Go's
// VerifyHostname ignores the common name since Go 1.15, so a private CA's
// leaf that names the MX host in its CN alone (openssl req -subj
// /CN=mx... without -addext subjectAltName) failed DANE-TA, and the mail
// waited, not to go in clear text either.
//
// Go's Verify applies the name constraints of the chain's CAs to the
// subjectAltName only, so the CN is checked against them here, as OpenSSL
// does (NAME_CONSTRAINTS_check_CN): else a sub-CA constrained to its own
// domain signs a leaf with no subjectAltName and CN=mx.victim.test, and
// that leaf passes for victim.test. Checking the CN against them, not
// refusing it under any constrained CA, keeps the CN-only leaf of a
// constrained private CA delivered, as Postfix delivers it.
func namesHost(chains [][]*x509.Certificate, host string) bool {
	leaf := chains[0][0]
	if len(leaf.DNSNames) > 0 {
		// Go's VerifyHostname lets "*.test" stand for mx.test, where
		// X509_check_host (Postfix's) takes a wildcard only over two
		// labels at least: such a DNS-ID names no host.
		named := *leaf
		named.DNSNames = slices.DeleteFunc(slices.Clone(leaf.DNSNames), func(n string) bool {
			rest, wild := strings.CutPrefix(n, "*.")
			return wild && overOneLabel(rest)
		})
		return named.VerifyHostname(host) == nil
	}
	cn := strings.ToLower(strings.TrimSuffix(leaf.Subject.CommonName, "."))
	host = strings.ToLower(host)
	// Suffix matching, here and against name constraints, means something
	// for host names only; a CN that is none (a person's name, "My CA")
	// names no host.
	if !isHostname(cn) || !isHostname(host) || strings.HasPrefix(host, "*.") {
		return false
	}
	if rest, ok := strings.CutPrefix(cn, "*."); ok {
		// A wildcard stands for one whole leftmost label (§3.2.3), and
		// only under a name of two labels at least, as X509_check_host
		// wants: "*.test" or "*.com" would vouch for a whole TLD.
		label, parent, found := strings.Cut(host, ".")
		if !found || label == "" || parent != rest || overOneLabel(rest) {
			return false
		}
	} else if cn != host {
		return false
	}
	// Any one of the chains that Verify built suffices, as for the
	// subjectAltName. Both the CN and the host it was taken for must be
	// allowed: a wildcard CN allowed as a name may still stand for an
	// excluded host (*.example.org for the excluded mx.example.org).
	for _, chain := range chains {
		if dnsConstraintsAllow(chain, cn) && dnsConstraintsAllow(chain, host) {
			return true
		}
	}
	return false
}

// overOneLabel says whether the rest of a wildcard name ("test" of
// "*.test") is a single label: "*.test" or "*.com" would vouch for a whole
// TLD.
func overOneLabel(rest string) bool {
	return !strings.Contains(strings.TrimSuffix(rest, "."), ".")
}

// dnsConstraintsAllow: name is within one of the permitted DNS subtrees of
// every CA of chain that has any, and within none of their excluded ones
// (RFC 5280 §4.2.1.10). The leaf's own constraints bind nothing; the
// anchor's do, as in Go's Verify and OpenSSL.
func dnsConstraintsAllow(chain []*x509.Certificate, name string) bool {
	for _, ca := range chain[1:] {
		if len(ca.PermittedDNSDomains) > 0 && !slices.ContainsFunc(ca.PermittedDNSDomains, func(base string) bool {
			return inDNSSubtree(name, base)
		}) {
			return false
		}
		if slices.ContainsFunc(ca.ExcludedDNSDomains, func(base string) bool {
			return inDNSSubtree(name, base)
		}) {
			return false
		}
	}
	return true
}

// inDNSSubtree: name (lower case) is base or a name under it, as Go's
// x509 and OpenSSL's nc_dns match a dNSName constraint: "" is every name,
// and a base with a leading dot only the names under it.
func inDNSSubtree(name, base string) bool {
	base = strings.ToLower(base)
	switch {
	case base == "":
		return true
	case strings.HasPrefix(base, "."):
		return len(name) > len(base) && strings.HasSuffix(name, base)
	default:
		return name == base || strings.HasSuffix(name, "."+base)
	}
}

// isHostname: name (lower case, without its final dot) is a host name in
// letters, digits, '-' and '_' (OpenSSL's cn2dnsid takes '_' too), with at
// most a leading "*." label.
func isHostname(name string) bool {
	name = strings.TrimPrefix(name, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

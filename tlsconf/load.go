package tlsconf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
)

// maxPEMFile bounds what we read from a certificate, key or CA file: a full
// chain is a few KiB and the system CA bundle about 200 KiB; a path pointing
// at a log file or a device must not be read whole.
const maxPEMFile = 4 << 20

// minRSABits is the smallest RSA key accepted (RFC 9325 §4.3).
const minRSABits = 2048

// readPEMFile reads a whole file of at most maxPEMFile bytes, mapping the
// failure to ErrMissing or ErrUnreadable.
func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FileError{File: path, Kind: ErrMissing, Err: err}
		}
		return nil, &FileError{File: path, Kind: ErrUnreadable, Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, &FileError{File: path, Kind: ErrUnreadable, Err: err}
	}
	if len(data) > maxPEMFile {
		return nil, &FileError{File: path, Kind: ErrBadPEM,
			Err: fmt.Errorf("larger than %d bytes, not a PEM file", maxPEMFile)}
	}
	return data, nil
}

// loadPair reads certFile and keyFile (they may be the same file holding both)
// and returns the pair if it is usable at now: the certificate chain parses
// (leaf first), the key parses, is unencrypted and strong enough, matches
// the leaf, and the leaf is within its validity period.
func loadPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	cert, err := readPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if err := checkValidity(certFile, cert.Leaf, now); err != nil {
		return nil, err
	}
	return cert, nil
}

// readPair is loadPair without the validity period: the pair can be served,
// though clients that verify will refuse it if checkValidity fails.
func readPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM := certPEM
	if keyFile != certFile {
		keyPEM, err = readPEMFile(keyFile)
		if err != nil {
			return nil, err
		}
	}
	ders, leaf, err := parseCertChain(certFile, certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyFile, keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		// A chain written root or intermediate first (cat chain.pem
		// cert.pem) is refused as OpenSSL refuses it for Postfix and
		// Dovecot, but said as what it is.
		for i, der := range ders[1:] {
			if c, err := x509.ParseCertificate(der); err == nil && ok && pub.Equal(c.PublicKey) {
				return nil, &FileError{File: keyFile, Kind: ErrKeyMismatch,
					Err: fmt.Errorf("key belongs to certificate #%d of %s (subject %q), not to the first (subject %q): the file must hold the server's certificate first, then its intermediates",
						i+2, certFile, c.Subject.String(), leaf.Subject.String())}
			}
		}
		return nil, &FileError{File: keyFile, Kind: ErrKeyMismatch,
			Err: fmt.Errorf("key does not belong to the certificate in %s (subject %q)", certFile, leaf.Subject.String())}
	}
	return &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}, nil
}

// checkValidity fails with ErrNotYetValid or ErrExpired, naming certFile,
// if now is outside the leaf's validity period.
func checkValidity(certFile string, leaf *x509.Certificate, now time.Time) error {
	if now.Before(leaf.NotBefore) {
		return &FileError{File: certFile, Kind: ErrNotYetValid,
			Err: fmt.Errorf("valid from %s, now is %s", leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	if now.After(leaf.NotAfter) {
		return &FileError{File: certFile, Kind: ErrExpired,
			Err: fmt.Errorf("expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	return nil
}

// parseCertChain returns every CERTIFICATE block of data as DER, and the
// first one parsed: the leaf, as RFC 8446 §4.4.2 and every ACME client order
// the chain. Other blocks (a key in a combined file) are skipped.
func parseCertChain(file string, data []byte) ([][]byte, *x509.Certificate, error) {
	var ders [][]byte
	var other []string
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			other = append(other, b.Type)
			continue
		}
		ders = append(ders, b.Bytes)
	}
	if len(ders) == 0 {
		return nil, nil, &FileError{File: file, Kind: ErrBadPEM, Err: noBlockError("CERTIFICATE", other)}
	}
	var leaf *x509.Certificate
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, &FileError{File: file, Kind: ErrBadPEM, Err: fmt.Errorf("certificate #%d: %w", i+1, err)}
		}
		if i == 0 {
			leaf = c
		}
	}
	return ders, leaf, nil
}

// parseKey returns the first private key of data. Like crypto/tls it tries
// PKCS #8, PKCS #1 and SEC 1 whatever the block's label says, because tools
// mislabel keys.
func parseKey(file string, data []byte) (crypto.Signer, error) {
	var other []string
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			other = append(other, b.Type)
			continue
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, &FileError{File: file, Kind: ErrBadPEM,
				Err: errors.New("the key is encrypted; courriel needs it unencrypted (and readable by root only)")}
		}
		key, err := parseKeyDER(b.Bytes)
		if err != nil {
			return nil, &FileError{File: file, Kind: ErrBadPEM, Err: err}
		}
		if k, ok := key.(*rsa.PrivateKey); ok && k.N.BitLen() < minRSABits {
			return nil, &FileError{File: file, Kind: ErrWeakKey, Err: fmt.Errorf("%d bits", k.N.BitLen())}
		}
		return key, nil
	}
	return nil, &FileError{File: file, Kind: ErrBadPEM, Err: noBlockError("PRIVATE KEY", other)}
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("private key is not PKCS #8, PKCS #1 or SEC 1")
}

// noBlockError explains a file without the wanted PEM block, naming what it
// holds instead so that swapped cert/key paths are obvious.
func noBlockError(want string, found []string) error {
	if len(found) == 0 {
		return fmt.Errorf("no PEM %s block (is the file empty, DER or something else?)", want)
	}
	return fmt.Errorf("no PEM %s block, found %s (are the certificate and key paths swapped?)", want, strings.Join(found, ", "))
}

// CheckHostnames returns the names of hostnames (DNS names or IP literals)
// that cert is not valid for, in order. check-config prints them; New logs
// them as warnings.
func CheckHostnames(cert *x509.Certificate, hostnames []string) []string {
	var bad []string
	for _, h := range hostnames {
		h = strings.TrimSuffix(strings.TrimSpace(h), ".")
		if h == "" {
			continue
		}
		if cert.VerifyHostname(h) != nil {
			bad = append(bad, h)
		}
	}
	return bad
}

// VerifyChain checks the chain served now as the clients that verify do
// (Thunderbird, phones, Outlook, an MTA under MTA-STS or a verify policy):
// the leaf, through the other certificates of its file, to one of roots, at
// now; the names are CheckHostnames' business. Postfix and Dovecot serve
// such a chain without a word, and the admin learns of it from users: the
// error says what is wrong in the file (certbot's cert.pem named instead
// of fullchain.pem, an expired intermediate, a self-signed certificate).
// nil on an ACME Manager before its first certificate.
func (m *Manager) VerifyChain(roots *x509.CertPool, now time.Time) error {
	c := m.cur.Load()
	if c == nil {
		return nil
	}
	file, _ := m.Files()
	return verifyChain(file, c, roots, now)
}

// selfSigned says whether c is signed by its own key. Not
// CheckSignatureFrom: it refuses a self-signed leaf without CA:TRUE.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func verifyChain(file string, c *tls.Certificate, roots *x509.CertPool, now time.Time) error {
	leaf := c.Leaf
	inter := x509.NewCertPool()
	var others []*x509.Certificate
	for _, der := range c.Certificate[1:] {
		o, err := x509.ParseCertificate(der)
		if err != nil {
			continue // parsed when loaded
		}
		others = append(others, o)
		inter.AddCert(o)
	}
	// The leaf's own dates are checkValidity's: the chain is judged at a
	// time the leaf is valid, so that an expired leaf is not also called
	// a broken chain.
	if now.After(leaf.NotAfter) {
		now = leaf.NotAfter
	} else if now.Before(leaf.NotBefore) {
		now = leaf.NotBefore
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now})
	if err == nil {
		return nil
	}
	// The reason in the file's terms: what is expired, what is missing.
	for i, o := range others {
		if now.After(o.NotAfter) || now.Before(o.NotBefore) {
			return fmt.Errorf("%s: certificate #%d (%q) is valid only from %s to %s: clients that verify refuse the chain (%w); put the issuer's current intermediate in the file",
				file, i+2, o.Subject.String(), o.NotBefore.UTC().Format(time.RFC3339), o.NotAfter.UTC().Format(time.RFC3339), err)
		}
	}
	if selfSigned(leaf) {
		return fmt.Errorf("%s: self-signed (%q): clients that verify refuse it unless told to trust it", file, leaf.Subject.String())
	}
	issued := slices.ContainsFunc(others, func(o *x509.Certificate) bool { return bytes.Equal(o.RawSubject, leaf.RawIssuer) })
	if !issued {
		return fmt.Errorf("%s: the leaf's issuer %q is neither in the file nor a trusted root, so clients that verify refuse the chain unless told to trust it (%w); with a public CA, name the full chain, the leaf then its intermediates (certbot's fullchain.pem, not cert.pem)",
			file, leaf.Issuer.String(), err)
	}
	top := leaf
	if len(others) > 0 {
		top = others[len(others)-1]
	}
	return fmt.Errorf("%s: the chain ends at %q, issued by %q, which is no trusted root: clients that verify refuse it unless they are told to trust that CA (%w)",
		file, top.Subject.String(), top.Issuer.String(), err)
}

package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Policy is the TLS security level of outbound SMTP, named after Postfix's
// smtp_tls_security_level.
type Policy string

const (
	// PolicyNone: never STARTTLS.
	PolicyNone Policy = "none"
	// PolicyMay: STARTTLS when offered, certificate unchecked; without it
	// (or when the handshake fails) the caller may deliver in plaintext.
	// Opportunistic TLS, RFC 7435.
	PolicyMay Policy = "may"
	// PolicyEncrypt: TLS is mandatory, certificate unchecked.
	PolicyEncrypt Policy = "encrypt"
	// PolicyVerify: TLS is mandatory and the certificate must chain to a
	// trusted root and name the server (the seed's setting).
	PolicyVerify Policy = "verify"
)

// ParsePolicy parses a configuration value; only the four lowercase names
// are accepted.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyNone, PolicyMay, PolicyEncrypt, PolicyVerify:
		return p, nil
	case "secure", "dane", "dane-only", "fingerprint":
		return "", fmt.Errorf("tls: security level %q is not supported (use none, may, encrypt or verify)", s)
	}
	return "", fmt.Errorf("tls: unknown security level %q (want none, may, encrypt or verify)", s)
}

// RequiresTLS reports whether delivery must fail (temporarily) rather than
// go out in plaintext when TLS cannot be established.
func (p Policy) RequiresTLS() bool {
	return p == PolicyEncrypt || p == PolicyVerify
}

// ClientConfig returns the configuration for STARTTLS (or implicit TLS) to
// serverName under p; nil for PolicyNone. verify checks the chain against
// roots (the system pool when nil) and serverName; may and encrypt do not
// verify, as in Postfix, since most MTAs present certificates that would
// not verify and an unverified channel still defeats passive eavesdropping.
// All levels require TLS 1.2 (RFC 8996 deprecates 1.0 and 1.1); cipher
// suites are Go's client defaults. An unknown policy is treated as verify:
// failing closed.
func ClientConfig(p Policy, serverName string, roots *x509.CertPool) *tls.Config {
	switch p {
	case PolicyNone:
		return nil
	case PolicyMay, PolicyEncrypt:
		return &tls.Config{
			ServerName:         serverName, // still sent as SNI
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true,
		}
	default:
		return &tls.Config{
			ServerName: serverName,
			MinVersion: tls.VersionTLS12,
			RootCAs:    roots,
		}
	}
}

// LoadCAPool reads trusted roots from one PEM file (Postfix smtp_tls_CAfile,
// a CA bundle) or from every regular file of one directory (smtp_tls_CApath,
// e.g. /etc/ssl/certs; not recursive, files without a certificate block are
// skipped, hash symlinks to the same certificate count once). A block or a
// directory entry that does not parse is skipped, as OpenSSL does; ending
// with no usable certificate is an error naming the file at fault.
func LoadCAPool(fileOrDir string) (*x509.CertPool, error) {
	fi, err := os.Stat(fileOrDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FileError{File: fileOrDir, Kind: ErrMissing, Err: err}
		}
		return nil, &FileError{File: fileOrDir, Kind: ErrUnreadable, Err: err}
	}
	pool := x509.NewCertPool()
	if !fi.IsDir() {
		n, err := addPEMFile(pool, fileOrDir)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, &FileError{File: fileOrDir, Kind: ErrBadPEM, Err: errors.New("no CERTIFICATE block")}
		}
		return pool, nil
	}
	entries, err := os.ReadDir(fileOrDir)
	if err != nil {
		return nil, &FileError{File: fileOrDir, Kind: ErrUnreadable, Err: err}
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names) // deterministic errors
	total := 0
	var firstErr error
	for _, name := range names {
		path := filepath.Join(fileOrDir, name)
		fi, err := os.Stat(path) // follows c_rehash's symlinks
		if err != nil || !fi.Mode().IsRegular() {
			continue // dangling link, subdirectory, socket
		}
		n, err := addPEMFile(pool, path)
		if err != nil {
			// One bad file must not take the whole system store down.
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		total += n
	}
	if total == 0 && firstErr != nil {
		return nil, firstErr
	}
	if total == 0 {
		return nil, &FileError{File: fileOrDir, Kind: ErrBadPEM, Err: errors.New("no CERTIFICATE block in any file of the directory")}
	}
	return pool, nil
}

// addPEMFile adds every certificate of one PEM file to pool and returns how
// many it added: a file with certificate blocks none of which parse is an
// error, a file without any (a README, a CRL) adds none.
func addPEMFile(pool *x509.CertPool, path string) (int, error) {
	data, err := readPEMFile(path)
	if err != nil {
		return 0, err
	}
	n, seen := 0, 0
	var firstErr error
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" && b.Type != "TRUSTED CERTIFICATE" {
			continue
		}
		seen++
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			// A distribution bundle may hold a root Go cannot parse (or
			// OpenSSL's TRUSTED CERTIFICATE form, trust settings appended
			// to the DER); skipping it matches OpenSSL and
			// AppendCertsFromPEM. A file whose every block fails still
			// ends as "no usable certificate".
			if firstErr == nil {
				firstErr = fmt.Errorf("certificate #%d: %w", seen, err)
			}
			continue
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 && firstErr != nil {
		return 0, &FileError{File: path, Kind: ErrBadPEM, Err: firstErr}
	}
	return n, nil
}

package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// DefaultRenewBefore is ACMEOptions.RenewBefore when zero: Let's Encrypt's
// own advice for 90-day certificates.
const DefaultRenewBefore = 30 * 24 * time.Hour

// acmeRefreshInterval is how often Watch asks for each name's certificate on
// an ACME Manager: cheap when held (a map lookup), and it retries an
// issuance that failed at start-up (within the failure backoff below).
const acmeRefreshInterval = time.Hour

// Issuance failure backoff. autocert itself retries on every handshake, so a
// mail server whose challenge route is broken would order a certificate per
// inbound connection and soon hit the CA's failed-validation limit (Let's
// Encrypt: 5 per account, host name and hour). Handshakes during the backoff
// fail fast with the last error.
const (
	acmeMinBackoff = time.Minute
	acmeMaxBackoff = time.Hour
)

// ACMEOptions configures NewACME.
type ACMEOptions struct {
	// DirectoryURL is the ACME directory (RFC 8555 §7.1.1), e.g.
	// https://acme-v02.api.letsencrypt.org/directory.
	DirectoryURL string
	// Email is the account contact (optional).
	Email string
	// Hostnames are the names to obtain certificates for, the first being
	// the mail host name served to clients that send no (or another) SNI.
	// Nothing else is ever requested. Each must be a fully qualified DNS
	// name in A-label form: no IP literal, no wildcard (TLS-ALPN-01 can
	// validate neither; RFC 8737 §3 and §6).
	Hostnames []string
	// CacheDir keeps the account key and the certificates across restarts
	// (directory 0700, files 0600), e.g. /var/lib/courriel/acme. Without it
	// every restart would order new certificates and soon hit rate limits.
	CacheDir string
	// RootCAs verifies the ACME server's HTTPS certificate; nil means the
	// system roots.
	RootCAs *x509.CertPool
	// Logger receives issuance, renewal and failure messages; nil discards.
	Logger *slog.Logger
	// RenewBefore is how long before expiry a certificate is renewed in the
	// background; 0 means DefaultRenewBefore.
	RenewBefore time.Duration
}

// ErrHostNotAllowed is matched (errors.Is) by a *HostNotAllowedError.
var ErrHostNotAllowed = errors.New("host name not in the ACME host names")

// HostNotAllowedError is returned for a TLS-ALPN-01 challenge or an
// issuance for a name outside ACMEOptions.Hostnames: such a name is never
// requested from the CA.
type HostNotAllowedError struct {
	Name    string   // as received (hostile: quote it when logging)
	Allowed []string // ACMEOptions.Hostnames, normalized
}

func (e *HostNotAllowedError) Error() string {
	return fmt.Sprintf("tls: ACME: host name %q is not one of %s; no certificate is requested for it",
		e.Name, strings.Join(e.Allowed, ","))
}

func (e *HostNotAllowedError) Is(target error) bool { return target == ErrHostNotAllowed }

// acmeSource is the certificate source of an ACME Manager.
type acmeSource struct {
	ac        *autocert.Manager // its own locking; obtains, caches and renews
	hostnames []string          // immutable, normalized; [0] is the default
	log       *slog.Logger      // immutable

	mu       sync.Mutex
	failures map[string]*acmeFailure      // guarded by mu: per name, while issuance fails
	seen     map[string]*x509.Certificate // guarded by mu: per name, last leaf logged
}

type acmeFailure struct {
	err   error
	until time.Time     // no new attempt before this
	delay time.Duration // next backoff
}

// NewACME returns a Manager whose certificates come from an ACME CA by the
// TLS-ALPN-01 challenge (RFC 8737). It contacts nobody yet: the certificate
// is read from CacheDir or obtained on the first handshake, or at start-up
// by Obtain, and renewed in the background RenewBefore its expiry.
//
// The CA validates by connecting to port 443 of the host name (RFC 8737 §3)
// with the ALPN protocol "acme-tls/1"; the ServerConfig of this Manager
// answers such connections, so the administrator must route TCP 443 (the
// port the CA uses) to one of courriel's TLS listeners (implicit TLS: 465 or
// 993), e.g. with a firewall redirect, or run a dedicated listener on 443
// with ServerConfig. STARTTLS listeners (25, 587) cannot answer a challenge,
// since the CA speaks TLS at once.
func NewACME(o ACMEOptions) (*Manager, error) {
	if o.DirectoryURL == "" {
		return nil, errors.New("tls: ACME: a directory URL is required")
	}
	if !strings.HasPrefix(o.DirectoryURL, "https://") {
		// RFC 8555 §6.1: ACME runs over HTTPS only.
		return nil, fmt.Errorf("tls: ACME: directory URL %q is not https", o.DirectoryURL)
	}
	if o.CacheDir == "" {
		return nil, errors.New("tls: ACME: a cache directory is required (account key and certificates must survive restarts)")
	}
	if len(o.Hostnames) == 0 {
		return nil, errors.New("tls: ACME: at least one host name is required")
	}
	names := make([]string, 0, len(o.Hostnames))
	for _, h := range o.Hostnames {
		n, err := acmeHostname(h)
		if err != nil {
			return nil, err
		}
		if !containsName(names, n) {
			names = append(names, n)
		}
	}
	if err := prepareCacheDir(o.CacheDir); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	renew := o.RenewBefore
	if renew <= 0 {
		renew = DefaultRenewBefore
	}
	src := &acmeSource{hostnames: names, log: log, failures: make(map[string]*acmeFailure),
		seen: make(map[string]*x509.Certificate)}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	src.ac = &autocert.Manager{
		Prompt:      autocert.AcceptTOS,
		Cache:       autocert.DirCache(o.CacheDir),
		HostPolicy:  src.policy,
		RenewBefore: renew,
		Email:       o.Email,
		Client: &acme.Client{
			DirectoryURL: o.DirectoryURL,
			UserAgent:    "courriel",
			HTTPClient:   &http.Client{Transport: tr, Timeout: 2 * time.Minute},
		},
	}
	return &Manager{hostnames: names, log: log, interval: -1, now: time.Now, acme: src}, nil
}

// acmeHostname checks and normalizes one configured name.
func acmeHostname(h string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
	switch {
	case n == "":
		return "", fmt.Errorf("tls: ACME: empty host name in %q", h)
	case net.ParseIP(n) != nil:
		return "", fmt.Errorf("tls: ACME: %q is an IP address; ACME certificates are for DNS names", h)
	case strings.HasPrefix(n, "*."):
		return "", fmt.Errorf("tls: ACME: %q is a wildcard, which TLS-ALPN-01 cannot validate (RFC 8737 §6)", h)
	case !strings.Contains(n, "."):
		return "", fmt.Errorf("tls: ACME: %q is not a fully qualified name", h)
	case len(n) > 253: // RFC 1035 §2.3.4
		return "", fmt.Errorf("tls: ACME: host name %q is longer than 253 octets", h)
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("tls: ACME: %q is not a valid host name (label %q)", h, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return "", fmt.Errorf("tls: ACME: %q is not a valid host name (give internationalized names in xn-- form)", h)
			}
		}
	}
	return n, nil
}

// prepareCacheDir creates the cache 0700, or narrows an existing one to
// 0700: it holds the account key and certificate keys.
func prepareCacheDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tls: ACME: cache directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("tls: ACME: cache directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("tls: ACME: cache directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("tls: ACME: cache directory %s is accessible to others and cannot be narrowed: %w", dir, err)
		}
	}
	return nil
}

func containsName(names []string, n string) bool {
	for _, h := range names {
		if h == n {
			return true
		}
	}
	return false
}

// normalizeSNI lowercases and drops a trailing dot, as DNS names compare.
func normalizeSNI(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// policy is autocert's HostPolicy: defence in depth behind the name mapping
// in getCertificate, so that nothing but Hostnames ever reaches the CA.
func (s *acmeSource) policy(_ context.Context, host string) error {
	if containsName(s.hostnames, normalizeSNI(host)) {
		return nil
	}
	return &HostNotAllowedError{Name: host, Allowed: s.hostnames}
}

// wantsChallenge reports a TLS-ALPN-01 validation connection: RFC 8737 §3
// has the CA offer "acme-tls/1" and nothing else.
func wantsChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

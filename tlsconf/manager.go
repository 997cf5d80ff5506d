package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadCheckInterval is what cmd passes as
// Options.ReloadCheckInterval: a handshake stats the two files at most once
// per 5 s, so a renewal is served within seconds at the cost of two stat
// calls per interval.
const DefaultReloadCheckInterval = 5 * time.Second

// keySettleDelay is how long files whose key does not match the
// certificate must stand still before a check calls it an error: certbot
// and lego replace a renewal's live/ symlinks one at a time, within
// milliseconds, so a check can see the new certificate with the old key
// (or the reverse). Short beside DefaultReloadCheckInterval, so that the
// renewal is served as soon as its last file is in place.
const keySettleDelay = time.Second

// expirySoon is how close to NotAfter a newly loaded certificate draws a
// warning: Let's Encrypt renews at 30 days left, so 14 means renewal is
// failing.
const expirySoon = 14 * 24 * time.Hour

// Options configures a Manager.
type Options struct {
	// CertFile holds the certificate chain in PEM, leaf first; KeyFile the
	// unencrypted private key (PKCS #8, PKCS #1 or SEC 1). They may name the
	// same file.
	CertFile, KeyFile string
	// Hostnames are the names (or IP literals) clients use to reach this
	// server; a certificate not valid for one of them is logged as a warning,
	// not refused (the demo and tests use names no CA will sign).
	Hostnames []string
	// Logger receives load, reload and warning messages; nil discards them.
	Logger *slog.Logger
	// ReloadCheckInterval bounds how often a handshake stats the files to
	// notice a renewal: 0 checks on every handshake, a negative value never
	// (only Watch and Reload then). cmd uses DefaultReloadCheckInterval.
	ReloadCheckInterval time.Duration
	// Now is the clock for validity checks and ReloadCheckInterval; nil
	// means time.Now.
	Now func() time.Time
	// ClientRoots are the CAs the chain is checked against when loaded, to
	// warn of a chain the clients that verify refuse (the leaf without its
	// intermediate, an expired intermediate); nil means the system's.
	ClientRoots *x509.CertPool
	// ServeExpired makes New accept a pair whose certificate is expired or
	// not yet valid, logging an error, as Postfix and Dovecot start with
	// one: a renewal that failed before a reboot must not stop all mail
	// (MTAs using STARTTLS on port 25 do not verify; the clients that do
	// see the error and tell the admin). serve sets it; check-config does
	// not, so it reports such a certificate as a failure. Either way a
	// running Manager never replaces a valid certificate by an expired
	// one (see Reload).
	ServeExpired bool
}

// Manager holds the current certificate of all listeners and replaces it
// when the files change. Safe for concurrent use.
type Manager struct {
	hostnames []string      // immutable
	log       *slog.Logger  // immutable
	interval  time.Duration // immutable
	now       func() time.Time
	acme      *acmeSource    // immutable; non-nil for NewACME's Managers, which have no files
	roots     *x509.CertPool // immutable; nil: the system's

	// cur is what new handshakes get; never nil after New. Connections
	// already established keep the certificate they were handshaken with
	// (they no longer need it), so swapping it disturbs nobody.
	cur atomic.Pointer[tls.Certificate]

	mu        sync.Mutex // serializes checks and reloads; guards the fields below
	certFile  string     // guarded by mu: changed by SetFiles only
	keyFile   string     // guarded by mu: changed by SetFiles only
	lastCheck time.Time  // guarded by mu: last lazy check from a handshake
	attempted pairStamp  // guarded by mu: stamp of the last load, good or bad
	lastErr   string     // guarded by mu: last failure logged, to log each once
	// unsettled is when a check found files whose key does not match the
	// certificate, not logged as an error yet (see keySettleDelay); zero
	// otherwise.
	unsettled time.Time // guarded by mu
	// afterFunc schedules the second look at such files: time.AfterFunc,
	// but a test's hand (export_test.go), so that no test sleeps.
	afterFunc func(time.Duration, func()) // guarded by mu
}

// New loads the pair now and fails with a *FileError (see the Err* kinds)
// if it is unusable: courriel must not start with a certificate it cannot
// serve. A certificate outside its validity period (ErrExpired,
// ErrNotYetValid) is unusable only without Options.ServeExpired.
func New(o Options) (*Manager, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("tls: both a certificate file and a key file are required")
	}
	m := &Manager{
		certFile:  o.CertFile,
		keyFile:   o.KeyFile,
		hostnames: append([]string(nil), o.Hostnames...),
		log:       o.Logger,
		interval:  o.ReloadCheckInterval,
		now:       o.Now,
		roots:     o.ClientRoots,
		afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Stat before reading: a change between the two is seen by the next check.
	st, _ := statPair(m.certFile, m.keyFile)
	cert, err := readPair(m.certFile, m.keyFile)
	if err != nil {
		return nil, err
	}
	invalid := checkValidity(m.certFile, cert.Leaf, m.now())
	if invalid != nil && !o.ServeExpired {
		return nil, invalid
	}
	m.attempted = st
	m.installLocked(cert, "start", invalid)
	return m, nil
}

// ServerConfig returns a new *tls.Config for one listener; the caller may
// adjust it (NextProtos, ClientAuth) without affecting other listeners. Every
// one shares the Manager's current certificate.
//
// On an ACME Manager the config also answers TLS-ALPN-01 validation
// connections (see NewACME); its NextProtos stay the caller's.
func (m *Manager) ServerConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   serverCipherSuites(),
		GetCertificate: m.GetCertificate,
		// CurvePreferences stays nil: Go's default list (X25519MLKEM768 and
		// the other post-quantum hybrids first, then X25519, P-256, P-384,
		// P-521) is better than any list frozen here, and Go picks the
		// cipher suite order itself (server preference, AES-GCM first when
		// both ends have AES hardware, ChaCha20 otherwise).
	}
	if m.acme != nil {
		cfg.GetConfigForClient = m.acmeChallengeConfig
	}
	return cfg
}

// serverCipherSuites are the TLS 1.2 suites offered: ECDHE (forward secrecy)
// with an AEAD only (RFC 9325 §4.2). TLS 1.3 suites are not configurable
// in Go and are all AEAD. A fresh slice per config, so no caller can alter
// another's.
func serverCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// OpportunisticCipherSuites are serverCipherSuites and, after them, the
// ECDHE suites with AES-CBC and SHA-1: for port 25 alone, where a sender
// that cannot negotiate TLS goes on in clear (RFC 7435: any encryption
// beats none), as Postfix's smtpd_tls_ciphers = medium lets older MTAs in
// (OpenSSL 1.0.0 and appliances of that age know no AEAD suite). Go
// chooses the AEAD ones whenever the client offers one.
func OpportunisticCipherSuites() []uint16 {
	return append(serverCipherSuites(),
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	)
}

// ChooseCertificate is a tls.Config GetCertificate over several pairs,
// each with its Manager (its reloads): the first, in order, that the
// client can use and, when it names the server it wants (SNI), whose
// certificate holds that name; the first pair when none does (a client
// without SNI, a name no pair holds). The mail domains' own names
// (mail.domain2.example), each with its certificate, as Dovecot's
// local_name blocks and Postfix's tls_server_sni_maps serve them; and an
// ECDSA pair with an RSA pair of the same names, for the clients that
// know no ECDSA, as Postfix's smtpd_tls_eccert_file beside its RSA pair.
func ChooseCertificate(pairs ...*Manager) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		var first *tls.Certificate
		for i, m := range pairs {
			c, err := m.GetCertificate(hello)
			if i == 0 {
				if err != nil {
					return nil, err
				}
				first = c
			}
			if err == nil && c != nil && hello.SupportsCertificate(c) == nil {
				return c, nil
			}
		}
		return first, nil
	}
}

// GetCertificate is the tls.Config hook: it returns the current pair, after
// checking (at most once per ReloadCheckInterval) whether the files changed.
// The same certificate is served whatever the SNI: a mail server has one
// name, and many MTAs send no SNI at all.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.acme != nil {
		return m.acmeGetCertificate(hello)
	}
	m.maybeCheck()
	return m.cur.Load(), nil
}

// Certificate returns the leaf certificate currently served (for
// check-config and expiry metrics); on an ACME Manager, the first host
// name's, or nil before it is obtained.
func (m *Manager) Certificate() *x509.Certificate {
	c := m.cur.Load()
	if c == nil {
		return nil
	}
	return c.Leaf
}

// Reload reads the files now, whether they changed or not (SIGHUP). On
// failure the current certificate stays in service and the error says why.
//
// A certificate outside its validity period is refused while the one
// served is valid: a renewal gone wrong must not replace a good
// certificate. While the one served is itself expired or not yet valid
// (started with ServeExpired, or ran past its NotAfter), another such
// certificate is taken only if its NotAfter is later: it is the newer one
// (a not-yet-valid certificate beside an expired one is a renewal seen
// through a slow clock, and becomes valid; an older or the same one, a
// backup restored or the file touched, would be a step back or nothing).
// An ACME Manager has no files and renews by itself: Reload does nothing.
func (m *Manager) Reload() error {
	if m.acme != nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st, _ := statPair(m.certFile, m.keyFile)
	m.attempted = st
	m.lastErr = "" // an explicit reload always logs its outcome
	m.unsettled = time.Time{}
	return m.loadLocked("reload", false)
}

// Files returns the certificate and key files served from ("" for an ACME
// Manager).
func (m *Manager) Files() (certFile, keyFile string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.certFile, m.keyFile
}

// SetFiles makes the Manager serve, from now on, the pair in certFile and
// keyFile instead of its own files: a configuration reload that names
// other files (SIGHUP after moving from a self-signed certificate to
// /etc/letsencrypt/live/...), which postfix reload and doveadm reload
// apply to new connections. The new pair must load as for Reload (an
// expired one does not replace a valid one); otherwise the Manager keeps
// its files and certificate, and the error says why.
func (m *Manager) SetFiles(certFile, keyFile string) error {
	if m.acme != nil {
		return errors.New("tls: an ACME certificate has no files to change")
	}
	if certFile == "" || keyFile == "" {
		return errors.New("tls: both a certificate file and a key file are required")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	oldCert, oldKey, oldAttempted, oldUnsettled := m.certFile, m.keyFile, m.attempted, m.unsettled
	m.certFile, m.keyFile = certFile, keyFile
	st, _ := statPair(certFile, keyFile)
	m.attempted = st
	m.lastErr = "" // an explicit change always logs its outcome
	m.unsettled = time.Time{}
	if err := m.loadLocked("configuration names new files", false); err != nil {
		// Checks and Watch keep following the files still served, and
		// the second look at a mismatch of theirs still comes.
		m.certFile, m.keyFile, m.attempted, m.unsettled = oldCert, oldKey, oldAttempted, oldUnsettled
		return err
	}
	return nil
}

// Watch checks the files every ReloadCheckInterval (or
// DefaultReloadCheckInterval when that is not positive) until ctx is done, so
// a renewal is picked up even while no client connects. Run it in its own
// goroutine. On an ACME Manager it instead asks for each host name's
// certificate hourly (loading the cache, starting background renewal,
// retrying a failed order).
func (m *Manager) Watch(ctx context.Context) {
	if m.acme != nil {
		m.acmeWatch(ctx)
		return
	}
	d := m.interval
	if d <= 0 {
		d = DefaultReloadCheckInterval
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.mu.Lock()
			m.checkLocked("watch")
			m.mu.Unlock()
		}
	}
}

// maybeCheck is the lazy check of a handshake. It never waits: if another
// goroutine is checking or reloading, this handshake gets the current pair.
func (m *Manager) maybeCheck() {
	if m.interval < 0 || !m.mu.TryLock() {
		return
	}
	defer m.mu.Unlock()
	now := m.now()
	if m.interval > 0 && !m.lastCheck.IsZero() {
		// A clock that went backwards counts as elapsed.
		if d := now.Sub(m.lastCheck); d >= 0 && d < m.interval {
			return
		}
	}
	m.lastCheck = now
	m.checkLocked("changed on disk")
}

// checkLocked reloads if the files differ from the last attempt. A failed
// attempt is not retried until the files change again (a renewal that wrote
// the key first gets a second chance when it writes the certificate);
// Reload always retries. A key that did not match its certificate is the
// exception: it is read again once the files have stood still for
// keySettleDelay, and only then logged as an error.
func (m *Manager) checkLocked(why string) {
	st, err := statPair(m.certFile, m.keyFile)
	if err != nil {
		m.failLocked(err)
		return
	}
	if st == m.attempted {
		if m.unsettled.IsZero() {
			return
		}
		// A clock that went backwards counts as elapsed.
		if d := m.now().Sub(m.unsettled); d >= 0 && d < keySettleDelay {
			return // settleCheck comes back
		}
		// The same files, still: the mismatch is no renewal in progress.
		m.unsettled = time.Time{}
		_ = m.loadLocked(why, false)
		return
	}
	m.attempted = st
	_ = m.loadLocked(why, true)
}

// settleCheck is the second look at files whose key did not match.
func (m *Manager) settleCheck() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unsettled.IsZero() {
		return // loaded, reloaded or moved meanwhile
	}
	m.checkLocked("changed on disk")
}

// loadLocked reads the files and serves them if they are usable. With
// settle, a key that does not match its certificate is not logged as an
// error but looked at again after keySettleDelay (see checkLocked): the
// renewal may be halfway through swapping the files. Either way the
// previous pair goes on being served.
func (m *Manager) loadLocked(why string, settle bool) error {
	cert, err := readPair(m.certFile, m.keyFile)
	if err != nil {
		if settle && errors.Is(err, ErrKeyMismatch) {
			m.unsettled = m.now()
			m.log.Info("tls: the certificate and key files do not match yet (a renewal replacing them one at a time?); looking again shortly",
				"cert_file", m.certFile, "key_file", m.keyFile, "in", keySettleDelay.String())
			m.afterFunc(keySettleDelay, m.settleCheck)
			return err
		}
		m.unsettled = time.Time{}
		m.failLocked(err)
		return err
	}
	m.unsettled = time.Time{}
	now := m.now()
	invalid := checkValidity(m.certFile, cert.Leaf, now)
	if invalid != nil {
		cur := m.cur.Load().Leaf
		if checkValidity(m.certFile, cur, now) == nil || !cert.Leaf.NotAfter.After(cur.NotAfter) {
			m.failLocked(invalid)
			return invalid
		}
	}
	m.installLocked(cert, why, invalid)
	return nil
}

// failLocked logs a failed check or reload once per distinct error.
func (m *Manager) failLocked(err error) {
	if msg := err.Error(); msg != m.lastErr {
		m.lastErr = msg
		leaf := m.cur.Load().Leaf
		m.log.Error("tls: cannot load the new certificate; still serving the previous one",
			"err", err, "serving_subject", leaf.Subject.String(),
			"serving_not_after", leaf.NotAfter.UTC())
	}
}

// installLocked serves cert from now on; invalid is its checkValidity
// error, nil for a certificate within its validity period.
func (m *Manager) installLocked(cert *tls.Certificate, why string, invalid error) {
	m.cur.Store(cert)
	m.lastErr = ""
	leaf := cert.Leaf
	names := append(append([]string(nil), leaf.DNSNames...), ipStrings(leaf)...)
	m.log.Info("tls: certificate loaded", "why", why, "cert_file", m.certFile,
		"subject", leaf.Subject.String(), "names", strings.Join(names, ","),
		"not_after", leaf.NotAfter.UTC())
	if bad := CheckHostnames(leaf, m.hostnames); len(bad) > 0 {
		m.log.Warn("tls: certificate is not valid for these host names; clients that verify will refuse it",
			"cert_file", m.certFile, "hostnames", strings.Join(bad, ","), "names", strings.Join(names, ","))
	}
	// A renewal is installed by a timer, with nobody to run check-config:
	// a chain that users' clients will refuse is said here. A
	// self-signed certificate (the demo's) is one on purpose.
	if !selfSigned(leaf) {
		if err := verifyChain(m.certFile, cert, m.roots, m.now()); err != nil {
			m.log.Warn("tls: clients that verify will refuse this certificate chain", "err", err)
		}
	}
	if invalid != nil {
		m.log.Error("tls: serving a certificate outside its validity period: clients that verify refuse it (MTAs using STARTTLS do not); renew it",
			"err", invalid, "cert_file", m.certFile,
			"not_before", leaf.NotBefore.UTC(), "not_after", leaf.NotAfter.UTC())
	} else if left := leaf.NotAfter.Sub(m.now()); left < expirySoon {
		m.log.Warn("tls: certificate expires soon; is renewal working?",
			"cert_file", m.certFile, "not_after", leaf.NotAfter.UTC(), "left", left.Round(time.Hour).String())
	}
}

func ipStrings(c *x509.Certificate) []string {
	s := make([]string, len(c.IPAddresses))
	for i, ip := range c.IPAddresses {
		s[i] = ip.String()
	}
	return s
}

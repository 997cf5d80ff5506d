package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// Obtain makes sure a certificate is held for every ACME host name, reading
// CacheDir or ordering one from the CA, so that courriel starts with its
// certificates rather than on the first client's handshake. It returns
// ctx.Err() when ctx ends first (the order then goes on in the background).
// On a file Manager it does nothing.
func (m *Manager) Obtain(ctx context.Context) error {
	if m.acme == nil {
		return nil
	}
	var errs []error
	for _, name := range m.acme.hostnames {
		if err := m.acme.obtain(ctx, m, name); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// obtain fetches name's ECDSA certificate (the one nearly every client gets;
// an RSA one is ordered lazily for the rare client without ECDSA).
func (s *acmeSource) obtain(ctx context.Context, m *Manager, name string) error {
	type result struct {
		c   *tls.Certificate
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := s.certificate(ecdsaHello(name))
		done <- result{c, err}
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case r := <-done:
		if r.err != nil {
			return r.err
		}
		m.noteACME(name, r.c)
		return nil
	}
}

// ecdsaHello is a ClientHello that autocert takes for an ECDSA-capable
// client.
func ecdsaHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:        name,
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	}
}

// acmeGetCertificate is GetCertificate for an ACME Manager. A validation
// connection for an allowed name gets its challenge certificate; anything
// else gets the certificate of its SNI when that is one of the host names,
// or the first host name's otherwise (an MTA connects by MX name, IP
// address or without SNI, and opportunistic TLS takes any certificate: the
// file Manager likewise serves its one certificate whatever the SNI).
func (m *Manager) acmeGetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := m.acme
	name := normalizeSNI(hello.ServerName)
	if wantsChallenge(hello) {
		if !containsName(s.hostnames, name) {
			return nil, &HostNotAllowedError{Name: hello.ServerName, Allowed: s.hostnames}
		}
		h := *hello
		h.ServerName = name
		return s.ac.GetCertificate(&h)
	}
	if !containsName(s.hostnames, name) {
		name = s.hostnames[0]
	}
	h := *hello
	h.ServerName = name
	c, err := s.certificate(&h)
	if err != nil {
		return nil, err
	}
	m.noteACME(name, c)
	return c, nil
}

// certificate asks autocert for hello.ServerName's certificate, which is
// held in memory or CacheDir, or else ordered now (up to 5 minutes), unless
// the last order for that name failed within the backoff.
func (s *acmeSource) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	now := time.Now()
	s.mu.Lock()
	if f := s.failures[name]; f != nil && now.Before(f.until) {
		err := f.err
		s.mu.Unlock()
		return nil, fmt.Errorf("tls: ACME: no certificate for %s (retrying after %s): %w",
			name, f.until.UTC().Format(time.RFC3339), err)
	}
	s.mu.Unlock()

	// autocert only fails when it holds no valid certificate (a failed
	// renewal keeps serving the old one), so a failure here is one of
	// issuance or of the cache.
	c, err := s.ac.GetCertificate(hello)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		if f := s.failures[name]; f != nil {
			delete(s.failures, name)
			s.log.Info("tls: ACME certificate obtained after failures", "hostname", name)
		}
		return c, nil
	}
	f := s.failures[name]
	if f == nil {
		f = &acmeFailure{delay: acmeMinBackoff}
		s.failures[name] = f
	}
	f.err = err
	f.until = time.Now().Add(f.delay)
	s.log.Error("tls: ACME: cannot obtain a certificate; is port 443 routed to a courriel TLS listener?",
		"hostname", name, "err", err, "retry_after", f.delay.String())
	f.delay = min(2*f.delay, acmeMaxBackoff)
	return nil, fmt.Errorf("tls: ACME: no certificate for %s: %w", name, err)
}

// noteACME logs c when it is new for name (first load, renewal) and makes
// the first host name's the one Certificate reports (expiry metric).
func (m *Manager) noteACME(name string, c *tls.Certificate) {
	if c == nil || c.Leaf == nil {
		return
	}
	s := m.acme
	if name == s.hostnames[0] {
		m.cur.Store(c)
	}
	leaf := c.Leaf
	s.mu.Lock()
	if prev := s.seen[name]; prev != nil && prev.Equal(leaf) {
		s.mu.Unlock()
		return
	}
	s.seen[name] = leaf
	s.mu.Unlock()
	m.log.Info("tls: ACME certificate in service", "hostname", name,
		"names", strings.Join(leaf.DNSNames, ","), "issuer", leaf.Issuer.String(),
		"not_after", leaf.NotAfter.UTC())
	if left := leaf.NotAfter.Sub(m.now()); left < expirySoon {
		m.log.Warn("tls: ACME certificate expires soon; renewal is failing",
			"hostname", name, "not_after", leaf.NotAfter.UTC(),
			"left", left.Round(time.Hour).String())
	}
}

// acmeChallengeConfig is ServerConfig's GetConfigForClient on an ACME
// Manager: a validation connection (RFC 8737 §3: ALPN "acme-tls/1" only)
// gets a config that negotiates that protocol, every other connection the
// listener's own config (nil). "acme-tls/1" is not put in the listener's
// NextProtos, where a mail client offering only, say, "imap" would find no
// common protocol and be refused (RFC 7301 §3.2).
func (m *Manager) acmeChallengeConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if !wantsChallenge(hello) {
		return nil, nil
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   serverCipherSuites(),
		GetCertificate: m.acmeGetCertificate,
		NextProtos:     []string{acme.ALPNProto},
	}, nil
}

// acmeWatch asks for every host name's certificate now and then every
// acmeRefreshInterval: this loads CacheDir and starts autocert's renewal
// timers even while no client connects, retries a failed issuance, and
// keeps Certificate current after a background renewal.
func (m *Manager) acmeWatch(ctx context.Context) {
	t := time.NewTicker(acmeRefreshInterval)
	defer t.Stop()
	for {
		for _, name := range m.acme.hostnames {
			_ = m.acme.obtain(ctx, m, name) // failures are logged with backoff
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

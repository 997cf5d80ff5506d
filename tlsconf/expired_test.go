package tlsconf_test

import (
	"crypto/tls"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/tlsconf"
)

// insecureSerial handshakes without verifying, as an MTA doing opportunistic
// STARTTLS, and returns the serial of the certificate served.
func insecureSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	c, err := dial(t, addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake without verification: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// An expired or not yet valid certificate at start is served with
// ServeExpired (as Postfix and Dovecot do) and logged as an error naming the
// file and the date; without it New still refuses it (check-config).
func TestServeExpiredAtStart(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	now := time.Now()
	for _, tt := range []struct {
		name string
		p    testPair
		kind error
		date func(testPair) time.Time
	}{
		{"expired", ca.issue(t, leafOpts{notBefore: now.Add(-90 * 24 * time.Hour), notAfter: now.Add(-24 * time.Hour)}),
			tlsconf.ErrExpired, func(p testPair) time.Time { return p.leaf.NotAfter }},
		{"not yet valid", ca.issue(t, leafOpts{notBefore: now.Add(24 * time.Hour), notAfter: now.Add(90 * 24 * time.Hour)}),
			tlsconf.ErrNotYetValid, func(p testPair) time.Time { return p.leaf.NotBefore }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			certFile, keyFile := writePair(t, t.TempDir(), tt.p)
			if _, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile}); !errors.Is(err, tt.kind) {
				t.Errorf("New without ServeExpired: err = %v, want %v", err, tt.kind)
			}
			log, buf := newLogger(t)
			m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Logger: log,
				ReloadCheckInterval: 0, ServeExpired: true})
			if err != nil {
				t.Fatalf("New with ServeExpired: %v", err)
			}
			if got := m.Certificate().SerialNumber; got.Cmp(tt.p.leaf.SerialNumber) != 0 {
				t.Errorf("Certificate() = %v, want %v", got, tt.p.leaf.SerialNumber)
			}
			var line string
			for l := range strings.Lines(buf.String()) {
				if strings.Contains(l, "level=ERROR") {
					line = l
				}
			}
			date := tt.date(tt.p).UTC().Format(time.RFC3339)
			if line == "" || !strings.Contains(line, certFile) || !strings.Contains(line, date) || !strings.Contains(line, tt.kind.Error()) {
				t.Errorf("no ERROR line naming %s, %v and %s in the log:\n%s", certFile, tt.kind, date, buf)
			}
			if strings.Contains(buf.String(), "expires soon") {
				t.Errorf("an invalid certificate also drew the expires-soon warning:\n%s", buf)
			}

			addr := serveEcho(t, m.ServerConfig())
			if got := insecureSerial(t, addr); got.Cmp(tt.p.leaf.SerialNumber) != 0 {
				t.Errorf("served %v, want %v", got, tt.p.leaf.SerialNumber)
			}
			c, err := dial(t, addr, tlsconfClient(ca))
			if err == nil {
				c.Close()
				t.Error("a verifying client accepted the certificate")
			}
		})
	}
}

// ServeExpired serves an invalid certificate only when there is nothing
// else: a pair that does not load is still fatal at start.
func TestServeExpiredStillRefusesBrokenPairs(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	now := time.Now()
	expired := ca.issue(t, leafOpts{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})
	other := ca.issue(t, leafOpts{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, expired.certPEM)
	if _, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, ServeExpired: true}); !errors.Is(err, tlsconf.ErrMissing) {
		t.Errorf("key missing: err = %v, want ErrMissing", err)
	}
	writeFile(t, keyFile, other.keyPEM)
	if _, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, ServeExpired: true}); !errors.Is(err, tlsconf.ErrKeyMismatch) {
		t.Errorf("key of another certificate: err = %v, want ErrKeyMismatch", err)
	}
}

// Started on an expired certificate, the Manager takes a later expired one
// (never an earlier one), then the renewal; once serving a valid one it
// refuses expired files again, ServeExpired or not.
func TestReloadFromExpired(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	now := time.Now()
	day := 24 * time.Hour
	first := ca.issue(t, leafOpts{notBefore: now.Add(-90 * day), notAfter: now.Add(-10 * day)})
	older := ca.issue(t, leafOpts{notBefore: now.Add(-100 * day), notAfter: now.Add(-20 * day)})
	later := ca.issue(t, leafOpts{notBefore: now.Add(-80 * day), notAfter: now.Add(-5 * day)})
	renewed := ca.issue(t, leafOpts{})
	expiredAgain := ca.issue(t, leafOpts{notBefore: now.Add(-80 * day), notAfter: now.Add(-time.Hour)})

	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, first)
	log, buf := newLogger(t)
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Logger: log,
		ReloadCheckInterval: 0, ServeExpired: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveEcho(t, m.ServerConfig())
	want := func(what string, p testPair) {
		t.Helper()
		if got := insecureSerial(t, addr); got.Cmp(p.leaf.SerialNumber) != 0 {
			t.Errorf("%s: served %v, want %v", what, got, p.leaf.SerialNumber)
		}
	}
	want("start", first)

	// An expired file that expired earlier than the one served: a step back.
	writePair(t, dir, older)
	want("older expired file", first)
	if err := m.Reload(); !errors.Is(err, tlsconf.ErrExpired) {
		t.Errorf("Reload of the older expired file = %v, want ErrExpired", err)
	}
	if !strings.Contains(buf.String(), "still serving the previous one") {
		t.Errorf("refusal not logged:\n%s", buf)
	}
	// The same file again (SIGHUP, touch): nothing changes.
	writePair(t, dir, first)
	want("the same expired file", first)

	// Expired too, but later: the newer of two bad ones is taken.
	writePair(t, dir, later)
	want("later expired file", later)

	// The renewal.
	writePair(t, dir, renewed)
	want("renewed", renewed)
	if got := servedSerial(t, addr, ca.pool()); got.Cmp(renewed.leaf.SerialNumber) != 0 {
		t.Errorf("verifying client got %v, want %v", got, renewed.leaf.SerialNumber)
	}

	// Serving a valid certificate, an expired file is refused.
	writePair(t, dir, expiredAgain)
	want("expired file after the renewal", renewed)
	if err := m.Reload(); !errors.Is(err, tlsconf.ErrExpired) {
		t.Errorf("Reload of the expired file = %v, want ErrExpired", err)
	}
	want("expired file after Reload", renewed)
}

// A certificate that expires while served counts as expired: a later
// expired file is taken then, as at start.
func TestReloadAfterRunningPastExpiry(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	start := time.Now()
	clock := start
	day := 24 * time.Hour
	first := ca.issue(t, leafOpts{notBefore: start.Add(-day), notAfter: start.Add(day)})
	later := ca.issue(t, leafOpts{notBefore: start.Add(-day), notAfter: start.Add(2 * day)})
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, first)
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, ReloadCheckInterval: -1,
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	clock = start.Add(3 * day) // both are expired now; only Reload reads the clock
	writePair(t, dir, later)
	if err := m.Reload(); err != nil {
		t.Errorf("Reload of a later expired file while serving an expired one: %v", err)
	}
	if got := m.Certificate().SerialNumber; got.Cmp(later.leaf.SerialNumber) != 0 {
		t.Errorf("Certificate() = %v, want the later %v", got, later.leaf.SerialNumber)
	}
}

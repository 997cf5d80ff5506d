package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// servedName handshakes with a listener's TLS configuration, as a client
// would on a new connection, and returns the served leaf's first DNS name.
func servedName(t *testing.T, cfg *tls.Config, listener string) string {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	srv := tls.Server(sc, cfg)
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	c := tls.Client(cc, &tls.Config{InsecureSkipVerify: true})
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake on %s: %v", listener, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server handshake on %s: %v", listener, err)
	}
	return c.ConnectionState().PeerCertificates[0].DNSNames[0]
}

// SIGHUP after the configuration names other certificate files serves them
// to new connections, as postfix reload and doveadm reload do (the admin
// moving from a self-signed pair to Let's Encrypt's); files that do not
// load are refused with the reason and the running pair kept; a change
// that only a restart can make is named as such.
func TestReloadCertificateFiles(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	oldCert, oldKey := ca.Issue(t, "old.example")
	newCert, newKey := ca.Issue(t, "new.example")
	ownCert, ownKey := ca.Issue(t, "own.example")
	tlsTable := func(cert, key string) string {
		return fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", cert, key)
	}
	data := serveConfig(t, tlsTable(oldCert, oldKey))
	a, p, reload := reloadApp(t, data)
	// The listeners' configurations, made once at start as serve makes
	// them.
	listeners := map[string]*tls.Config{}
	for _, l := range []string{"smtp", "submissions", "imaps", "managesieve"} {
		if listeners[l] = a.tlsFor(l); listeners[l] == nil {
			t.Fatalf("no TLS configuration for %s", l)
		}
	}
	if got := servedName(t, listeners["submissions"], "submissions"); got != "old.example" {
		t.Fatalf("at start served %s", got)
	}
	base := strings.TrimSuffix(data, tlsTable(oldCert, oldKey))
	steps := []struct {
		name   string
		tls    string
		served map[string]string // listener: name served after the SIGHUP
		log    []string
		notLog []string
	}{
		{"key of another certificate", tlsTable(newCert, oldKey),
			map[string]string{"submissions": "old.example", "imaps": "old.example", "smtp": "old.example"},
			[]string{"new certificate files refused, keeping the running ones", "private key does not match"},
			[]string{"next restart", "applied new certificate files"}},
		{"missing file", tlsTable("/nonexistent/fullchain.pem", newKey),
			map[string]string{"submissions": "old.example"},
			[]string{"new certificate files refused", "file missing"},
			[]string{"next restart"}},
		// The self-signed pair given up is removed with the edit: the
		// SIGHUP does not read it again, nor complain of it.
		{"new pair, old files gone", tlsTable(newCert, newKey),
			map[string]string{"submissions": "new.example", "imaps": "new.example", "smtp": "new.example", "managesieve": "new.example"},
			[]string{"applied new certificate files"},
			[]string{"next restart", "refused", "configuration unchanged", "reload failed", "level=ERROR"}},
		{"unchanged", tlsTable(newCert, newKey),
			map[string]string{"submissions": "new.example"},
			[]string{"configuration unchanged"},
			[]string{"next restart", "applied new certificate files"}},
		{"one listener's own pair", tlsTable(newCert, newKey) + fmt.Sprintf("[tls.listeners.smtp]\ncert_file = %q\nkey_file = %q\n", ownCert, ownKey),
			map[string]string{"submissions": "new.example", "smtp": "new.example"},
			[]string{"next restart", "tls.listeners.smtp.cert_file"},
			[]string{"applied new certificate files"}},
	}
	for _, st := range steps {
		if err := os.WriteFile(p, []byte(base+st.tls), 0o600); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(st.name, "old files gone") {
			for _, f := range []string{oldCert, oldKey} {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
		}
		out := reload()
		for l, want := range st.served {
			if got := servedName(t, listeners[l], l); got != want {
				t.Errorf("%s: %s serves %s, want %s", st.name, l, got, want)
			}
		}
		for _, s := range st.log {
			if !strings.Contains(out, s) {
				t.Errorf("%s: log lacks %q:\n%s", st.name, s, out)
			}
		}
		for _, s := range st.notLog {
			if strings.Contains(out, s) {
				t.Errorf("%s: log says %q:\n%s", st.name, s, out)
			}
		}
	}
}

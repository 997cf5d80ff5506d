package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
	"courriel/tlsconf"
)

// requireOpenSSL is the openssl binary, or skips (fails under CI, whose
// scripts/test installs it).
func requireOpenSSL(t *testing.T) string {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not installed")
		}
		t.Skip("openssl not installed")
	}
	return openssl
}

// sClientSubject handshakes with openssl s_client on addr, verifying the
// chain against ca as a mail client does, and returns the served leaf's
// subject line ("CN = ..."); it fails the test if the handshake fails.
func sClientSubject(t *testing.T, openssl string, ca *testenv.CA, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-CAfile", ca.CertFile(),
		"-verify_return_error", "-brief")
	cmd.Stdin = strings.NewReader("")
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil || !strings.Contains(out, "Verification: OK") {
		t.Fatalf("s_client %s: %v\n%s", addr, err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "Peer certificate: "); ok {
			return strings.TrimSpace(s)
		}
	}
	t.Fatalf("s_client %s: no peer certificate\n%s", addr, out)
	return ""
}

// tlsListenersConfig is serveConfig with submissions and imaps listening
// on loopback, and tls.
func tlsListenersConfig(t *testing.T, tls string) string {
	t.Helper()
	data := serveConfig(t, tls)
	for _, l := range []string{"submissions", "imaps"} {
		data = strings.Replace(data, l+" = \"\"\n", l+" = \"127.0.0.1:0\"\n", 1)
	}
	return strings.Replace(data, "[listen]\n", "[listen]\nlocal = \"\"\n", 1)
}

// serveListeners binds a's listeners and serves them until the test ends.
func serveListeners(t *testing.T, a *app) {
	t.Helper()
	if err := a.listen(); err != nil {
		t.Fatal(err)
	}
	for _, l := range a.listeners {
		go l.serve(l.ln)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, l := range a.listeners {
			_ = l.stop(ctx)
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Listeners naming the same cert_file with different key_files each serve
// the key they name: here imaps has its own copy of the key (another
// owner, as Dovecot's ssl_key often is). When a renewal replaces the
// certificate and the main key but not that copy, imaps keeps its
// certificate and the SIGHUP says its key file no longer matches, rather
// than imaps silently serving the other listener's key (which then
// refused to start at the next restart).
func TestListenersSharingCertFileKeepTheirKeys(t *testing.T) {
	t.Parallel()
	openssl := requireOpenSSL(t)
	ca := testenv.NewCA(t)
	certFile, keyFile := ca.Issue(t, "old.example")
	imapKey := filepath.Join(t.TempDir(), "imap.key")
	copyFile(t, keyFile, imapKey)
	data := tlsListenersConfig(t, fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n[tls.listeners.imaps]\ncert_file = %q\nkey_file = %q\n",
		certFile, keyFile, certFile, imapKey))
	a, _, reload := reloadApp(t, data)
	serveListeners(t, a)
	subs, imaps := fmt.Sprintf("127.0.0.1:%d", a.boundPort("submissions")), fmt.Sprintf("127.0.0.1:%d", a.boundPort("imaps"))
	for _, addr := range []string{subs, imaps} {
		if got := sClientSubject(t, openssl, ca, addr); got != "CN = old.example" {
			t.Fatalf("%s at start serves %q", addr, got)
		}
	}

	// The renewal rewrites the certificate and the key it knows of.
	newCert, newKey := ca.Issue(t, "renewed.example")
	copyFile(t, newCert, certFile)
	copyFile(t, newKey, keyFile)
	out := reload()
	if got := sClientSubject(t, openssl, ca, subs); got != "CN = renewed.example" {
		t.Errorf("after the renewal submissions serves %q", got)
	}
	if got := sClientSubject(t, openssl, ca, imaps); got != "CN = old.example" {
		t.Errorf("after the renewal imaps, whose key file is the old key, serves %q", got)
	}
	if !strings.Contains(out, "certificate reload failed, keeping the old one") || !strings.Contains(out, "tls: "+imapKey+": private key does not match") {
		t.Errorf("SIGHUP does not say imaps' key file does not match:\n%s", out)
	}

	// Once its copy is updated too, imaps serves the renewal.
	copyFile(t, newKey, imapKey)
	out = reload()
	if got := sClientSubject(t, openssl, ca, imaps); got != "CN = renewed.example" {
		t.Errorf("with its key updated imaps serves %q", got)
	}
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("SIGHUP:\n%s", out)
	}
}

// A listener naming the certificate file of another with a key that does
// not belong to it (an ECDSA key beside the RSA certificate) is refused at
// start, by serve and by check-config, naming that key file: it was
// started serving the other listener's key, and failed only once the
// other listener's pair changed.
func TestListenerKeyOfAnotherCertificateRefused(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	certFile, keyFile := ca.Issue(t, "xoyize.xyz")
	_, otherKey := ca.Issue(t, "other.example")
	data := serveConfig(t, fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n[tls.listeners.imaps]\ncert_file = %q\nkey_file = %q\n",
		certFile, keyFile, certFile, otherKey))
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	var fe *tlsconf.FileError
	if err == nil {
		a.close()
		t.Errorf("serve starts with imaps' key of another certificate")
	} else if !errors.As(err, &fe) || fe.File != otherKey || !errors.Is(err, tlsconf.ErrKeyMismatch) {
		t.Errorf("serve: %v, want the key mismatch of %s", err, otherKey)
	}
	_, out, _ := runCmd(t, "", "check-config", "-q", "-config", p)
	if !strings.Contains(out, "FAIL tls: certificate "+certFile+" with key "+otherKey+": tls: "+otherKey+": private key does not match") ||
		!strings.Contains(out, "ok   tls: certificate "+certFile+" with key "+keyFile+"\n") {
		t.Errorf("check-config:\n%s", out)
	}
}

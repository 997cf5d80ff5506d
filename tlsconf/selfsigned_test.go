package tlsconf_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"courriel/tlsconf"
)

func readBoth(t *testing.T, certFile, keyFile string) (cert, key []byte) {
	t.Helper()
	cert, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err = os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestSelfSigned(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "demo", "tls")
	names := []string{"mail.example.org", "localhost", "127.0.0.1", "::1"}
	certFile, keyFile, err := tlsconf.SelfSigned(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {keyFile, 0o600}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != f.want {
			t.Errorf("%s mode %v, want %v", f.path, fi.Mode(), f.want)
		}
	}
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatalf("the self-signed pair does not load: %v", err)
	}
	leaf := m.Certificate()
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if left := time.Until(leaf.NotAfter); left < 300*24*time.Hour || left > 400*24*time.Hour {
		t.Errorf("valid for %v, want about a year", left)
	}
	// A client that trusts the certificate itself verifies every name.
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	addr := serveEcho(t, m.ServerConfig())
	for _, n := range names {
		c, err := dial(t, addr, tlsconf.ClientConfig(tlsconf.PolicyVerify, n, pool))
		if err != nil {
			t.Errorf("verify as %q: %v", n, err)
			continue
		}
		echo(t, c, "hello")
	}
	if _, err := dial(t, addr, tlsconf.ClientConfig(tlsconf.PolicyVerify, "other.example.org", pool)); err == nil {
		t.Error("verified for a name not in the certificate")
	}

	// The next run reuses the pair.
	cert1, key1 := readBoth(t, certFile, keyFile)
	certFile2, keyFile2, err := tlsconf.SelfSigned(dir, []string{"localhost", "mail.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	cert2, key2 := readBoth(t, certFile2, keyFile2)
	if certFile2 != certFile || keyFile2 != keyFile || !bytes.Equal(cert1, cert2) || !bytes.Equal(key1, key2) {
		t.Error("a valid pair covering the names was regenerated")
	}

	// A new name regenerates it.
	if _, _, err := tlsconf.SelfSigned(dir, []string{"imap.example.org"}); err != nil {
		t.Fatal(err)
	}
	cert3, _ := readBoth(t, certFile, keyFile)
	if bytes.Equal(cert1, cert3) {
		t.Error("pair reused for a name it does not cover")
	}
	m3, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if bad := tlsconf.CheckHostnames(m3.Certificate(), []string{"imap.example.org"}); len(bad) != 0 {
		t.Errorf("regenerated certificate does not cover %v", bad)
	}
}

func TestSelfSignedReplacesBrokenPair(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, certFile, keyFile string)
	}{
		{"key missing", func(t *testing.T, _, keyFile string) { os.Remove(keyFile) }},
		{"key garbage", func(t *testing.T, _, keyFile string) { writeFile(t, keyFile, []byte("junk")) }},
		{"key of another pair", func(t *testing.T, _, keyFile string) {
			_, other, err := tlsconf.SelfSigned(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(other)
			writeFile(t, keyFile, data)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			certFile, keyFile, err := tlsconf.SelfSigned(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, certFile, keyFile)
			if _, _, err := tlsconf.SelfSigned(dir, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
				t.Errorf("pair still broken: %v", err)
			}
			fi, err := os.Stat(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode %v", fi.Mode())
			}
		})
	}
}

func TestSelfSignedDefaultsAndBadNames(t *testing.T) {
	t.Parallel()
	certFile, keyFile, err := tlsconf.SelfSigned(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if bad := tlsconf.CheckHostnames(m.Certificate(), []string{"localhost", "127.0.0.1", "::1"}); len(bad) != 0 {
		t.Errorf("default certificate does not cover %v", bad)
	}
	for _, names := range [][]string{
		{"bad name"},
		{"-lead.example.org"},
		{"a..b"},
		{"x\x00y"},
		{"", " "},
	} {
		if _, _, err := tlsconf.SelfSigned(t.TempDir(), names); err == nil {
			t.Errorf("SelfSigned(%q) succeeded", names)
		}
	}
}

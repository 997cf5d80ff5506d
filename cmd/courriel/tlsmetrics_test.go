package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/internal/testenv"
	"courriel/tlsconf"
)

// The expiry gauge names the files served: after a SIGHUP moved the
// listeners to other certificate files, the series is under the new
// file, and the one of the file given up is gone (an alert on it would
// otherwise watch a certificate nobody serves). Two listeners sharing a
// certificate file with different key files make one series.
func TestCertificateMetricFollowsFiles(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	oldCert, oldKey := ca.Issue(t, "old.example")
	newCert, newKey := ca.Issue(t, "new.example")
	imapKey := filepath.Join(t.TempDir(), "imap.key")
	copyFile(t, oldKey, imapKey)
	base := strings.Replace(serveConfig(t, ""), "[listen]\n", "[listen]\nlocal = \"\"\nhttp = \"127.0.0.1:0\"\n", 1)
	a, p, reload := reloadApp(t, base+fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n[tls.listeners.imaps]\ncert_file = %q\nkey_file = %q\n",
		oldCert, oldKey, oldCert, imapKey))
	serveListeners(t, a)
	// What a scrape of /metrics holds: file label to value.
	gauge := func() map[string]float64 {
		t.Helper()
		mfs, err := a.metrics.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "courriel_tls_certificate_not_after_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "file" {
						got[l.GetValue()] = m.GetGauge().GetValue()
					}
				}
			}
		}
		return got
	}
	notAfter := func(cert, key string) float64 {
		t.Helper()
		m, err := tlsconf.New(tlsconf.Options{CertFile: cert, KeyFile: key})
		if err != nil {
			t.Fatal(err)
		}
		return float64(m.Certificate().NotAfter.Unix())
	}
	if got, want := gauge(), map[string]float64{oldCert: notAfter(oldCert, oldKey)}; !maps.Equal(got, want) {
		t.Errorf("at start: %v, want %v", got, want)
	}
	if err := os.WriteFile(p, []byte(base+fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", newCert, newKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := reload(); !strings.Contains(out, "applied new certificate files") || strings.Contains(out, "next restart") {
		t.Fatalf("SIGHUP:\n%s", out)
	}
	if got, want := gauge(), map[string]float64{newCert: notAfter(newCert, newKey)}; !maps.Equal(got, want) {
		t.Errorf("after the SIGHUP: %v, want %v", got, want)
	}
}

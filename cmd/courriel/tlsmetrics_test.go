package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// Listeners sharing a certificate file with different key files may serve
// different certificates from it (one refused a renewal its key does not
// match): the file's one series is the earlier expiry, the one an alert
// is for.
func TestCertificateMetricEarliestPerFile(t *testing.T) {
	t.Parallel()
	now := time.Now()
	soon := issueChainCert(t, "xoyize.xyz", nil, false, nil, now.Add(-time.Hour), now.Add(10*24*time.Hour))
	later := issueChainCert(t, "xoyize.xyz", nil, false, nil, now.Add(-time.Hour), now.Add(80*24*time.Hour))
	dir := t.TempDir()
	certFile, keyFile, otherKey := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"), filepath.Join(dir, "imap.key")
	write := func(c *chainCert, key string) {
		t.Helper()
		if err := os.WriteFile(certFile, c.pem, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, c.keyPEM(t), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var managers []*tlsconf.Manager
	for _, step := range []struct {
		c   *chainCert
		key string
	}{{later, keyFile}, {soon, otherKey}} {
		write(step.c, step.key)
		m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: step.key, ReloadCheckInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		managers = append(managers, m)
	}
	reg := prometheus.NewRegistry()
	registerCertificateMetrics(reg, managers)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 || mfs[0].GetMetric()[0].GetGauge().GetValue() != float64(soon.cert.NotAfter.Unix()) {
		t.Errorf("gathered %v, want one series at %d", mfs, soon.cert.NotAfter.Unix())
	}
}

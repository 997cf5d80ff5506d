package main

import (
	"cmp"

	"github.com/prometheus/client_golang/prometheus"

	"courriel/tlsconf"
)

// certificateCollector exports when each served certificate expires, the
// figure an alert on a failed renewal needs (serve goes on serving an
// expired one, as Postfix and Dovecot do). One series per certificate
// file ("acme" for the ACME manager); an ACME certificate not obtained yet
// reports 0.
//
// The file label is read at each scrape, not fixed at start: a SIGHUP
// that moves a Manager to other files (SetFiles) must not leave the
// series under the name given up, nor keep it.
type certificateCollector struct {
	desc     *prometheus.Desc
	managers []*tlsconf.Manager // fixed at start; their files are not
}

func (c *certificateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certificateCollector) Collect(ch chan<- prometheus.Metric) {
	// Listeners may share a certificate file with different keys, and
	// one of them may have refused a renewal the other took: a series
	// per file, at the earliest expiry served from it, which is the one
	// an alert is about.
	notAfter := map[string]float64{}
	var files []string
	for _, m := range c.managers {
		file, _ := m.Files()
		file = cmp.Or(file, "acme")
		v := 0.0
		if cert := m.Certificate(); cert != nil {
			v = float64(cert.NotAfter.Unix())
		}
		old, seen := notAfter[file]
		if !seen {
			files = append(files, file)
		}
		if !seen || v < old {
			notAfter[file] = v
		}
	}
	for _, f := range files {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, notAfter[f], f)
	}
}

// registerCertificateMetrics exports the expiry of the certificates
// managers serve (see certificateCollector).
func registerCertificateMetrics(reg prometheus.Registerer, managers []*tlsconf.Manager) {
	reg.MustRegister(&certificateCollector{
		desc: prometheus.NewDesc("courriel_tls_certificate_not_after_seconds",
			"When the served TLS certificate expires (Unix time); 0 while none is loaded.", []string{"file"}, nil),
		managers: managers,
	})
}

package main

import (
	"cmp"

	"github.com/prometheus/client_golang/prometheus"

	"courriel/tlsconf"
)

// registerCertificateMetrics exports when each served certificate expires,
// the figure an alert on a failed renewal needs (serve goes on serving an
// expired one, as Postfix and Dovecot do). One series per certificate
// file ("acme" for the ACME manager); an ACME certificate not obtained yet
// reports 0.
func registerCertificateMetrics(reg prometheus.Registerer, managers map[string]*tlsconf.Manager) {
	for file, m := range managers {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "courriel_tls_certificate_not_after_seconds",
			Help:        "When the served TLS certificate expires (Unix time); 0 while none is loaded.",
			ConstLabels: prometheus.Labels{"file": cmp.Or(file, "acme")},
		}, func() float64 {
			c := m.Certificate()
			if c == nil {
				return 0
			}
			return float64(c.NotAfter.Unix())
		}))
	}
}

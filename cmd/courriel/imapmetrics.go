package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"courriel/imap"
)

// registerKeptFolderMetrics exports what the IMAP server keeps loaded
// after the sessions ended: large folders, within a fixed memory budget.
func registerKeptFolderMetrics(reg *prometheus.Registry, srv *imap.Server) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "courriel_imap_kept_folders",
			Help: "Large IMAP folders kept loaded after their last session, for a client that comes back.",
		}, func() float64 { n, _ := srv.KeptFolders(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "courriel_imap_kept_folder_bytes",
			Help: "Memory the kept IMAP folders hold, by estimate (at most 64 MiB).",
		}, func() float64 { _, b := srv.KeptFolders(); return float64(b) }),
	)
}

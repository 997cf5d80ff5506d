package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"courriel/directory"
)

// registerWatchMetrics exports the directory change watcher's state: whether
// cached answers follow the replica now, or only their TTL.
func registerWatchMetrics(reg *prometheus.Registry, w *directory.Watcher) {
	if reg == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "courriel_directory_watch_connected",
			Help: "1 while the persistent sync search on the directory replica reports changes; 0: cached answers expire by TTL only.",
		}, func() float64 {
			if w.Status().Connected {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "courriel_directory_watch_changes_total",
			Help: "Directory changes reported by the sync search (each one flushed the lookup cache).",
		}, func() float64 { return float64(w.Status().Changes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "courriel_directory_watch_last_change_timestamp_seconds",
			Help: "Unix time of the last directory change reported; 0 when none yet.",
		}, func() float64 {
			t := w.Status().LastChange
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
	)
}

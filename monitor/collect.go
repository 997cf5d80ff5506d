package monitor

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// directoryCollector exports the directory's counters, read through a
// function at scrape time. It is registered once by NewMetrics and emits
// nothing until RegisterDirectoryStats gives it a function, so registering
// (or re-registering) can never fail at run time. One collector instead of
// three CounterFuncs so that f, which may take a lock, runs once per scrape
// and the three values are a consistent snapshot.
type directoryCollector struct {
	f        atomic.Pointer[func() (searches, cacheHits, binds int64)]
	searches *prometheus.Desc // immutable
	hits     *prometheus.Desc // immutable
	binds    *prometheus.Desc // immutable
}

func newDirectoryCollector() *directoryCollector {
	return &directoryCollector{
		searches: prometheus.NewDesc("courriel_ldap_searches_total",
			"LDAP searches sent to the directory server.", nil, nil),
		hits: prometheus.NewDesc("courriel_ldap_cache_hits_total",
			"Directory lookups answered from the cache.", nil, nil),
		binds: prometheus.NewDesc("courriel_ldap_binds_total",
			"LDAP binds (service and user authentication).", nil, nil),
	}
}

func (c *directoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.searches
	ch <- c.hits
	ch <- c.binds
}

func (c *directoryCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.f.Load()
	if p == nil || *p == nil {
		return
	}
	// A panic in f is recovered by the registry and reported as a
	// collection error, not a crash.
	searches, hits, binds := (*p)()
	ch <- prometheus.MustNewConstMetric(c.searches, prometheus.CounterValue, float64(searches))
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(hits))
	ch <- prometheus.MustNewConstMetric(c.binds, prometheus.CounterValue, float64(binds))
}

// queueCollector exports the outbound queue's size, read at scrape time.
type queueCollector struct {
	f    atomic.Pointer[func() int]
	size *prometheus.Desc // immutable
}

func newQueueCollector() *queueCollector {
	return &queueCollector{
		size: prometheus.NewDesc("courriel_queue_messages",
			"Messages waiting in the outbound queue.", nil, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.size }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.f.Load()
	if p == nil || *p == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64((*p)()))
}

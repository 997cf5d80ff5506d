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
	f        atomic.Pointer[func() DirectoryStats]
	searches *prometheus.Desc // immutable
	hits     *prometheus.Desc // immutable
	binds    *prometheus.Desc // immutable
	errors   *prometheus.Desc // immutable
}

// DirectoryStats are the directory's cumulative counters.
type DirectoryStats struct {
	Searches  int64 // LDAP searches sent to the server
	CacheHits int64 // lookups answered from the cache
	Binds     int64 // LDAP binds
	// Errors counts the lookups and binds the directory could not answer,
	// by kind (connect, timeout, network, server): give every kind, zeros
	// included, so that a rate is defined from the first scrape.
	Errors map[string]int64
}

func newDirectoryCollector() *directoryCollector {
	return &directoryCollector{
		searches: prometheus.NewDesc("courriel_ldap_searches_total",
			"LDAP searches sent to the directory server.", nil, nil),
		hits: prometheus.NewDesc("courriel_ldap_cache_hits_total",
			"Directory lookups answered from the cache.", nil, nil),
		binds: prometheus.NewDesc("courriel_ldap_binds_total",
			"LDAP binds (service and user authentication).", nil, nil),
		errors: prometheus.NewDesc("courriel_ldap_errors_total",
			"Directory operations that got no answer (mail deferred, logins refused for now), by kind: connect, timeout, network, server.",
			[]string{"kind"}, nil),
	}
}

func (c *directoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.searches
	ch <- c.hits
	ch <- c.binds
	ch <- c.errors
}

func (c *directoryCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.f.Load()
	if p == nil || *p == nil {
		return
	}
	// A panic in f is recovered by the registry and reported as a
	// collection error, not a crash.
	st := (*p)()
	ch <- prometheus.MustNewConstMetric(c.searches, prometheus.CounterValue, float64(st.Searches))
	ch <- prometheus.MustNewConstMetric(c.hits, prometheus.CounterValue, float64(st.CacheHits))
	ch <- prometheus.MustNewConstMetric(c.binds, prometheus.CounterValue, float64(st.Binds))
	for kind, n := range st.Errors {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(n), listenerLabel(kind))
	}
}

// QueueStats is the outbound queue's size by state, as the queue keeps it
// in memory (a scrape must not read the spool).
type QueueStats struct {
	Messages int // messages queued
	Deferred int // of which waiting for a retry after a failed attempt

	Pending   int // recipients still to deliver
	Delivered int // recipients delivered whose message waits for others
	Failed    int // recipients failed whose sender is not told yet
}

// queueCollector exports the outbound queue's size, read at scrape time.
type queueCollector struct {
	f          atomic.Pointer[func() QueueStats]
	messages   *prometheus.Desc // immutable
	deferred   *prometheus.Desc // immutable
	recipients *prometheus.Desc // immutable
}

func newQueueCollector() *queueCollector {
	return &queueCollector{
		messages: prometheus.NewDesc("courriel_queue_messages",
			"Messages waiting in the outbound queue.", nil, nil),
		deferred: prometheus.NewDesc("courriel_queue_messages_deferred",
			"Queued messages waiting for a retry after a failed attempt.", nil, nil),
		recipients: prometheus.NewDesc("courriel_queue_recipients",
			"Recipients of queued messages by state: pending (to deliver), delivered (their message waits for others), failed (the sender is not told yet).",
			[]string{"state"}, nil),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.deferred
	ch <- c.recipients
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.f.Load()
	if p == nil || *p == nil {
		return
	}
	st := (*p)()
	ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(st.Messages))
	ch <- prometheus.MustNewConstMetric(c.deferred, prometheus.GaugeValue, float64(st.Deferred))
	ch <- prometheus.MustNewConstMetric(c.recipients, prometheus.GaugeValue, float64(st.Pending), "pending")
	ch <- prometheus.MustNewConstMetric(c.recipients, prometheus.GaugeValue, float64(st.Delivered), "delivered")
	ch <- prometheus.MustNewConstMetric(c.recipients, prometheus.GaugeValue, float64(st.Failed), "failed")
}

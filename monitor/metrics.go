package monitor

import (
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values accepted by Transaction and Delivery. Anything else is
// counted as labelOther so a caller's typo cannot grow the number of series
// without bound (every label value is a new time series in Prometheus).
const (
	ResultAccepted = "accepted" // the message was taken (250 after DATA)
	ResultRejected = "rejected" // a permanent refusal (5xx)
	ResultDeferred = "deferred" // a temporary refusal (4xx)

	StatusSent     = "sent"     // delivered: into a maildir or to a remote MX
	StatusDeferred = "deferred" // a temporary failure; the queue retries
	StatusBounced  = "bounced"  // a permanent failure; a DSN goes back

	labelOther = "other"

	// maxListenerLabel bounds a listener label; listener names come from the
	// configuration ("smtp", "submission", ...), never from the network.
	maxListenerLabel = 64
)

// Metrics records courriel's counters and gauges on a registry of its own.
// Every method is safe for concurrent use and a no-op on a nil *Metrics, so
// components can hold a nil one when the HTTP listener is off.
type Metrics struct {
	reg *prometheus.Registry // immutable after NewMetrics

	connsTotal   *prometheus.CounterVec // {listener}
	connsActive  *prometheus.GaugeVec   // {listener}
	transactions *prometheus.CounterVec // {listener, result}
	deliveries   *prometheus.CounterVec // {status}
	authFailures *prometheus.CounterVec // {listener}
	imapActive   prometheus.Gauge
	imapTotal    prometheus.Counter

	directory *directoryCollector // scrape-time values, see collect.go
	queue     *queueCollector
}

// NewMetrics builds a Metrics with every courriel metric, plus the Go runtime
// and process collectors, registered on a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		connsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courriel_connections_total",
			Help: "Connections accepted, by listener.",
		}, []string{"listener"}),
		connsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "courriel_connections_active",
			Help: "Connections currently open, by listener.",
		}, []string{"listener"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courriel_smtp_transactions_total",
			Help: "SMTP mail transactions by listener and result (accepted, rejected, deferred).",
		}, []string{"listener", "result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courriel_deliveries_total",
			Help: "Delivery attempts (local maildir and outbound queue) by status (sent, deferred, bounced).",
		}, []string{"status"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "courriel_auth_failures_total",
			Help: "Failed SMTP AUTH and IMAP LOGIN/AUTHENTICATE attempts, by listener.",
		}, []string{"listener"}),
		imapActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "courriel_imap_sessions_active",
			Help: "IMAP sessions currently open.",
		}),
		imapTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "courriel_imap_sessions_total",
			Help: "IMAP sessions started.",
		}),
		directory: newDirectoryCollector(),
		queue:     newQueueCollector(),
	}
	// Delivery statuses are a closed set: declare them at zero so that
	// rate() and alerts work before the first event of each kind.
	for _, s := range []string{StatusSent, StatusDeferred, StatusBounced} {
		m.deliveries.WithLabelValues(s)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connsTotal, m.connsActive, m.transactions, m.deliveries,
		m.authFailures, m.imapActive, m.imapTotal,
		m.directory, m.queue,
	)
	return m
}

// Registry returns the registry every metric is registered on, for
// promhttp or for a caller that adds collectors of its own. It is nil for a
// nil *Metrics.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// ConnOpened counts a connection accepted on listener (e.g. "smtp",
// "submission", "submissions", "imaps"). Pair it with ConnClosed.
func (m *Metrics) ConnOpened(listener string) {
	if m == nil {
		return
	}
	l := listenerLabel(listener)
	m.connsTotal.WithLabelValues(l).Inc()
	m.connsActive.WithLabelValues(l).Inc()
}

// ConnClosed marks the end of a connection counted by ConnOpened.
func (m *Metrics) ConnClosed(listener string) {
	if m == nil {
		return
	}
	m.connsActive.WithLabelValues(listenerLabel(listener)).Dec()
}

// Transaction counts one SMTP mail transaction's outcome on listener; result
// is ResultAccepted, ResultRejected or ResultDeferred (anything else is
// counted as "other").
func (m *Metrics) Transaction(listener, result string) {
	if m == nil {
		return
	}
	switch result {
	case ResultAccepted, ResultRejected, ResultDeferred:
	default:
		result = labelOther
	}
	m.transactions.WithLabelValues(listenerLabel(listener), result).Inc()
}

// Delivery counts one delivery attempt, local or remote; status is
// StatusSent, StatusDeferred or StatusBounced (anything else is counted as
// "other").
func (m *Metrics) Delivery(status string) {
	if m == nil {
		return
	}
	switch status {
	case StatusSent, StatusDeferred, StatusBounced:
	default:
		status = labelOther
	}
	m.deliveries.WithLabelValues(status).Inc()
}

// AuthFailure counts one failed authentication on listener.
func (m *Metrics) AuthFailure(listener string) {
	if m == nil {
		return
	}
	m.authFailures.WithLabelValues(listenerLabel(listener)).Inc()
}

// IMAPSessionStarted counts an IMAP session; pair it with IMAPSessionEnded.
func (m *Metrics) IMAPSessionStarted() {
	if m == nil {
		return
	}
	m.imapTotal.Inc()
	m.imapActive.Inc()
}

// IMAPSessionEnded marks the end of a session counted by IMAPSessionStarted.
func (m *Metrics) IMAPSessionEnded() {
	if m == nil {
		return
	}
	m.imapActive.Dec()
}

// RegisterDirectoryStats sets the function read at each scrape for the
// directory's cumulative counters, exported as courriel_ldap_searches_total,
// courriel_ldap_cache_hits_total, courriel_ldap_binds_total and
// courriel_ldap_errors_total{kind} (alert on its rate: the directory is
// down or failing). f is called once per scrape, concurrently with
// everything else, so it must be safe for concurrent use and cheap. A later
// call replaces f; nil removes the metrics.
func (m *Metrics) RegisterDirectoryStats(f func() DirectoryStats) {
	if m == nil {
		return
	}
	m.directory.f.Store(&f)
}

// RegisterQueueStats sets the function read at each scrape for the
// outbound queue's size, exported as courriel_queue_messages,
// courriel_queue_messages_deferred and courriel_queue_recipients{state}. It
// should read counters the queue keeps, not the spool. The same rules as
// RegisterDirectoryStats apply.
func (m *Metrics) RegisterQueueStats(f func() QueueStats) {
	if m == nil {
		return
	}
	m.queue.f.Store(&f)
}

// listenerLabel makes a listener name safe as a label value: the client
// library panics on invalid UTF-8, and a label must stay short.
func listenerLabel(s string) string {
	if len(s) <= maxListenerLabel && utf8.ValidString(s) {
		return s // the common case: no allocation
	}
	s = strings.ToValidUTF8(s, "?")
	if len(s) > maxListenerLabel {
		s = strings.ToValidUTF8(s[:maxListenerLabel], "")
	}
	return s
}

package monitor

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue returns the value of the series name{labels} in reg, and
// whether it exists.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			}
			t.Fatalf("%s: neither counter nor gauge", name)
		}
	}
	return 0, false
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
			return false
		}
	}
	return true
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", resp.StatusCode, body)
	}
	return string(body)
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.ConnOpened("smtp")
	m.ConnOpened("smtp")
	m.ConnClosed("smtp")
	m.ConnOpened("imaps")
	m.Transaction("smtp", ResultAccepted)
	m.Transaction("smtp", ResultRejected)
	m.Transaction("submission", ResultDeferred)
	m.Delivery(StatusSent)
	m.Delivery(StatusSent)
	m.Delivery(StatusBounced)
	m.AuthFailure("submission")
	m.IMAPSessionStarted()
	m.IMAPSessionStarted()
	m.IMAPSessionEnded()
	m.RegisterDirectoryStats(func() DirectoryStats {
		return DirectoryStats{Searches: 7, CacheHits: 5, Binds: 3, Errors: map[string]int64{"connect": 2, "timeout": 0}}
	})
	m.RegisterQueueStats(func() QueueStats {
		return QueueStats{Messages: 42, Deferred: 40, Pending: 50, Delivered: 3, Failed: 1}
	})

	text := scrape(t, Handler(Options{Metrics: m}))
	for _, line := range []string{
		`courriel_connections_total{listener="smtp"} 2`,
		`courriel_connections_total{listener="imaps"} 1`,
		`courriel_connections_active{listener="smtp"} 1`,
		`courriel_smtp_transactions_total{listener="smtp",result="accepted"} 1`,
		`courriel_smtp_transactions_total{listener="smtp",result="rejected"} 1`,
		`courriel_smtp_transactions_total{listener="submission",result="deferred"} 1`,
		`courriel_deliveries_total{status="sent"} 2`,
		`courriel_deliveries_total{status="bounced"} 1`,
		`courriel_deliveries_total{status="deferred"} 0`, // declared up front
		`courriel_auth_failures_total{listener="submission"} 1`,
		`courriel_imap_sessions_active 1`,
		`courriel_imap_sessions_total 2`,
		`courriel_ldap_searches_total 7`,
		`courriel_ldap_cache_hits_total 5`,
		`courriel_ldap_binds_total 3`,
		`courriel_ldap_errors_total{kind="connect"} 2`,
		`courriel_ldap_errors_total{kind="timeout"} 0`,
		`# TYPE courriel_ldap_errors_total counter`,
		`courriel_queue_messages 42`,
		`courriel_queue_messages_deferred 40`,
		`courriel_queue_recipients{state="pending"} 50`,
		`courriel_queue_recipients{state="delivered"} 3`,
		`courriel_queue_recipients{state="failed"} 1`,
		`# TYPE courriel_ldap_searches_total counter`,
		`# TYPE courriel_queue_messages gauge`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(text, "\n"+name+" ") {
			t.Errorf("/metrics lacks the Go/process collector metric %s", name)
		}
	}
}

func TestMetricsNil(t *testing.T) {
	t.Parallel()
	var m *Metrics
	// Every method must be a no-op, not a panic.
	m.ConnOpened("smtp")
	m.ConnClosed("smtp")
	m.Transaction("smtp", ResultAccepted)
	m.Delivery(StatusSent)
	m.AuthFailure("smtp")
	m.IMAPSessionStarted()
	m.IMAPSessionEnded()
	m.RegisterDirectoryStats(func() DirectoryStats { return DirectoryStats{Searches: 1} })
	m.RegisterQueueStats(func() QueueStats { return QueueStats{Messages: 1} })
	if m.Registry() != nil {
		t.Errorf("nil Metrics: Registry() = non-nil")
	}
	rec := httptest.NewRecorder()
	Handler(Options{Metrics: m}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics: GET /metrics = %d, want 404", rec.Code)
	}
}

func TestMetricsLabelsBounded(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Transaction("smtp", "accepted\n{evil}")
	m.Delivery("exploded")
	m.ConnOpened("bad\xffutf8")                  // the library panics on invalid UTF-8
	m.AuthFailure(strings.Repeat("l", 10_000))   // bounded
	m.AuthFailure(strings.Repeat("é", 40) + "x") // cut on a rune boundary

	tests := []struct {
		name   string
		labels map[string]string
	}{
		{"courriel_smtp_transactions_total", map[string]string{"listener": "smtp", "result": "other"}},
		{"courriel_deliveries_total", map[string]string{"status": "other"}},
		{"courriel_connections_total", map[string]string{"listener": "bad?utf8"}},
		{"courriel_auth_failures_total", map[string]string{"listener": strings.Repeat("l", maxListenerLabel)}},
		{"courriel_auth_failures_total", map[string]string{"listener": strings.Repeat("é", 32)}},
	}
	for _, tc := range tests {
		if v, ok := metricValue(t, m.Registry(), tc.name, tc.labels); !ok || v != 1 {
			t.Errorf("%s%v = %v (present %v), want 1", tc.name, tc.labels, v, ok)
		}
	}
}

func TestMetricsIndependent(t *testing.T) {
	t.Parallel()
	a, b := NewMetrics(), NewMetrics()
	a.AuthFailure("smtp")
	if _, ok := metricValue(t, b.Registry(), "courriel_auth_failures_total", map[string]string{"listener": "smtp"}); ok {
		t.Errorf("an event on one Metrics shows on another: shared state")
	}
	if a.Registry() == prometheus.DefaultRegisterer {
		t.Errorf("Metrics uses the global default registry")
	}
}

func TestMetricsConcurrent(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				m.ConnOpened("smtp")
				m.Transaction("smtp", ResultAccepted)
				m.Delivery(StatusSent)
				m.IMAPSessionStarted()
				m.IMAPSessionEnded()
				m.ConnClosed("smtp")
			}
		})
	}
	wg.Wait()
	want := float64(workers * each)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"courriel_connections_total", map[string]string{"listener": "smtp"}, want},
		{"courriel_connections_active", map[string]string{"listener": "smtp"}, 0},
		{"courriel_smtp_transactions_total", map[string]string{"listener": "smtp", "result": "accepted"}, want},
		{"courriel_deliveries_total", map[string]string{"status": "sent"}, want},
		{"courriel_imap_sessions_total", nil, want},
		{"courriel_imap_sessions_active", nil, 0},
	} {
		if v, _ := metricValue(t, m.Registry(), tc.name, tc.labels); v != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, v, tc.want)
		}
	}
}

func TestScrapeFuncs(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	reg := m.Registry()

	// Before registration: the metrics are absent, not zero.
	if _, ok := metricValue(t, reg, "courriel_queue_messages", nil); ok {
		t.Errorf("courriel_queue_messages present before RegisterQueueStats")
	}
	if _, ok := metricValue(t, reg, "courriel_ldap_binds_total", nil); ok {
		t.Errorf("courriel_ldap_binds_total present before RegisterDirectoryStats")
	}

	// The directory function runs once per scrape, not once per metric.
	var calls atomic.Int64
	m.RegisterDirectoryStats(func() DirectoryStats {
		return DirectoryStats{Searches: calls.Add(1)}
	})
	if v, _ := metricValue(t, reg, "courriel_ldap_searches_total", nil); v != 1 {
		t.Errorf("searches = %v after one scrape, want 1", v)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("directory stats function called %d times for one scrape, want 1", n)
	}

	// A later registration replaces the function; nil removes the metric.
	m.RegisterQueueStats(func() QueueStats { return QueueStats{Messages: 1} })
	m.RegisterQueueStats(func() QueueStats { return QueueStats{Messages: 2} })
	if v, _ := metricValue(t, reg, "courriel_queue_messages", nil); v != 2 {
		t.Errorf("queue = %v, want the second function's 2", v)
	}
	m.RegisterQueueStats(nil)
	if _, ok := metricValue(t, reg, "courriel_queue_messages", nil); ok {
		t.Errorf("courriel_queue_messages present after RegisterQueueStats(nil)")
	}
}

// A panicking scrape function costs its own metric, not the scrape.
func TestScrapeFuncPanics(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.ConnOpened("smtp")
	m.RegisterQueueStats(func() QueueStats { panic("queue broken") })
	text := scrape(t, Handler(Options{Metrics: m}))
	if !strings.Contains(text, `courriel_connections_total{listener="smtp"} 1`) {
		t.Errorf("other metrics lost when one scrape function panics:\n%s", text)
	}
	if strings.Contains(text, "courriel_queue_messages ") {
		t.Errorf("a panicking function still produced a value")
	}
}

func BenchmarkEvents(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened("smtp")
		m.Transaction("smtp", ResultAccepted)
		m.ConnClosed("smtp")
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/monitor"
)

// TestQueueAttemptsCounted: the queue's delivery attempts reach
// courriel_deliveries_total as scraped. Without a local store the local
// copy's attempt in Accept fails for now: one deferral.
func TestQueueAttemptsCounted(t *testing.T) {
	t.Parallel()
	a, q := metricsQueue(t)
	_, errs, err := q.Accept(context.Background(), "", "s@x.test", nil,
		[]delivery.Recipient{{Address: "u@mx.test", Maildir: t.TempDir() + "/Maildir/"}},
		strings.NewReader("Subject: t\r\n\r\nbody\r\n"))
	if err != nil || len(errs) != 1 || errs[0] == nil {
		t.Fatalf("Accept: %v %v, want the local copy deferred", errs, err)
	}
	mfs, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "courriel_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got["deferred"] != 1 || got["sent"] != 0 || got["bounced"] != 0 {
		t.Errorf("courriel_deliveries_total = %v, want one deferral", got)
	}
}

// TestHeldMessagesScraped: a held message is in courriel_queue_messages,
// as in Postfix's mailq, and courriel_queue_messages_held says it is held.
func TestHeldMessagesScraped(t *testing.T) {
	t.Parallel()
	a, q := metricsQueue(t)
	registerQueueMetrics(a.metrics, q)
	var ids []string
	for range 2 {
		id, err := q.Enqueue(context.Background(), "s@mx.test", []string{"r@remote.test"}, []byte("Subject: t\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := q.Hold(ids[0]); err != nil {
		t.Fatal(err)
	}
	mfs, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if m := mf.GetMetric(); len(m) == 1 && m[0].GetGauge() != nil {
			got[mf.GetName()] = m[0].GetGauge().GetValue()
		}
	}
	if got["courriel_queue_messages"] != 2 || got["courriel_queue_messages_held"] != 1 || got["courriel_queue_messages_deferred"] != 0 {
		t.Errorf("scraped %v, want 2 messages, 1 held", got)
	}
}

// metricsQueue is an app with metrics and its queue on a fresh spool,
// closed when the test ends.
func metricsQueue(t *testing.T) (*app, *queue.Queue) {
	t.Helper()
	a := &app{
		cfg:     &Config{MyHostname: "mx.test", Queue: QueueConfig{Dir: t.TempDir(), TLSPolicy: "none"}},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics: monitor.NewMetrics(),
	}
	q, err := a.openQueue()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return a, q
}

package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"courriel/delivery/queue"
	"courriel/monitor"
)

// registerQueueMetrics exports the queue's size from its own counters: a
// scrape reads no envelope nor directory. courriel_queue_messages counts
// the held messages too, as Postfix's mailq lists them with the others
// (marked '!'), so that a message set aside is never out of sight;
// courriel_queue_messages_held says how many of them are held, as
// …_deferred says how many wait for a retry.
func registerQueueMetrics(m *monitor.Metrics, q *queue.Queue) {
	m.RegisterQueueStats(func() monitor.QueueStats {
		c := q.Counts()
		return monitor.QueueStats{Messages: c.Messages + c.Held, Deferred: c.Deferred,
			Pending: c.Pending, Delivered: c.Delivered, Failed: c.Failed}
	})
	m.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "courriel_queue_messages_held",
		Help: "Queued messages in the hold queue (courriel queue hold), counted in courriel_queue_messages too.",
	}, func() float64 { return float64(q.Counts().Held) }))
}

package queue

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// message4K is a 4 KiB message.
var message4K = []byte("From: <a@local.test>\r\nTo: <b@remote.test>\r\nSubject: bench\r\n\r\n" +
	strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80))

func benchOptions(b *testing.B, dir string) Options {
	return Options{
		Dir:       dir,
		Hostname:  "mta.test",
		Logger:    slog.New(slog.DiscardHandler),
		TLSPolicy: PolicyNone,
		Resolver:  &fakeResolver{},
	}
}

// BenchmarkEnqueue4KiB: durable enqueues (two file fsyncs and a directory
// fsync each) from 20 goroutines.
func BenchmarkEnqueue4KiB(b *testing.B) {
	q, err := Open(benchOptions(b, b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	b.SetParallelism(max(1, 20/runtime.GOMAXPROCS(0)))
	b.SetBytes(int64(len(message4K)))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Enqueue(context.Background(), "a@local.test", []string{"b@remote.test"}, message4K); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkDeliveryLoopback: enqueue b.N messages (one recipient each, all
// to one destination), then measure until the runner has delivered them all
// to a loopback sink: msgs/s delivered, and TCP connections the sink
// accepted per message.
func BenchmarkDeliveryLoopback(b *testing.B) {
	sk := newSink(b, sinkOptions{})
	o := benchOptions(b, b.TempDir())
	o.Routes = map[string]string{"*": sk.addr}
	q, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	// A job may end without a delivery (postponed while its destination
	// has enough waiting): count the messages that left the queue.
	var done atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	q.onJobDone = func(id string) {
		q.mu.Lock()
		_, queued := q.entries[id]
		q.mu.Unlock()
		if !queued && done.Add(1) == n {
			close(all)
		}
	}
	for range b.N {
		if _, err := q.Enqueue(context.Background(), "a@local.test", []string{"b@remote.test"}, message4K); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go func() { q.Run(ctx); close(ran) }()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatal("deliveries did not finish")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	conns, txs := sk.counts()
	b.ReportMetric(float64(conns)/float64(b.N), "conns/msg")
	if txs != b.N {
		b.Fatalf("sink got %d transactions, want %d", txs, b.N)
	}
	cancel()
	<-ran
	if l, _ := q.List(); len(l) != 0 {
		b.Fatalf("%d messages left", len(l))
	}
}

// BenchmarkOpen10k: the time to Open (recover and index) a spool of 10,000
// queued messages, and the heap that index takes.
func BenchmarkOpen10k(b *testing.B) {
	dir := b.TempDir()
	const n = 10000
	now := time.Now()
	for i := range n {
		m := &Message{Version: envelopeVersion, ID: newID(now.Add(time.Duration(i))), From: "a@local.test", Created: now,
			Size: int64(len(message4K)), Recipients: []Recipient{{Addr: "b@remote.test", State: StatePending, NextAttempt: now.Add(time.Hour)}}}
		env, _ := encodeEnvelope(m)
		// Written without fsync: only Open is measured here.
		if err := os.WriteFile(dir+"/"+m.ID+extData, message4K, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(dir+"/"+m.ID+extEnvelope, env, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	var kept *Queue
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if kept != nil {
			kept.Close()
			kept = nil
		}
		runtime.GC()
		runtime.ReadMemStats(&before)
		q, err := Open(benchOptions(b, dir))
		if err != nil {
			b.Fatal(err)
		}
		kept = q
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := kept.count(); got != n {
		b.Fatalf("indexed %d messages, want %d", got, n)
	}
	b.ReportMetric(float64(after.HeapInuse)/(1<<20), "MiB-heap-inuse")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20), "MiB-for-10k")
	kept.Close()
}

package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"courriel/delivery"
)

// shutdownSink is a sink whose reply to the final dot of its n-th
// message (from 0) comes only after hold(n).
func shutdownSink(t *testing.T, hold func(n int) time.Duration) *sink {
	return newSink(t, sinkOptions{data: func(n int) error {
		time.Sleep(hold(n))
		return nil
	}})
}

// shutdownOptions route remote.test to s, with idle sessions kept long
// enough for the next message whatever the machine's load.
func shutdownOptions(t *testing.T, dir string, clock *fakeClock, s *sink) Options {
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil // the real dialer, to the loopback sink
	o.ConnectionCacheTime = 30 * time.Second
	return o
}

// waitHalted waits until Shutdown has begun.
func waitHalted(t *testing.T, q *Queue) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		q.mu.Lock()
		halted := q.runCtx == nil || q.runCtx.Err() != nil
		q.mu.Unlock()
		if halted {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not begin within 20s")
		}
	}
}

// TestShutdownAwaitsFinalReply: a shutdown while the server takes its
// time over the reply to a final dot lets that transaction finish (RFC
// 1047): the 250 is read and recorded, so the message is not sent again
// at the next start, and Run stops only then. Meanwhile nothing new is
// started: a message queued after the shutdown began is not tried. The
// transaction is the second on a cached session.
func TestShutdownAwaitsFinalReply(t *testing.T) {
	t.Parallel()
	const wait = time.Second
	s := shutdownSink(t, func(n int) time.Duration {
		if n == 1 {
			return wait
		}
		return 0
	})
	clock := newClock()
	dir := t.TempDir()
	h := start(t, shutdownOptions(t, dir, clock, s))
	h.enqueue("alice@local.test", "bob@remote.test")
	recv(t, s.delivs, "the first message")
	h.waitUntil("the first message is done", h.empty)
	id := h.enqueue("alice@local.test", "carol@remote.test")
	s.waitData(t, 2)

	began := time.Now()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped <- h.q.Shutdown(ctx)
	}()
	waitHalted(t, h.q)
	late := h.enqueue("alice@local.test", "dave@remote.test")
	if err := recv(t, stopped, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-h.ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Shutdown")
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if logs := h.logs.String(); !loggedSent(logs, id, "carol@remote.test") || strings.Contains(logs, "interrupted by shutdown") {
		t.Errorf("carol's copy not logged sent, or something interrupted:\n%s", logs)
	}
	l, err := h.q.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].ID != late || l[0].Recipients[0].Attempts != 0 {
		t.Fatalf("queue after the shutdown: %+v, want only the message queued after it began, untried", l)
	}
	if conns, txs := s.counts(); conns != 1 || txs != 2 {
		t.Errorf("%d connections, %d transactions at the server; want 1 and 2 (the session reused)", conns, txs)
	}

	// The next start sends the late message only: carol got hers once.
	h.q.Close()
	h2 := start(t, shutdownOptions(t, dir, clock, s))
	recv(t, s.delivs, "the late message")
	h2.waitUntil("the queue is empty", h2.empty)
	carol := 0
	for _, x := range s.transactions() {
		if x.rcpts[0] == "carol@remote.test" {
			carol++
		}
	}
	if carol != 1 {
		t.Errorf("carol got %d copies, want 1", carol)
	}
}

// loggedSent says whether the log has a line saying message id's copy
// for rcpt was sent.
func loggedSent(logs, id, rcpt string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "queue_id="+id+" to=<"+rcpt+">") && strings.Contains(l, `status="sent (250 `) {
			return true
		}
	}
	return false
}

// TestShutdownDeadlineCutsFinalReply: a shutdown whose deadline comes
// before the reply to the final dot cuts the transaction then, and the
// attempt is recorded as a deferral (the server may have the message:
// no attempt would make a node copy's retry lack XRETRY). A server that
// did take it gets it again at the retry: a duplicate that no client can
// avoid once it stops waiting (RFC 1047), as with Postfix.
func TestShutdownDeadlineCutsFinalReply(t *testing.T) {
	t.Parallel()
	s := shutdownSink(t, func(n int) time.Duration {
		if n == 0 {
			return 2 * time.Second
		}
		return 0
	})
	clock := newClock()
	dir := t.TempDir()
	h := start(t, shutdownOptions(t, dir, clock, s))
	id := h.enqueue("alice@local.test", "bob@remote.test")
	s.waitData(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.q.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline exceeded", err)
	}
	if logs := h.logs.String(); !strings.Contains(logs, `status="deferred (end of DATA to `) ||
		!strings.Contains(logs, "cut short before the reply to the end of the data") {
		t.Errorf("log:\n%s", logs)
	}
	m, _, err := h.q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[0]; r.State != StatePending || r.Attempts != 1 || r.Status != "4.4.2" {
		t.Errorf("recipient after the cut %+v, want pending after one attempt", r)
	}
	// The server answers 250 to nobody, having taken the message.
	recv(t, s.delivs, "the message at the server")
	h.q.Close()
	clock.Advance(time.Hour)
	h2 := start(t, shutdownOptions(t, dir, clock, s))
	recv(t, s.delivs, "the retry")
	h2.waitUntil("the queue is empty", h2.empty)
	if _, txs := s.counts(); txs != 2 {
		t.Errorf("%d transactions at the server, want 2 (the duplicate)", txs)
	}
}

// TestShutdownAwaitsHandOverReply: a hand-over whose data went to the
// home node when the shutdown begins gets its reply, and the caller's
// message is handed over: no copy is queued here to be sent again.
func TestShutdownAwaitsHandOverReply(t *testing.T) {
	t.Parallel()
	node := newFakeNode(t, func(string) string { return "" }, false)
	node.replyDelay = time.Second
	q, _ := handOverQueue(t, t.TempDir(), node.addr)
	type outcome struct {
		handed bool
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		_, handed, _, err := q.HandOver(context.Background(), "m1", "sender@y.test", handOverCopies, delivery.MemContent(testMessage))
		done <- outcome{handed, err}
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, datas, _ := node.seen(); datas > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no data at the node within 20s")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := q.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if o := recv(t, done, "HandOver"); o.err != nil || !o.handed {
		t.Fatalf("HandOver: handed %v, %v; want handed", o.handed, o.err)
	}
	if l, err := q.List(); err != nil || len(l) != 0 {
		t.Errorf("queue %+v, %v after the hand-over; want empty", l, err)
	}
	if c := node.copies(); c["bob@x.test"] != 1 || c["carol@x.test"] != 1 {
		t.Errorf("copies at the node %v, want one each", c)
	}
}

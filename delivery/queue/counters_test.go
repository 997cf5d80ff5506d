package queue

import (
	"context"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// recount is Counts computed the slow way, from every envelope on disk.
func recount(t *testing.T, q *Queue) Counts {
	t.Helper()
	list, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	var c Counts
	for _, s := range list {
		m, _, err := q.Show(s.ID)
		if err != nil {
			t.Fatal(err)
		}
		c.add(m, +1)
	}
	return c
}

// The counters follow enqueue, recovery at Open, delivery attempts, a
// deletion by another process and the end of a message, and always equal a
// recount from the spool.
func TestCountsFollowTheQueue(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		switch to {
		case "later@remote.test":
			return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "try later")
		case "nobody@remote.test":
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	}})
	dir := t.TempDir()
	clock := newClock()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	b := newBounces()
	o.Bounce = b.fn

	// Enqueued before any runner: two new messages, three recipients.
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, "alice@local.test", []string{"bob@remote.test", "later@remote.test"}, []byte(testMessage)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(ctx, "alice@local.test", []string{"nobody@remote.test"}, []byte(testMessage)); err != nil {
		t.Fatal(err)
	}
	want := Counts{Messages: 2, Pending: 3}
	if got := q.Counts(); got != want {
		t.Errorf("after Enqueue: %+v, want %+v", got, want)
	}
	q.Close()

	// Loaded again by the next owner; a client counts nothing.
	h := start(t, o)
	h.waitJob()
	h.waitJob()
	// bob delivered, later deferred (its message waits), nobody bounced and
	// told: that message left.
	want = Counts{Messages: 1, Deferred: 1, Pending: 1, Delivered: 1}
	if got := h.q.Counts(); got != want {
		t.Errorf("after the first attempts: %+v, want %+v", got, want)
	}
	if got := recount(t, h.q); got != want {
		t.Errorf("recount from the spool: %+v, want %+v", got, want)
	}
	cli := openClient(t, o)
	if got := cli.Counts(); got != (Counts{}) {
		t.Errorf("a client's counts: %+v, want zero", got)
	}

	// Another process deletes it: the runner's rescan takes it out.
	list, _ := cli.List()
	if err := cli.Delete(list[0].ID); err != nil {
		t.Fatal(err)
	}
	for i := 0; h.q.Counts() != (Counts{}); i++ {
		if i == 1000 {
			t.Fatalf("counts still %+v 10 s after the deletion", h.q.Counts())
		}
		time.Sleep(10 * time.Millisecond) // the runner polls every 20 ms
	}
	if got := recount(t, h.q); got != (Counts{}) {
		t.Errorf("recount after delete: %+v", got)
	}
}

// waitHeld polls, bounded, until the owner's counts say held messages held
// and others messages in the runner's index.
func waitHeld(t *testing.T, q *Queue, held, others int) {
	t.Helper()
	for range 1000 {
		if c := q.Counts(); c.Held == held && c.Messages == others {
			return
		}
		time.Sleep(10 * time.Millisecond) // the runner polls every 20 ms
	}
	t.Fatalf("counts %+v, want %d held and %d others", q.Counts(), held, others)
}

// Held messages are counted (Counts.Held, courriel_queue_messages_held),
// whether the owner or another process (`courriel queue hold`) holds,
// releases or deletes them, and by the next owner at Open.
func TestHeldCounted(t *testing.T) {
	t.Parallel()
	for _, fromClient := range []bool{false, true} {
		s := newSink(t, sinkOptions{rcpt: func(int, string) error {
			return smtpErr(421, gosmtp.EnhancedCode{4, 4, 2}, "busy")
		}})
		dir := t.TempDir()
		o := baseOptions(t, dir, newClock())
		o.Routes = map[string]string{"*": s.addr}
		o.Dialer = nil
		h := start(t, o)
		admin := h.q
		if fromClient {
			admin = openClient(t, baseOptions(t, dir, newClock()))
		}
		a := h.enqueue("alice@local.test", "a@remote.test")
		h.waitJob()
		b := h.enqueue("alice@local.test", "b@remote.test")
		h.waitJob()
		waitHeld(t, h.q, 0, 2)
		for _, id := range []string{a, b} {
			if err := admin.Hold(id); err != nil {
				t.Fatal(err)
			}
		}
		waitHeld(t, h.q, 2, 0)
		if err := admin.Release(a); err != nil {
			t.Fatal(err)
		}
		waitHeld(t, h.q, 1, 1)
		if err := admin.Delete(b); err != nil {
			t.Fatal(err)
		}
		waitHeld(t, h.q, 0, 1)
		if err := admin.Hold(a); err != nil {
			t.Fatal(err)
		}
		waitHeld(t, h.q, 1, 0)
		h.close()

		q, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		if c := q.Counts(); c.Held != 1 || c.Messages != 0 {
			t.Errorf("at Open: %+v, want the held message counted", c)
		}
		q.Close()
	}
}

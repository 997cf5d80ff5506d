package queue

import "sync"

// Counts is the size of the queue by state. The owning process keeps it as
// messages are added, tried and removed, so reading it (a metrics scrape)
// touches no file. It covers the messages the runner has indexed (at most
// Options.MaxQueueFiles), and those held; in client mode it is zero.
type Counts struct {
	Messages int // messages in the queue
	// Deferred counts the messages waiting for a retry after a failed
	// attempt (a recipient deferred, or a failure's DSN not sent yet); the
	// others are new, not tried yet.
	Deferred int

	Pending   int // recipients still to deliver (never tried, or deferred)
	Delivered int // recipients delivered whose message waits for others
	Failed    int // recipients failed whose sender is not told yet

	// Held counts the messages in the hold queue (Hold), which are not
	// in Messages nor among the recipients above: the runner does not
	// index them. Postfix's mailq lists them with the others.
	Held int
}

// counters keeps Counts up to date; every change of an indexed message's
// envelope goes through change.
type counters struct {
	mu sync.Mutex
	c  Counts // guarded by mu
}

// change replaces old's contribution by next's; nil for a message that
// enters (old) or leaves (next) the index.
func (c *counters) change(old, next *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.add(old, -1)
	c.c.add(next, +1)
}

func (c *counters) get() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c
}

func (c *Counts) add(m *Message, sign int) {
	if m == nil {
		return
	}
	c.Messages += sign
	deferred := false
	for _, r := range m.Recipients {
		switch r.State {
		case StatePending:
			c.Pending += sign
			deferred = deferred || r.Attempts > 0
		case StateDelivered:
			c.Delivered += sign
		case StateFailed:
			if !r.Notified {
				c.Failed += sign
				deferred = true
			}
		}
	}
	if deferred {
		c.Deferred += sign
	}
}

// Counts returns the queue's size by state, from memory.
func (q *Queue) Counts() Counts {
	c := q.counts.get()
	if q.sp.owner() {
		c.Held = int(q.sp.held.Load())
	}
	return c
}

package queue

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// connCache is the runner's view of its destinations (a route key each):
// the SMTP sessions open to each, the idle ones kept for the next message
// (Postfix's connection cache), how many may be open at once, and whether
// the destination is dead. It is shared by every job of a Run.
type connCache struct {
	log       *slog.Logger
	now       func() time.Time // the queue's clock: dead-destination periods
	limit     int              // sessions open per destination (idle, busy or being dialled)
	idleTime  time.Duration    // an idle session is closed after this long
	reuseMax  int              // deliveries per session before it is closed
	reuseTime time.Duration    // age after which a session is not reused
	deadTime  time.Duration    // how long a dead destination is left alone
	nodeDead  time.Duration    // the same for a cluster node (key "node:NAME")

	// unpark wakes a message postponed by get (Queue.unpark): called
	// without mu, once its destination may take one more job.
	unpark func(id string)

	mu    sync.Mutex
	dests map[string]*dest // guarded by mu
	quits sync.WaitGroup   // sessions being closed politely (QUIT)
}

// dest is one destination's state. Guarded by connCache.mu.
type dest struct {
	idle []*session // most recently used last
	open int        // sessions counted against the limit: idle, in use, or being dialled
	// dialing and reached make the first connection to a destination not
	// yet known to work a probe: other jobs wait for its outcome instead
	// of all dialling a host that may be down (Postfix starts a
	// destination at a low concurrency for the same reason).
	dialing   bool
	reached   bool
	retried   bool      // the probe after a dead period is under way
	waiters   int       // jobs waiting in get without their Concurrency slot
	parked    []string  // messages postponed by get, woken one by one as jobs stop waiting
	deadUntil time.Time // zero: alive
	dead      *failure  // why it was marked dead
	// changed is closed and replaced whenever a waiter might now proceed.
	changed chan struct{}
}

// forgetDead bounds the memory of dead destinations no message went to.
const forgetDead = 24 * time.Hour

func newConnCache(o Options, log *slog.Logger) *connCache {
	return &connCache{
		log:       log,
		now:       o.Now,
		limit:     o.DestinationConcurrency,
		idleTime:  o.ConnectionCacheTime,
		reuseMax:  o.ConnectionReuseLimit,
		reuseTime: connectionReuseTime,
		deadTime:  o.MinBackoff,
		nodeDead:  o.nodeDeadTime(),
		dests:     map[string]*dest{},
	}
}

func (c *connCache) destLocked(key string) *dest {
	d := c.dests[key]
	if d == nil {
		d = &dest{changed: make(chan struct{})}
		c.dests[key] = d
	}
	return d
}

func (d *dest) broadcast() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// get returns, for a delivery to key: an idle session, or nothing and
// permission to dial (a slot counted against the limit, which the caller
// gives back through dialed; probe says whether this dial decides if the
// destination works), or the failure to record when the destination is
// dead. With fresh, idle sessions are left alone. It waits while the
// destination has its limit of sessions busy, and while a probe is under
// way.
//
// A job (its context holds its jobSlot) gives its Concurrency slot back
// while it waits, and takes one again before it returns a session or a
// permission to dial; at most limit jobs wait so for one destination, and
// the next ones are postponed (a failure with postpone: not tried), and,
// with park, their message id is kept to be woken (unpark) when one of
// them stops waiting. Without park the failure only says the destination
// is busy: nextHost's second session, whose job goes on with its first
// session's answers and is not postponed; parked, its id took a wake-up
// meant for a message really postponed, and made its next run due at
// once (unparked) though it was never postponed.
func (c *connCache) get(ctx context.Context, id, key string, fresh, park bool) (s *session, probe bool, f *failure) {
	slot, _ := ctx.Value(slotKey{}).(*jobSlot)
	waiting, waited := false, false
	var wake []string // parked messages to wake, after mu
	defer func() {
		for _, id := range wake {
			c.wake(id)
		}
	}()
	// A failure (dead, shutdown) after a wait goes back to a job that
	// needs its slot again to record it.
	defer slot.take(ctx)
	// granted takes the job's slot back before it uses what it was given.
	granted := func(s *session, probe bool) (*session, bool, *failure) {
		if slot.take(ctx) {
			return s, probe, nil
		}
		if s != nil {
			c.put(key, s, false)
		} else {
			c.dialed(key, probe, nil, nil)
		}
		return nil, false, tempFailure("4.4.1", "delivery interrupted by shutdown")
	}
	for {
		c.mu.Lock()
		d := c.destLocked(key)
		if waiting {
			// Room for one more waiter: a parked message may come.
			d.waiters--
			waiting = false
			wake = append(wake, c.popParkedLocked(d)...)
		}
		if f := c.deadLocked(key, d); f != nil {
			// The messages parked here share the failure now rather
			// than after their delay.
			wake = append(wake, d.parked...)
			d.parked = nil
			c.mu.Unlock()
			return nil, false, f
		}
		if !fresh {
			if s := c.takeIdleLocked(d); s != nil {
				c.mu.Unlock()
				return granted(s, false)
			}
		} else if d.open >= c.limit && len(d.idle) > 0 {
			// The idle sessions are not wanted: make room.
			c.quitLater(d.idle[0])
			d.idle = slices.Delete(d.idle, 0, 1)
			d.open--
		}
		if d.open < c.limit && (d.reached || !d.dialing) {
			d.open++
			probe = !d.reached
			d.dialing = probe
			c.mu.Unlock()
			return granted(nil, probe)
		}
		if slot != nil && !waited && d.waiters >= c.limit {
			if !park {
				c.mu.Unlock()
				return nil, false, tempFailure("4.4.1", "destination busy")
			}
			if !slices.Contains(d.parked, id) {
				d.parked = append(d.parked, id)
			}
			c.mu.Unlock()
			f := tempFailure("4.4.1", "destination busy: postponed")
			f.postpone = true
			return nil, false, f
		}
		d.waiters++
		waiting, waited = true, true
		wait := d.changed
		c.mu.Unlock()
		slot.release()
		select {
		case <-wait:
		case <-ctx.Done():
			c.mu.Lock()
			d.waiters--
			c.mu.Unlock()
			return nil, false, tempFailure("4.4.1", "delivery interrupted by shutdown")
		}
	}
}

// popParkedLocked takes the message parked longest at d, if any.
func (c *connCache) popParkedLocked(d *dest) []string {
	if len(d.parked) == 0 {
		return nil
	}
	id := d.parked[0]
	d.parked = slices.Delete(d.parked, 0, 1)
	return []string{id}
}

func (c *connCache) wake(id string) {
	if c.unpark != nil {
		c.unpark(id)
	}
}

// deadLocked returns the failure to record for a dead destination. Once its
// period is over the destination is alive again for one probe: the next
// dial decides.
func (c *connCache) deadLocked(key string, d *dest) *failure {
	if d.dead == nil {
		return nil
	}
	if c.now().Before(d.deadUntil) {
		f := *d.dead
		f.code = 0 // the reply quoted is not this attempt's
		f.text = printable("delivery temporarily suspended: "+d.dead.text, maxReplyText)
		return &f
	}
	d.dead, d.deadUntil, d.reached, d.retried = nil, time.Time{}, false, true
	c.log.Info("destination retried after its dead period", "destination", key)
	return nil
}

// takeIdleLocked pops the most recently used idle session that may still
// be reused, closing those that may not.
func (c *connCache) takeIdleLocked(d *dest) *session {
	now := time.Now()
	for len(d.idle) > 0 {
		s := d.idle[len(d.idle)-1]
		d.idle = d.idle[:len(d.idle)-1]
		if now.Sub(s.idleSince) >= c.idleTime || now.Sub(s.born) >= c.reuseTime {
			d.open--
			c.quitLater(s)
			continue
		}
		if s.unread() {
			// Bytes nobody asked for (or the server's close) arrived
			// while it was idle: the next reply read would be theirs.
			d.open--
			c.log.Debug("cached connection not reused: the server sent something or closed it while it was idle", "relay", s.relay)
			s.abort()
			continue
		}
		return s
	}
	return nil
}

// dialed ends a dial that get allowed: the new session (which keeps its
// slot), or the failure, which gives the slot back and, when it says the
// destination is down and no other session to it is open, marks it dead
// for deadTime (Postfix's queue manager suspends a dead destination for
// minimal_backoff_time): until then its messages are deferred without a
// dial.
func (c *connCache) dialed(key string, probe bool, s *session, f *failure) {
	var wake []string
	defer func() {
		for _, id := range wake {
			c.wake(id)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.destLocked(key)
	if s == nil {
		wake = c.popParkedLocked(d)
	}
	if probe {
		d.dialing = false
	}
	defer d.broadcast()
	if s != nil {
		if probe && d.dead == nil {
			d.reached = true
			if d.retried {
				d.retried = false
				c.log.Info("destination reachable again, deliveries resumed", "destination", key, "relay", s.relay)
			}
		}
		return
	}
	d.open--
	// While other sessions to it are open, one refused connection is the
	// server's load talking (or a limit per client), not a dead host.
	if f == nil || !f.dead || d.dead != nil || d.open > 0 {
		return
	}
	deadTime := c.deadTime
	if strings.HasPrefix(key, "node:") {
		deadTime = c.nodeDead
	}
	d.dead, d.deadUntil, d.reached, d.retried = f, c.now().Add(deadTime), false, false
	c.log.Warn("destination not responding, deliveries to it suspended",
		"destination", key, "relay", f.relay, "for", deadTime.String(), "reason", f.text)
}

// put hands a session back after a delivery: kept idle for the next
// message when reusable, closed otherwise. A session that broke, timed out
// or was told 421 is never reusable.
func (c *connCache) put(key string, s *session, reusable bool) { c.handBack(key, s, reusable, true) }

// release hands back a session that is not to be cached (nextHost's):
// QUIT when it is sound, and its slot freed.
func (c *connCache) release(key string, s *session) { c.handBack(key, s, true, false) }

// handBack is put and release: the session kept idle only when cache
// says so and it is fit for the next message, else QUIT when reusable
// and sound, aborted otherwise; its slot freed, the parked woken.
func (c *connCache) handBack(key string, s *session, reusable, cache bool) {
	s.uses++
	now := time.Now()
	var wake []string
	defer func() {
		for _, id := range wake {
			c.wake(id)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.destLocked(key)
	defer d.broadcast()
	wake = c.popParkedLocked(d)
	if reusable && !s.closing && s.unread() {
		// More than the replies to our commands came: every later
		// reply would be read one late and given to the wrong
		// command (a recipient accepted taken as refused).
		c.log.Info("connection not reused: the server sent more than the replies to its commands", "relay", s.relay)
		s.closing = true
	}
	if !cache || !reusable || s.closing || s.uses >= c.reuseMax || now.Sub(s.born) >= c.reuseTime || d.dead != nil {
		d.open--
		if reusable && !s.closing {
			c.quitLater(s)
		} else {
			s.abort()
		}
		return
	}
	s.idleSince = now
	s.reused = true
	d.idle = append(d.idle, s)
}

// expire closes the sessions idle for longer than the cache time, and
// forgets destinations that hold nothing worth remembering (a dead one a
// day after its period: by then nobody waits to hear that it is back).
func (c *connCache) expire() {
	now := time.Now()
	var wake []string
	defer func() {
		for _, id := range wake {
			c.wake(id)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, d := range c.dests {
		if d.open == 0 && d.waiters == 0 && len(d.parked) > 0 {
			// Nothing left to wake them: they come now.
			wake = append(wake, d.parked...)
			d.parked = nil
		}
		kept := d.idle[:0]
		for _, s := range d.idle {
			if now.Sub(s.idleSince) < c.idleTime {
				kept = append(kept, s)
				continue
			}
			d.open--
			c.quitLater(s)
		}
		clear(d.idle[len(kept):])
		if len(kept) < len(d.idle) {
			d.broadcast()
		}
		d.idle = kept
		if d.open == 0 && !d.dialing && d.waiters == 0 && len(d.parked) == 0 && (d.dead == nil || c.now().After(d.deadUntil.Add(forgetDead))) {
			delete(c.dests, key)
		}
	}
}

// forgetDead makes every dead destination alive again for one probe
// (Flush).
func (c *connCache) forgetDead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, d := range c.dests {
		if d.dead != nil {
			d.dead, d.deadUntil, d.reached, d.retried = nil, time.Time{}, false, true
			c.log.Info("destination retried at once: queue flushed", "destination", key)
			d.broadcast()
		}
	}
}

// run closes idle sessions on time until ctx is done.
func (c *connCache) run(ctx context.Context) {
	t := time.NewTicker(clampDuration(c.idleTime/4, 10*time.Millisecond, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.expire()
		}
	}
}

// closeAll drops every idle session and all destination state, once no
// job runs any more (the end of Run), and waits for the QUITs in flight.
func (c *connCache) closeAll() {
	c.mu.Lock()
	for _, d := range c.dests {
		for _, s := range d.idle {
			s.abort()
		}
	}
	c.dests = map[string]*dest{}
	c.mu.Unlock()
	c.quits.Wait()
}

// quitLater says QUIT on a session no longer wanted, without making anyone
// wait for the reply.
func (c *connCache) quitLater(s *session) {
	c.quits.Go(s.quit)
}

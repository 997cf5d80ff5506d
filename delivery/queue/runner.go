package queue

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Run delivers the queue until ctx is done, or until Shutdown stops it
// gracefully. Only the owning process may run a spool (ErrNotOwner
// otherwise), and only one Run at a time. On return no delivery is in
// flight: each was recorded, or was cut short and will be retried (at
// least once delivery). ctx ending cuts every delivery at once, even one
// whose data was sent and whose reply is awaited (see Shutdown).
func (q *Queue) Run(ctx context.Context) error {
	if !q.sp.owner() {
		return ErrNotOwner
	}
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return ErrClosed
	case q.running:
		q.mu.Unlock()
		return errors.New("queue: already running")
	}
	hard, cut := context.WithCancel(ctx)
	// The jobs' context: sendGroup finds the deadline of committing
	// transactions in it (cutContext).
	soft, halt := context.WithCancel(context.WithValue(hard, cutKey{}, hard))
	done := make(chan struct{})
	q.running, q.stopping = true, false
	q.runCtx, q.runCut, q.halt, q.cut, q.runDone = soft, hard, halt, cut, done
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.running, q.runCtx, q.runCut, q.halt, q.cut, q.runDone = false, nil, nil, nil, nil, nil
		q.mu.Unlock()
		halt()
		cut()
		close(done)
	}()
	ctx = soft

	var wg sync.WaitGroup
	// Last, once every job and hand-over has ended: no session is in use
	// then.
	defer q.conns.closeAll()
	defer q.handing.Wait()
	defer func() {
		q.mu.Lock()
		q.stopping = true // no HandOver starts after this
		q.mu.Unlock()
	}()
	defer wg.Wait()
	wg.Go(func() { q.conns.run(ctx) })
	slots := make(chan struct{}, q.o.Concurrency)
	timer := time.NewTimer(0)
	defer timer.Stop()
	q.log.Info("queue runner started", "dir", q.o.Dir, "messages", q.count())
	nextSweep := q.sweptAt.Add(onceSweepEvery)
	var sweeping atomic.Bool
	var refilled time.Time // real time of the last refill
	for {
		if now := q.o.Now(); !now.Before(nextSweep) {
			nextSweep = now.Add(onceSweepEvery)
			wg.Go(func() { q.sweepOnceMarks(&sweeping, false) })
		}
		q.checkRequests()
		if q.refillDue(&refilled) {
			q.refill()
		}
		timer.Reset(q.dispatch(ctx, slots, &wg))
		select {
		case <-ctx.Done():
			q.log.Info("queue runner stopping")
			return nil
		case <-q.kick:
		case <-timer.C:
		}
	}
}

// Shutdown stops Run gracefully, as SIGTERM stops Postfix's delivery
// agents: no delivery, hand-over or new session starts any more, and
// those not yet sending their data are cut short (nothing was committed:
// they are retried as if not tried, no attempt counted). A transaction
// whose data is being sent, or whose final dot awaits its reply, is
// left to finish (RFC 1047: cut there, the receiver may keep the message
// and the retry sends it again), and its outcome is recorded; Shutdown
// returns once Run has returned, nil. When ctx ends first, those are cut
// too: their outcome is unknown, recorded as a deferral (an attempt, so
// that a node copy's retry says XRETRY and the node stores it once); a
// remote server that took the message gets it twice then, as from
// Postfix, and Shutdown returns ctx's error. Without a Run it returns nil
// at once.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	if !q.running {
		q.mu.Unlock()
		return nil
	}
	q.stopping = true // no HandOver starts after this
	halt, cut, done := q.halt, q.cut, q.runDone
	q.mu.Unlock()
	halt()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	cut()
	<-done
	return ctx.Err()
}

// cutKey is the context key of the context whose end cuts a transaction
// committing (Queue.runCut, or a hand-over's own deadline).
type cutKey struct{}

// cutContext is the context whose end cuts a transaction of a delivery
// under ctx that is committing: the one ctx carries (the runner's
// deadline), or ctx itself.
func cutContext(ctx context.Context) context.Context {
	if c, ok := ctx.Value(cutKey{}).(context.Context); ok {
		return c
	}
	return ctx
}

func (q *Queue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries)
}

// dispatch starts a job for every due message while slots are free and
// returns how long to wait before looking again: until the next due time,
// but never longer than PollInterval so requests from other processes and a
// moved clock are noticed.
func (q *Queue) dispatch(ctx context.Context, slots chan struct{}, wg *sync.WaitGroup) time.Duration {
	for ctx.Err() == nil {
		now := q.o.Now()
		q.mu.Lock()
		e := q.sched.peek()
		if e == nil {
			q.mu.Unlock()
			return q.o.PollInterval
		}
		if wait := e.due.Sub(now); wait > 0 {
			q.mu.Unlock()
			return clampDuration(wait, time.Millisecond, q.o.PollInterval)
		}
		select {
		case slots <- struct{}{}:
		default:
			q.mu.Unlock()
			return q.o.PollInterval // a finishing job wakes the runner
		}
		q.sched.pop()
		e.busy = true
		m := e.msg.clone()
		q.mu.Unlock()

		wg.Add(1)
		go func() {
			defer wg.Done()
			slot := &jobSlot{ch: slots, held: true}
			next, gone := q.runJob(context.WithValue(ctx, slotKey{}, slot), m)
			slot.release()
			q.finishJob(m.ID, next, gone)
		}()
	}
	return q.o.PollInterval
}

// finishJob puts a message back in the schedule with its new state, or
// drops it when it left the queue or was deleted meanwhile.
func (q *Queue) finishJob(id string, m *Message, gone bool) {
	q.mu.Lock()
	e := q.entries[id]
	e.busy = false
	if gone || e.deleted {
		q.counts.change(e.msg, nil)
		delete(q.entries, id)
	} else {
		q.counts.change(e.msg, m)
		if e.unparked {
			m.notBefore = time.Time{}
		}
		e.msg = m
		q.scheduleLocked(e)
	}
	e.unparked = false
	hook := q.onJobDone
	q.mu.Unlock()
	q.wake()
	if hook != nil {
		hook(id)
	}
}

// checkRequests acts on request files left by other processes.
func (q *Queue) checkRequests() {
	flush := q.sp.takeRequest(flushFile)
	rescan := q.sp.takeRequest(rescanFile)
	if flush || rescan {
		q.rescan()
	}
	if flush {
		q.log.Info("flush requested")
		q.flushNow()
	}
}

// rescan brings the index in line with the spool after another process
// added or removed messages. Unlike Open's recovery it removes nothing from
// disk: a file without its partner may be a write in progress.
func (q *Queue) rescan() {
	q.sp.countHeld() // another process's hold, release or delete
	l, err := q.sp.scan(q.o.MaxQueueFiles)
	if err != nil {
		q.log.Error("rescan failed", "err", err)
		return
	}
	onDisk := make(map[string]bool, len(l.envelopes))
	for _, id := range l.envelopes {
		onDisk[id] = true
	}
	q.mu.Lock()
	var missing []string
	for id := range onDisk {
		if _, ok := q.entries[id]; !ok && l.data[id] {
			missing = append(missing, id)
		}
	}
	var vanished []*Message
	if !l.truncated {
		for id, e := range q.entries {
			// A busy entry's job finds out itself (update → errDeleted).
			if !onDisk[id] && !e.busy {
				vanished = append(vanished, e.msg)
			}
		}
	}
	room := q.o.MaxQueueFiles - len(q.entries) + len(vanished)
	if l.truncated || len(missing) > room {
		q.truncated = true
	}
	q.mu.Unlock()
	for _, m := range vanished {
		// `courriel queue delete` or `hold` in another process: the
		// server's log says where the message went, as Postfix logs
		// postsuper's.
		if q.sp.isHeld(m.ID) {
			q.logFor(m).Info("held by another process (courriel queue hold)")
		} else {
			q.logFor(m).Info("removed by another process (courriel queue delete)")
		}
		q.forget(m.ID, false)
	}
	for _, id := range missing {
		if room <= 0 {
			break
		}
		m := q.envelopeToLoad(id)
		if m == nil {
			continue
		}
		q.mu.Lock()
		q.addLocked(m)
		q.mu.Unlock()
		room--
	}
	q.wake()
}

// dataGone reports whether a message whose data file is missing was deleted
// (its envelope is gone too) rather than damaged.
func (q *Queue) dataGone(id string) bool {
	_, err := os.Lstat(q.sp.path(id, extEnvelope))
	return errors.Is(err, os.ErrNotExist)
}

// refillDue says whether the runner should load the messages a truncated
// scan left in the spool: once a tenth of MaxQueueFiles (at least one) is
// free again, and at most once per PollInterval, so that a queue kept
// nearly full does not read its directory at every job's end.
func (q *Queue) refillDue(last *time.Time) bool {
	q.mu.Lock()
	due := q.truncated && q.o.MaxQueueFiles-len(q.entries) >= max(1, q.o.MaxQueueFiles/10)
	q.mu.Unlock()
	if !due || time.Since(*last) < q.o.PollInterval {
		return false
	}
	*last = time.Now()
	return true
}

// envelopeToLoad reads the envelope of id for the index; nil when it is
// gone meanwhile or unreadable (logged: it stays on disk for the admin).
func (q *Queue) envelopeToLoad(id string) *Message {
	m, err := q.sp.readEnvelope(id)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			q.log.Error("unreadable envelope", "queue_id", id, "err", err)
		}
		return nil
	}
	return m
}

// refill reads the spool for envelopes the index does not hold and loads
// them while there is room (MaxQueueFiles). A read that reaches the end of
// the directory with room to spare ends the truncation.
func (q *Queue) refill() {
	d, err := os.Open(q.sp.dir)
	if err != nil {
		q.log.Error("reading the spool for the messages left out failed", "err", err)
		return
	}
	defer d.Close()
	loaded := 0
	for {
		names, err := d.Readdirnames(readDirBatch)
		for _, name := range names {
			id, ok := strings.CutSuffix(name, extEnvelope)
			if !ok {
				continue
			}
			if pid, perr := ParseID(id); perr != nil || pid != id {
				continue
			}
			q.mu.Lock()
			_, known := q.entries[id]
			full := len(q.entries) >= q.o.MaxQueueFiles
			known = known || q.making[id] > 0
			q.mu.Unlock()
			if full {
				q.log.Info("messages left out of the index loaded", "count", loaded)
				q.wake()
				return
			}
			if known {
				continue
			}
			if _, err := os.Lstat(q.sp.path(id, extData)); err != nil {
				continue // being written by another process, or removed
			}
			m := q.envelopeToLoad(id)
			if m == nil {
				continue
			}
			q.mu.Lock()
			if q.making[id] == 0 {
				q.addLocked(m)
				loaded++
			}
			q.mu.Unlock()
		}
		if len(names) == 0 || err != nil {
			if !errors.Is(err, io.EOF) && err != nil {
				q.log.Error("reading the spool for the messages left out failed", "err", err)
				return
			}
			break
		}
	}
	q.mu.Lock()
	q.truncated = false
	q.mu.Unlock()
	q.log.Info("messages left out of the index loaded, none left", "count", loaded)
	q.wake()
}

// slotKey is the context key of a job's jobSlot.
type slotKey struct{}

// jobSlot is a job's hold on one of the runner's Concurrency slots. The
// job gives it back while it waits for its destination (connCache.get), as
// Postfix's queue manager gives a delivery agent only to a destination
// that can take a session: a destination that is slow, tarpitting or
// being probed holds no slot that mail to others could use.
type jobSlot struct {
	ch   chan struct{}
	held bool // only the job's goroutine touches it
}

func (s *jobSlot) release() {
	if s != nil && s.held {
		<-s.ch
		s.held = false
	}
}

// take waits for a slot; false when ctx ended first.
func (s *jobSlot) take(ctx context.Context) bool {
	if s == nil || s.held {
		return true
	}
	select {
	case s.ch <- struct{}{}:
		s.held = true
		return true
	case <-ctx.Done():
		return false
	}
}

// postponeDelay is how long at most a message waits before it is taken
// again when one of its destinations could take no session and had enough
// jobs waiting for it already; it is woken sooner, when the destination
// can take one more job (Queue.unpark).
const postponeDelay = 5 * time.Second

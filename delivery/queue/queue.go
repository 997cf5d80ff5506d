package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Queue is an open spool. Enqueue, List, Show, Delete and Flush are safe for
// concurrent use; Run runs the deliveries of the owning process.
type Queue struct {
	o   Options // immutable after Open
	log *slog.Logger
	sp  *spool

	kick chan struct{} // wakes the runner; capacity 1

	mu      sync.Mutex
	entries map[string]*entry // guarded by mu; owner mode only
	sched   schedule          // guarded by mu: idle entries by due time
	running bool              // guarded by mu
	closed  bool              // guarded by mu
	counts  counters          // follows entries (counters.go)

	// onJobDone, when set by a test before Run, is called after each job.
	onJobDone func(id string)
}

// entry is the runner's view of one queued message.
type entry struct {
	msg     *Message  // guarded by Queue.mu; a job works on a clone and swaps it back
	due     time.Time // guarded by Queue.mu
	busy    bool      // guarded by Queue.mu: a job has it
	deleted bool      // guarded by Queue.mu: Delete ran while busy
	index   int       // position in Queue.sched, -1 when not scheduled
}

// Open opens the spool at o.Dir. Without o.Client, the process owns it (Open
// creates it if needed and fails with ErrNotOwner while another process owns
// it): Open then removes leftover temporary files and orphans from a crash,
// moves unreadable envelopes to corrupt/, and loads the rest. With o.Client it
// reads and requests beside the owner and may not Run.
func Open(o Options) (*Queue, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	sp, err := openSpool(o.Dir, o.MaxRecipients, o.Client)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		o:       o,
		log:     o.Logger.With("component", "queue"),
		sp:      sp,
		kick:    make(chan struct{}, 1),
		entries: map[string]*entry{},
	}
	if sp.owner() {
		if err := sp.locked(q.recover); err != nil {
			sp.close()
			return nil, err
		}
	}
	return q, nil
}

// recover cleans the spool after a crash and loads every message. It runs
// under the spool lock, so a client-mode Enqueue cannot be half-way through.
func (q *Queue) recover() error {
	l, err := q.sp.scan(q.o.MaxQueueFiles)
	if err != nil {
		return err
	}
	changed := false
	for _, name := range l.temps {
		if err := os.Remove(filepath.Join(q.sp.dir, name)); err == nil {
			q.log.Info("removed leftover temporary file", "file", name)
			changed = true
		}
	}
	hasEnv := make(map[string]bool, len(l.envelopes))
	for _, id := range l.envelopes {
		hasEnv[id] = true
		if !l.data[id] {
			q.log.Error("envelope without message data, moved to corrupt/", "id", id)
			q.sp.quarantine(id)
			changed = true
			continue
		}
		m, err := q.sp.readEnvelope(id)
		if err != nil {
			q.log.Error("unreadable envelope, moved to corrupt/", "id", id, "err", err)
			q.sp.quarantine(id)
			changed = true
			continue
		}
		q.addLocked(m)
	}
	if !l.truncated {
		// Data without an envelope was never acknowledged (or its removal
		// was interrupted). With a truncated scan its envelope may simply
		// not have been read, so leave it.
		for id := range l.data {
			if !hasEnv[id] {
				os.Remove(q.sp.path(id, extData))
				q.log.Info("removed message data without envelope", "id", id)
				changed = true
			}
		}
	} else {
		q.log.Warn("spool holds more messages than MaxQueueFiles; the rest wait", "max", q.o.MaxQueueFiles)
	}
	if changed {
		return q.sp.syncDir()
	}
	return nil
}

// Close releases the spool. Call it after Run has returned.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	return q.sp.close()
}

// Enqueue stores a message for delivery. When it returns nil the message and
// its envelope are on stable storage. from may be "" (the null sender).
// Errors for which IsPermanent is true are about the message; any other
// error is temporary (disk full, I/O).
func (q *Queue) Enqueue(ctx context.Context, from string, rcpts []string, data []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if int64(len(data)) > q.o.MaxMessageBytes {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), q.o.MaxMessageBytes)
	}
	if from != "" && !validAddress(from) {
		return "", fmt.Errorf("%w: sender %q", ErrInvalidAddress, printable(from, 100))
	}
	if len(rcpts) == 0 {
		return "", ErrNoRecipients
	}
	if len(rcpts) > q.o.MaxRecipients {
		return "", fmt.Errorf("%w: %d, limit %d", ErrTooManyRecipients, len(rcpts), q.o.MaxRecipients)
	}
	now := q.o.Now()
	m := &Message{Version: envelopeVersion, ID: newID(now), From: from, Created: now, Size: int64(len(data))}
	seen := make(map[string]bool, len(rcpts))
	for _, r := range rcpts {
		if !validAddress(r) {
			return "", fmt.Errorf("%w: recipient %q", ErrInvalidAddress, printable(r, 100))
		}
		if seen[r] {
			continue
		}
		seen[r] = true
		m.Recipients = append(m.Recipients, Recipient{Addr: r, State: StatePending, NextAttempt: now})
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	if err := q.sp.create(m, data, !q.sp.owner()); err != nil {
		return "", err
	}
	if !q.sp.owner() {
		q.sp.request(rescanFile) // best effort: the owner also finds it at its next start
		return m.ID, nil
	}
	q.mu.Lock()
	q.addLocked(m)
	q.mu.Unlock()
	q.wake()
	return m.ID, nil
}

// addLocked indexes a message unless it already is (an Enqueue and a rescan
// may both find it). Called with mu held, or before the Queue is shared.
func (q *Queue) addLocked(m *Message) {
	if _, ok := q.entries[m.ID]; ok {
		return
	}
	e := &entry{msg: m, index: -1}
	q.entries[m.ID] = e
	q.counts.change(nil, m)
	q.scheduleLocked(e)
}

// scheduleLocked puts an idle entry in the schedule at its due time.
func (q *Queue) scheduleLocked(e *entry) {
	due, ok := e.msg.due()
	if !ok {
		return
	}
	e.due = due
	if e.index >= 0 {
		q.sched.fix(e)
		return
	}
	q.sched.push(e)
}

// wake tells the runner to look at the schedule again.
func (q *Queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// List returns every message in the spool, read from disk so that it works
// from another process, oldest first.
func (q *Queue) List() ([]Summary, error) {
	l, err := q.sp.scan(q.o.MaxQueueFiles)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, 0, len(l.envelopes))
	for _, id := range l.envelopes {
		m, err := q.sp.readEnvelope(id)
		if errors.Is(err, ErrNotFound) {
			continue // delivered meanwhile
		}
		if err != nil {
			q.log.Warn("unreadable envelope", "id", id, "err", err)
			continue
		}
		out = append(out, m.summary())
	}
	slices.SortFunc(out, func(a, b Summary) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Show returns a message's envelope and its data.
func (q *Queue) Show(id string) (*Message, []byte, error) {
	id, err := ParseID(id)
	if err != nil {
		return nil, nil, err
	}
	m, err := q.sp.readEnvelope(id)
	if err != nil {
		return nil, nil, err
	}
	f, err := q.sp.openData(id)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, q.o.MaxMessageBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("queue: read %s: %w", id, err)
	}
	if int64(len(data)) > q.o.MaxMessageBytes {
		return nil, nil, fmt.Errorf("%w: %s: data larger than the limit", ErrTooLarge, id)
	}
	return m, data, nil
}

// Delete removes a message without a bounce (postsuper -d). A delivery
// already in progress may still complete; nothing is recorded after it.
func (q *Queue) Delete(id string) error {
	id, err := ParseID(id)
	if err != nil {
		return err
	}
	if err := q.sp.remove(id); err != nil {
		return err
	}
	q.log.Info("removed", "id", id)
	if !q.sp.owner() {
		return q.sp.request(rescanFile)
	}
	q.forget(id, true)
	return nil
}

// forget drops a message from the runner's index. A message being delivered
// is dropped when its job ends if busyToo, else left alone.
func (q *Queue) forget(id string, busyToo bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.entries[id]
	if !ok {
		return
	}
	if e.busy {
		e.deleted = e.deleted || busyToo // the job drops it when it finishes
		return
	}
	if e.index >= 0 {
		q.sched.remove(e)
	}
	q.counts.change(e.msg, nil)
	delete(q.entries, id)
}

// Flush makes every pending recipient due now (postqueue -f). From another
// process, or when this one does not Run, it leaves a request that the runner
// picks up within PollInterval (or when it starts).
func (q *Queue) Flush() error {
	q.mu.Lock()
	running := q.running
	q.mu.Unlock()
	if !q.sp.owner() || !running {
		return q.sp.request(flushFile)
	}
	q.flushNow()
	return nil
}

func (q *Queue) flushNow() {
	now := q.o.Now()
	q.mu.Lock()
	for _, e := range q.entries {
		if e.busy {
			continue
		}
		for i := range e.msg.Recipients {
			if r := &e.msg.Recipients[i]; r.State == StatePending && r.NextAttempt.After(now) {
				r.NextAttempt = now // in memory only: a restart keeps the old schedule
			}
		}
		q.scheduleLocked(e)
	}
	q.mu.Unlock()
	q.wake()
}

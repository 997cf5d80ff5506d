package queue

import (
	"bytes"
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

	"courriel/cluster"
	"courriel/delivery"
)

// Queue is an open spool. Enqueue, List, Show, Delete and Flush are safe for
// concurrent use; Run runs the deliveries of the owning process.
type Queue struct {
	o   Options // immutable after Open
	log *slog.Logger
	sp  *spool

	kick chan struct{} // wakes the runner; capacity 1

	conns *connCache // SMTP sessions and destination state, for Run

	mu      sync.Mutex
	entries map[string]*entry // guarded by mu; owner mode only
	sched   schedule          // guarded by mu: idle entries by due time
	running bool              // guarded by mu
	closed  bool              // guarded by mu
	counts  counters          // follows entries (counters.go)
	// truncated says the last scan of the spool left messages out
	// (MaxQueueFiles): the runner loads them as room comes back
	// (refill). making counts the ids being created by this process,
	// written to the spool but maybe not yet in entries: refill leaves
	// them to their creator. Both guarded by mu.
	truncated bool
	making    map[string]int

	// runCtx is Run's context while it runs, done once Shutdown begins:
	// nothing starts after it. runCut is done when even a transaction
	// committing (its data sent, its final reply awaited) is cut:
	// Shutdown's deadline, or Run's own context. halt and cut end them,
	// and runDone is closed when Run has returned. stopping says Run is
	// ending. All guarded by mu. handing counts the HandOvers on the
	// runner's sessions, which Run waits for before it closes them.
	runCtx    context.Context
	runCut    context.Context
	halt, cut context.CancelFunc
	runDone   chan struct{}
	stopping  bool
	handing   sync.WaitGroup

	// dsnOpen maps every DSN an envelope names as being handed over
	// (Message.DSNs) to that envelope's id: such a DSN leaves its mark
	// when it leaves the spool (leaving, dsnonce.go). Guarded by dsnMu,
	// which is taken after mu, never before.
	dsnMu   sync.Mutex
	dsnOpen map[string]string

	// sweptAt is when Open removed the marks past their time (once.go);
	// Run sweeps every onceSweepEvery from then. Set before the Queue is
	// shared.
	sweptAt time.Time

	// onJobDone, when set by a test before Run, is called after each job.
	onJobDone func(id string)
	// onDSN, when set by a test before Run, is called after a DSN of kind
	// was handed over and before the sender's notification is recorded
	// in its original's envelope.
	onDSN func(kind dsnKind)
}

// entry is the runner's view of one queued message.
type entry struct {
	msg     *Message  // guarded by Queue.mu; a job works on a clone and swaps it back
	due     time.Time // guarded by Queue.mu
	busy    bool      // guarded by Queue.mu: a job has it
	deleted bool      // guarded by Queue.mu: Delete ran while busy
	index   int       // position in Queue.sched, -1 when not scheduled
	// unparked: its destination woke it (unpark) while its job, which
	// postponed it, was still running: it is due at once, not after
	// postponeDelay. Guarded by Queue.mu.
	unparked bool
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
		making:  map[string]int{},
		dsnOpen: map[string]string{},
	}
	q.conns = newConnCache(o, q.log)
	q.conns.unpark = q.unpark
	if sp.owner() {
		if err := sp.locked(q.recover); err != nil {
			sp.close()
			return nil, err
		}
		if err := sp.makeReserve(); err != nil {
			q.log.Warn("cannot allocate the spool's reserve for delivery records; new mail waits for it when the disk is full", "err", err)
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
			q.log.Error("envelope without message data, moved to corrupt/", "queue_id", id)
			q.sp.quarantine(id)
			changed = true
			continue
		}
		m, err := q.sp.readEnvelope(id)
		if err != nil {
			q.log.Error("unreadable envelope, moved to corrupt/", "queue_id", id, "err", err)
			q.sp.quarantine(id)
			changed = true
			continue
		}
		q.addLocked(m)
	}
	for _, id := range q.sp.finishHolds(l.data, hasEnv) {
		q.log.Info("hold finished: the message was being held or released", "queue_id", id)
		changed = true
	}
	q.sp.countHeld()
	if !l.truncated {
		// Data without an envelope was never acknowledged (or its removal
		// was interrupted). With a truncated scan its envelope may simply
		// not have been read, so leave it.
		for id := range l.data {
			if !hasEnv[id] {
				os.Remove(q.sp.path(id, extData))
				q.log.Info("removed message data without envelope", "queue_id", id)
				changed = true
			}
		}
	} else {
		q.log.Warn("spool holds more messages than MaxQueueFiles; the rest wait for room", "max", q.o.MaxQueueFiles)
		q.truncated = true
	}
	if heldAll := q.openHeldDSNs(); !l.truncated && heldAll {
		q.sweepDSNMarks()
	}
	q.sweepOnceMarks(nil, true) // recover runs under the spool lock
	q.sweptAt = q.o.Now()
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
	m, err := q.newMessage(ctx, from, rcpts, nil, int64(len(data)), false)
	if err != nil {
		return "", err
	}
	if err := q.room(); err != nil {
		return "", err
	}
	defer q.creating(m.ID)()
	if err := q.sp.create(m, bytes.NewReader(data), !q.sp.owner()); err != nil {
		return "", err
	}
	q.added(m, false)
	return m.ID, nil
}

// enqueueOnce is Enqueue from the null sender under id, with opts, unless
// a message of that id is in the spool already (held included) or left it
// as a DSN whose original has not recorded it yet (known): then it
// stores nothing and says so (queued false).
func (q *Queue) enqueueOnce(ctx context.Context, id string, rcpts []string, data []byte, opts ...Option) (queued bool, err error) {
	if known, err := q.sp.known(id); err != nil || known {
		return false, err
	}
	m, err := q.newMessage(ctx, "", rcpts, nil, int64(len(data)), false)
	if err != nil {
		return false, err
	}
	for _, o := range opts {
		o(m)
	}
	m.ID, m.fixed = id, true
	defer q.creating(m.ID)()
	if err := q.sp.create(m, bytes.NewReader(data), !q.sp.owner()); errors.Is(err, errKnown) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	q.added(m, false)
	return true, nil
}

// Accept takes a message for remote and local recipients at once, the way
// an SMTP server must: once Accept returns nil, every recipient's copy is
// either stored or durably queued, and the message may be acknowledged; on
// an error nothing was stored for anyone. It queues the message for all
// recipients first (the commit point), then makes the first attempt at the
// local copies straight away. A local copy that fails stays in the queue
// (retried, or bounced with a DSN when the failure is permanent). Local
// copies are keyed (delivery.Recipient.CopyKey), so that a retry after a
// crash between the copies and the record of their outcome finds them
// instead of storing them twice. localErrs has the first attempt's outcome
// for each local recipient, in order (nil: stored), for the caller's
// counters and logs: whatever it says, the message is accepted; ErrNotHere
// for a copy not tried at once (a node copy, or its user held). data is
// read, never kept: it may be a file the caller closes once Accept returns.
//
// msgID is the message's id where it came from (the SMTP transaction's),
// kept in the envelope and logged as msg_id by every line about it; "" for
// none (the queue id stands in).
//
// A DSN given to Options.Bounce comes with its queue id among opts, and a
// message made by the delivery of another with its maker's key
// (WithOnceKey): Accept stores it under that id, or stores nothing (and
// reports every local copy stored) when a message of that id was queued
// already, before a crash.
func (q *Queue) Accept(ctx context.Context, msgID, from string, remote []string, local []delivery.Recipient, data delivery.Content, opts ...Option) (id string, localErrs []error, err error) {
	return q.accept(ctx, msgID, from, nil, remote, local, data, opts)
}

// Option adds to a message's envelope what Accept's arguments do not say.
type Option func(*Message)

// WithOrigTo names, for remote recipients an alias expanded to (the keys),
// the address the client gave (the values).
func WithOrigTo(orig map[string]string) Option {
	return func(m *Message) {
		for i := range m.Recipients {
			if r := &m.Recipients[i]; r.Local == nil {
				if o := orig[r.Addr]; o != "" && o != r.Addr && validAddress(o) {
					r.OrigTo = o
				}
			}
		}
	}
}

// WithSMTPUTF8 marks a message whose sender asked for SMTPUTF8 and that
// needs it (UTF-8 in its header), or an RFC 6533 DSN (sendDSN).
func WithSMTPUTF8() Option { return func(m *Message) { m.SMTPUTF8 = true } }

// WithRemoteHeader puts h (header fields, CRLF-terminated) on top of the
// copies sent to remote recipients only.
func WithRemoteHeader(h []byte) Option { return func(m *Message) { m.RemoteHeader = string(h) } }

// WithFailed adds recipients that failed before the message was queued
// (a mail loop for one of them, found in the header), so that their sender
// gets a DSN for them while the other recipients get their copies, as
// Postfix bounces the one looping recipient. status is an RFC 3463 code of
// class 5, reason says why in words.
func WithFailed(addrs []string, status, reason string) Option {
	return func(m *Message) {
		var failed []Recipient
		for _, a := range addrs {
			if validAddress(a) {
				failed = append(failed, Recipient{Addr: a, State: StateFailed, Status: status, Reply: reason})
			}
		}
		// Before the others: the local copies stay the last ones (commit).
		m.Recipients = append(failed, m.Recipients...)
	}
}

// AcceptForward is Accept for a message whose remote copies leave with
// another envelope sender than the local ones show: remoteFrom (a
// forward's SRS address, or "" so that nothing bounces to a sender that
// failed SPF); local copies keep from as Return-Path. DSNs go to
// remoteFrom.
func (q *Queue) AcceptForward(ctx context.Context, msgID, from, remoteFrom string, remote []string, local []delivery.Recipient, data delivery.Content, opts ...Option) (id string, localErrs []error, err error) {
	if from != "" && !validAddress(from) {
		return "", nil, fmt.Errorf("%w: sender %q", ErrInvalidAddress, printable(from, 100))
	}
	return q.accept(ctx, msgID, remoteFrom, &from, remote, local, data, opts)
}

func (q *Queue) accept(ctx context.Context, msgID, from string, localFrom *string, remote []string, local []delivery.Recipient, data delivery.Content, opts []Option) (id string, localErrs []error, err error) {
	// No copy to deliver is fine when the options bring failed
	// recipients (WithFailed): the local socket accepts a message whose
	// every recipient was refused, to bounce it as Postfix's pickup does.
	m, err := q.newMessage(ctx, from, remote, local, data.Size(), len(opts) > 0)
	if err != nil {
		return "", nil, err
	}
	for _, o := range opts {
		o(m)
	}
	if len(m.Recipients) == 0 {
		return "", nil, ErrNoRecipients
	}
	// Counted again with the failed recipients of the options: an
	// envelope past MaxRecipients would not load after a restart.
	if len(m.Recipients) > q.o.MaxRecipients {
		return "", nil, fmt.Errorf("%w: %d, limit %d", ErrTooManyRecipients, len(m.Recipients), q.o.MaxRecipients)
	}
	if validMsgID(msgID) {
		m.MsgID = msgID
	}
	if m.queueID == "" {
		// New mail, refused before anything is stored. A DSN, or a
		// message made by the delivery of one queued (a key), comes of
		// what the queue holds already and is never refused.
		if err := q.room(); err != nil {
			return "", nil, err
		}
	}
	if known, err := q.fixID(m); err != nil {
		return "", nil, err
	} else if known {
		return m.ID, make([]error, len(local)), nil
	}
	m.LocalFrom = localFrom
	// Where each local copy's user lives is decided before the commit
	// point, so that the first envelope already says which copies are
	// node copies; only those at home here and not held are tried now.
	idx := q.placeFirst(ctx, m, local)
	return q.commit(ctx, m, idx, data, len(local))
}

// fixID gives m the id an option asked for (queueID): a DSN handed over
// under the id its original recorded, or a message under its maker's key
// (WithOnceKey), stored once. known: a message of that id is known here
// (spool.known), and nothing is to be stored, nor even placed; create
// checks again, under the lock.
func (q *Queue) fixID(m *Message) (known bool, err error) {
	id := m.queueID
	if id == "" {
		return false, nil
	}
	m.ID, m.queueID, m.fixed = id, "", true
	known, err = q.sp.known(id)
	if err != nil {
		return false, err
	}
	if known {
		q.logFor(m).Info(alreadyQueued(m))
	}
	return known, nil
}

// commit is accept from its commit point on: m is written to the spool,
// then the local copies idx (placed here) are tried at once. nLocal is the
// number of local copies, the last of m.Recipients.
func (q *Queue) commit(ctx context.Context, m *Message, idx []int, data delivery.Content, nLocal int) (id string, localErrs []error, err error) {
	defer q.creating(m.ID)()
	if err := q.sp.create(m, data, !q.sp.owner()); errors.Is(err, errKnown) {
		q.logFor(m).Info(alreadyQueued(m))
		return m.ID, make([]error, nLocal), nil
	} else if err != nil {
		return "", nil, err
	}
	first := len(m.Recipients) - nLocal // the local copies follow the remote ones
	localErrs = make([]error, nLocal)
	for i := range localErrs {
		localErrs[i] = ErrNotHere // until the attempt below says otherwise
	}
	if len(idx) == 0 {
		q.added(m, false)
		return m.ID, localErrs, nil
	}
	q.added(m, true) // the runner leaves it alone until the first attempt is recorded
	g := group{rt: localRoute, rcpts: idx}
	res := q.deliverLocal(ctx, m, idx, data, false)
	gone := false
	if q.record(m, g, res) {
		gone = q.save(m)
	}
	if q.sp.owner() {
		q.finishJob(m.ID, m, gone)
	} else if !gone {
		q.sp.request(rescanFile)
	}
	for i, r := range res {
		localErrs[idx[i]-first] = nil
		if r.out != outSent {
			localErrs[idx[i]-first] = &LocalError{Permanent: r.out == outBounced, Status: r.status, Reason: r.reply}
		}
	}
	return m.ID, localErrs, nil
}

// room refuses new mail while the queue holds MaxQueueFiles messages (or
// more: those a truncated scan left out): the index in memory, which holds
// every message, is bounded so. A client of the spool (another process)
// has no index: it counts the envelopes in the spool, which the owner's
// index holds (up to the limit), so that new mail it writes is refused
// as the owner's own is, and the owner never has more to load than its
// limit lets it.
func (q *Queue) room() error {
	if !q.sp.owner() {
		n, err := countEnvelopes(q.sp.dir, q.o.MaxQueueFiles)
		if err != nil {
			return fmt.Errorf("queue: spool: %w", err)
		}
		if n >= q.o.MaxQueueFiles {
			return fmt.Errorf("%w: %d messages or more", ErrQueueFull, n)
		}
		return nil
	}
	q.mu.Lock()
	n := len(q.entries)
	q.mu.Unlock()
	if n >= q.o.MaxQueueFiles {
		return fmt.Errorf("%w: %d messages", ErrQueueFull, n)
	}
	return nil
}

// creating marks id as being created by this process until the function
// it returns is called, after the message was added to entries.
func (q *Queue) creating(id string) func() {
	q.mu.Lock()
	q.making[id]++
	q.mu.Unlock()
	return func() {
		q.mu.Lock()
		if q.making[id]--; q.making[id] <= 0 {
			delete(q.making, id)
		}
		q.mu.Unlock()
	}
}

// alreadyQueued is the log line of an Accept under a given id that
// stores nothing: a message of that id was queued before.
func alreadyQueued(m *Message) string {
	if m.Once {
		return "already queued under its key: not queued again"
	}
	return "sender notification already queued"
}

// ErrNotHere is Accept's outcome for a local copy not tried at once: its
// user is at home on another cluster node (a node copy, handed over by the
// runner) or held while being moved. The copy is queued: not a failure.
var ErrNotHere = errors.New("queue: copy queued for the user's home node")

// LocalError is a local copy's first attempt that failed in Accept; the
// copy stays queued (or is bounced, when Permanent).
type LocalError struct {
	Permanent bool
	Status    string // RFC 3463
	Reason    string
}

func (e *LocalError) Error() string { return "local copy: " + e.Status + " " + e.Reason }

// save records a message's new state after an attempt: removed from the
// spool when it is done, rewritten otherwise. It reports whether the message
// left the spool (done, or deleted by the admin meanwhile). A failed write
// is logged: the state in memory stays right, and the keyed local copies
// make a repeat after a restart harmless.
func (q *Queue) save(m *Message) (gone bool) {
	if m.done() {
		q.leaving(m)
		err := q.sp.remove(m.ID)
		if err == nil || errors.Is(err, ErrNotFound) {
			q.logFor(m).Info("removed")
			return true
		}
		q.logFor(m).Error("removing a finished message failed", "err", err)
		return false
	}
	switch err := q.sp.update(m); {
	case errors.Is(err, errDeleted), errors.Is(err, errHeld):
		q.logFor(m).Info(gotWhere(err))
		return true
	case err != nil:
		q.logFor(m).Error("recording the delivery attempt failed", "err", err)
	}
	return false
}

// newMessage checks a message for the queue and builds its envelope: the
// remote recipients, then the local ones. Every check runs before anything
// is written, so that a refusal leaves nothing behind.
// mayBeEmpty: the caller adds recipients afterwards and checks there is one.
func (q *Queue) newMessage(ctx context.Context, from string, remote []string, local []delivery.Recipient, size int64, mayBeEmpty bool) (*Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if size > q.o.MaxMessageBytes+traceAllowance {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, q.o.MaxMessageBytes)
	}
	if from != "" && !validAddress(from) {
		return nil, fmt.Errorf("%w: sender %q", ErrInvalidAddress, printable(from, 100))
	}
	if len(remote)+len(local) == 0 && !mayBeEmpty {
		return nil, ErrNoRecipients
	}
	if len(remote)+len(local) > q.o.MaxRecipients {
		return nil, fmt.Errorf("%w: %d, limit %d", ErrTooManyRecipients, len(remote)+len(local), q.o.MaxRecipients)
	}
	now := q.o.Now()
	m := &Message{Version: envelopeVersion, ID: newID(now), From: from, Created: now, Size: size}
	seen := make(map[string]bool, len(remote))
	for _, r := range remote {
		if !validAddress(r) {
			return nil, fmt.Errorf("%w: recipient %q", ErrInvalidAddress, printable(r, 100))
		}
		if seen[r] {
			continue
		}
		seen[r] = true
		m.Recipients = append(m.Recipients, Recipient{Addr: r, State: StatePending, NextAttempt: now})
	}
	for _, r := range local {
		t := &LocalTarget{OrigTo: r.OrigTo, Maildir: r.Maildir, UID: r.UID, GID: r.GID, Folder: r.Folder,
			QuotaBytes: r.Quota.Bytes, QuotaMessages: r.Quota.Messages}
		if !validAddress(r.Address) || !validLocal(t) {
			return nil, fmt.Errorf("%w: local recipient %q", ErrInvalidAddress, printable(r.Address, 100))
		}
		node := strings.ToLower(r.Node)
		if node != "" && cluster.CheckNodeName(node) != nil {
			return nil, fmt.Errorf("%w: local recipient %q: bad node", ErrInvalidAddress, printable(r.Address, 100))
		}
		m.Recipients = append(m.Recipients, Recipient{Addr: r.Address, State: StatePending, NextAttempt: now, Local: t, Node: node})
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return m, nil
}

// added tells the runner about a message just written: indexed here when
// this process owns the spool (busy: held back from the runner until
// finishJob), announced to the owner otherwise.
func (q *Queue) added(m *Message, busy bool) {
	if !q.sp.owner() {
		if !busy {
			q.sp.request(rescanFile) // best effort: the owner also finds it at its next start
		}
		return
	}
	q.mu.Lock()
	if busy {
		e := &entry{msg: m.clone(), index: -1, busy: true}
		q.entries[m.ID] = e
		q.counts.change(nil, e.msg)
	} else {
		q.addLocked(m)
	}
	q.mu.Unlock()
	if !busy {
		q.wake()
	}
}

// logFor is the logger of the lines about m: msg_id (as in the smtp and
// delivery lines of the same message) and queue_id.
func (q *Queue) logFor(m *Message) *slog.Logger {
	return q.log.With("msg_id", m.msgID(), "queue_id", m.ID)
}

// addLocked indexes a message unless it already is (an Enqueue and a rescan
// may both find it). Called with mu held, or before the Queue is shared.
func (q *Queue) addLocked(m *Message) {
	if _, ok := q.entries[m.ID]; ok {
		return
	}
	e := &entry{msg: m, index: -1}
	q.entries[m.ID] = e
	q.openDSNs(m)
	q.counts.change(nil, m)
	if m.done() {
		// Finished, and still in the spool: a crash fell between its
		// last record and its removal. The runner removes it (runJob's
		// end), at once; before, it stayed listed and counted for good.
		e.due = q.o.Now()
		q.sched.push(e)
		return
	}
	q.scheduleLocked(e)
}

// scheduleLocked puts an idle entry in the schedule at its due time. A
// finished message whose removal failed is tried again after MinBackoff.
func (q *Queue) scheduleLocked(e *entry) {
	due, ok := e.msg.due()
	if !ok && e.msg.done() {
		due, ok = q.o.Now().Add(q.o.MinBackoff), true
	}
	if !ok {
		return
	}
	if due.Before(e.msg.notBefore) {
		due = e.msg.notBefore
	}
	e.due = due
	if e.index >= 0 {
		q.sched.fix(e)
		return
	}
	q.sched.push(e)
}

// unpark makes a message postponed for a destination that could take no
// more jobs due at once: the destination can now (connCache.get).
func (q *Queue) unpark(id string) {
	q.mu.Lock()
	e := q.entries[id]
	switch {
	case e == nil:
	case e.busy:
		e.unparked = true
	case !e.msg.notBefore.IsZero():
		e.msg.notBefore = time.Time{}
		q.scheduleLocked(e)
	}
	q.mu.Unlock()
	q.wake()
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
			q.log.Warn("unreadable envelope", "queue_id", id, "err", err)
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
	envPath, dataPath := q.sp.path(id, extEnvelope), q.sp.path(id, extData)
	if q.sp.isHeld(id) {
		envPath, dataPath = q.sp.heldPath(id, extEnvelope), q.sp.heldPath(id, extData)
	}
	m, err := q.sp.readEnvelopeAt(envPath, id)
	if err != nil {
		return nil, nil, err
	}
	f, err := q.sp.openDataAt(dataPath, id)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, q.o.MaxMessageBytes+traceAllowance+1))
	if err != nil {
		return nil, nil, fmt.Errorf("queue: read %s: %w", id, err)
	}
	if int64(len(data)) > q.o.MaxMessageBytes+traceAllowance {
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
	q.deleting(id)
	err = q.sp.remove(id)
	if errors.Is(err, ErrNotFound) {
		err = q.sp.removeHeld(id) // postsuper -d reaches the hold queue too
	}
	if err != nil {
		return err
	}
	q.log.Info("removed", "queue_id", id)
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
	// The admin says the destinations are worth trying now (a node just
	// back, a fixed MX): none is left alone for its dead period.
	q.conns.forgetDead()
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

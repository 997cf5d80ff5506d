package queue

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// A message made by the delivery of another (a Sieve redirect, a vacation
// reply, a notification: filter's side effects of a local copy) is queued
// once, whatever the moment of a crash, as a DSN is (dsnonce.go):
//
//   - its caller names it with a key of its own (WithOnceKey), the same at
//     every try of that delivery, and Accept stores it under a queue id
//     derived from the key (onceID);
//   - Accept stores nothing under an id that is known (spool.known): in
//     the spool, held, or the mark of one that left (once/ID);
//   - such a message leaves that mark, durably, before it leaves the spool
//     (delivered, bounced, deleted by the admin), so that a try of the
//     delivery after a crash between the Accept and the caller's own
//     record of it finds it gone and stores nothing, however soon the
//     copies went (a local one is stored during Accept itself).
//
// Unlike a DSN's, whose original's envelope says when its mark may go,
// the caller's record is not the queue's to see: a mark stays for
// MaxLifetime after it was written (the delivery that made the message
// is not tried past the lifetime of its own message, which arrived
// before), and beyond that while that message (the origin: the queue id
// the key begins with, as a copy key does) is still here, queued or held,
// which covers one released long after, or a restart after a long stop.
// The others are removed (sweepOnceMarks) at Open and by the runner every
// onceSweepEvery: the marks are bounded by the messages made this way
// that left within a lifetime (and those of origins still here), each a
// file of one line.

// onceSweepEvery is how often the runner removes the marks past their
// time.
const onceSweepEvery = time.Hour

// errKnown: create was asked to store a message under an id that is known
// (spool.known): nothing was stored.
var errKnown = errors.New("queue: a message of that id was queued already")

// WithOnceKey makes Accept (and AcceptForward) store the message once
// for key: under a queue id derived from it (onceID), or not at all, with
// every local copy reported stored, when a message of that key is in the
// spool, held, or left it within the time its mark is kept. key must be
// the same at every try of what makes the message and name nothing else:
// a local copy's delivery.Recipient.CopyKey, then what was made of it
// (filter: "redirect" and the addresses). A key that begins with a copy
// key as the queue names them (a queue id, '-') gives the id the time of
// that message (ids sort by arrival), and keeps the mark while it is
// queued here. An empty key changes nothing: a fresh id, as without.
func WithOnceKey(key string) Option {
	return func(m *Message) {
		if key == "" {
			return
		}
		m.queueID, m.Origin = onceID(key)
		m.Once = true
	}
}

// onceID is the queue id of the message made under key (WithOnceKey): the
// time half of the queue id key begins with (origin), or, when it begins
// with none, of a hash of key; then 8 bytes of a hash of key.
func onceID(key string) (id, origin string) {
	sum := sha256.Sum256([]byte("once\x00" + key))
	var b [16]byte
	copy(b[:8], sum[8:16])
	if head, _, ok := strings.Cut(key, "-"); ok {
		if o, err := ParseID(head); err == nil {
			origin = o
			hex.Decode(b[:8], []byte(o[:16])) // hex checked by ParseID
		}
	}
	copy(b[8:], sum[:8])
	return strings.ToUpper(hex.EncodeToString(b[:])), origin
}

func (s *spool) onceMarkPath(id string) string { return filepath.Join(s.dir, onceDir, id) }

// markOnce durably leaves the mark of the message m made under a key
// (WithOnceKey), before it leaves the spool: it holds m's origin, and its
// modification time is now (the queue's clock), from which it is kept.
func (s *spool) markOnce(m *Message, now time.Time) error {
	return s.writeMark(onceDir, m.ID, m.Origin, now)
}

// writeMark durably writes the mark id in the spool's subdirectory sub
// (dsn/, once/): one line, then the file and the directory fsynced, so
// that it is there after a crash before what it marks leaves the spool.
// A non-zero mtime is set as its modification time (a sweep keeps it
// from then, on the queue's clock rather than the file system's).
func (s *spool) writeMark(sub, id, line string, mtime time.Time) error {
	dir := filepath.Join(s.dir, sub)
	p := filepath.Join(dir, id)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("queue: mark %s: %w", id, err)
	}
	_, err = f.WriteString(line + "\n")
	if err == nil && !mtime.IsZero() {
		err = os.Chtimes(p, mtime, mtime)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncPath(dir)
	}
	if err != nil {
		return fmt.Errorf("queue: mark %s: %w", id, err)
	}
	return nil
}

// leavingOnce is leaving for a message made under a key: its mark is
// written before it goes. Reports whether m is one.
func (q *Queue) leavingOnce(m *Message) bool {
	if !m.Once {
		return false
	}
	if err := q.sp.markOnce(m, q.o.Now()); err != nil {
		// Rare (a failing disk), and harmful only with a crash of the
		// delivery that made it before its own record.
		q.logFor(m).Error("recording that the message left the queue failed: its maker's retry after a crash would queue it again", "err", err)
	}
	return true
}

// sweepOnceMarks removes the marks of messages made under a key that are
// past their time (see above): written more than MaxLifetime ago, their
// origin neither queued nor held. busy keeps two sweeps from overlapping;
// lockHeld: the caller holds the spool lock (Open's recover).
func (q *Queue) sweepOnceMarks(busy *atomic.Bool, lockHeld bool) {
	if busy != nil {
		if !busy.CompareAndSwap(false, true) {
			return
		}
		defer busy.Store(false)
	}
	dir := filepath.Join(q.sp.dir, onceDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		q.log.Error("reading the marks of messages queued once failed", "err", err)
		return
	}
	limit := q.o.Now().Add(-q.o.MaxLifetime)
	removed := 0
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(limit) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if q.originHere(p, lockHeld) {
			continue
		}
		if os.Remove(p) == nil {
			removed++
		}
	}
	if removed > 0 {
		q.log.Info("marks of messages queued once removed", "count", removed)
	}
}

// originHere reports whether the origin the mark at p names is queued or
// held. The two places are looked at under the spool lock, which hold and
// release take for their renames: unlocked, a release between the two
// looks would make a live origin look absent (and its mark be swept).
// lockHeld: the caller holds it already.
func (q *Queue) originHere(p string, lockHeld bool) bool {
	b, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	origin, err := ParseID(strings.TrimSpace(string(b)))
	if err != nil {
		return false
	}
	here := false
	look := func() error {
		for _, env := range []string{q.sp.path(origin, extEnvelope), q.sp.heldPath(origin, extEnvelope)} {
			if _, err := os.Lstat(env); err == nil {
				here = true
				return nil
			}
		}
		return nil
	}
	if lockHeld {
		err = look()
	} else {
		err = q.sp.locked(look)
	}
	// Without the lock nothing is known: the mark stays.
	return here || err != nil
}

// known reports whether a message of queue id id is known: in the spool,
// held, or left the mark of a DSN (dsnonce.go) or of a message made under
// a key (above). Under the spool lock, so that a removal or a hold at the
// same time is seen on one side or the other (the marks are written
// before the envelope goes). A message renamed in whose fsync has not
// returned (create) is waited for: it may yet be withdrawn.
func (s *spool) known(id string) (known bool, err error) {
	for {
		var wait chan struct{}
		err = s.locked(func() error {
			if ch, ok := s.committing[id]; ok {
				wait = ch
				return nil
			}
			known, err = s.knownLocked(id)
			return err
		})
		if wait == nil {
			return known, err
		}
		<-wait
	}
}

// knownLocked is known, with the spool lock held.
func (s *spool) knownLocked(id string) (bool, error) {
	for _, p := range []string{s.path(id, extEnvelope), s.heldPath(id, extEnvelope), s.dsnMarkPath(id), s.onceMarkPath(id)} {
		_, err := os.Lstat(p)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("queue: %w", err)
		}
	}
	return false, nil
}

// deleting is called before the admin's Delete of id: a message made
// under a key, or a DSN, leaves its mark as it would delivered (leaving),
// so that its maker's retry after a crash, or its original's next try,
// does not undo the deletion by storing it again.
func (q *Queue) deleting(id string) {
	m, err := q.sp.readEnvelope(id)
	if errors.Is(err, ErrNotFound) {
		m, err = q.sp.readEnvelopeAt(q.sp.heldPath(id, extEnvelope), id)
	}
	if err != nil {
		return
	}
	if q.sp.owner() {
		q.leaving(m) // dsnOpen knows every DSN an envelope names
		return
	}
	if q.leavingOnce(m) || m.From != "" {
		return
	}
	// A client of the spool (courriel queue delete) loaded no envelope,
	// so it cannot tell whether one names this DSN: any message from the
	// null sender leaves the mark. One no envelope names goes at the
	// owner's next Open (sweepDSNMarks); one that is named goes when its
	// original records it (settleDSNs). The original's id is unknown.
	if err := q.sp.markDSN(id, ""); err != nil {
		q.logFor(m).Error("recording that the DSN left the queue failed: its original may send it again", "err", err)
	}
}

package queue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// The hold queue (postsuper -h and -H): a held message's two files sit in
// hold/, where the runner never looks, until they are released. Both moves
// go envelope-last into the main directory and envelope-first out of it,
// so that the one state a crash can leave between the two renames, data in
// the main directory and the envelope in hold/, is a hold not finished or
// a release not finished, and recover finishes the hold either way: the
// message is never lost, and never delivered while the admin thinks it held.

// ErrNotHeld: Release of a message that is not in the hold queue.
var ErrNotHeld = errors.New("queue: message not held")

func (s *spool) heldPath(id, ext string) string { return filepath.Join(s.dir, holdDir, id+ext) }

// hold moves a message's files into hold/ (envelope first).
func (s *spool) hold(id string) error {
	return s.locked(func() error {
		if _, err := os.Lstat(s.path(id, extEnvelope)); errors.Is(err, fs.ErrNotExist) {
			if _, herr := os.Lstat(s.heldPath(id, extEnvelope)); herr == nil {
				return nil // held already
			}
			return ErrNotFound
		}
		if err := os.Rename(s.path(id, extEnvelope), s.heldPath(id, extEnvelope)); err != nil {
			return fmt.Errorf("queue: hold %s: %w", id, err)
		}
		if err := os.Rename(s.path(id, extData), s.heldPath(id, extData)); err != nil {
			return fmt.Errorf("queue: hold %s: %w", id, err) // recover finishes it
		}
		s.held.Add(1)
		return s.syncBoth()
	})
}

// release moves a held message's files back (envelope last: the commit
// point, as for a new message).
func (s *spool) release(id string) error {
	return s.locked(func() error {
		if _, err := os.Lstat(s.heldPath(id, extEnvelope)); errors.Is(err, fs.ErrNotExist) {
			return ErrNotHeld
		}
		if err := os.Rename(s.heldPath(id, extData), s.path(id, extData)); err != nil {
			return fmt.Errorf("queue: release %s: %w", id, err)
		}
		if err := os.Rename(s.heldPath(id, extEnvelope), s.path(id, extEnvelope)); err != nil {
			return fmt.Errorf("queue: release %s: %w", id, err) // recover holds it again
		}
		s.heldGone()
		return s.syncBoth()
	})
}

// removeHeld deletes a held message (envelope first, as remove does).
func (s *spool) removeHeld(id string) error {
	return s.locked(func() error {
		err := os.Remove(s.heldPath(id, extEnvelope))
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("queue: remove %s: %w", id, err)
		}
		s.heldGone()
		if err := os.Remove(s.heldPath(id, extData)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("queue: remove %s: %w", id, err)
		}
		return syncPath(filepath.Join(s.dir, holdDir))
	})
}

// heldGone counts one held message less. Each hold, release or delete
// moves the count by one rather than counting hold/ again: "queue hold
// ALL" on a large queue would otherwise read hold/ once per message under
// the spool's lock, which the server's commits wait for.
func (s *spool) heldGone() {
	if s.held.Add(-1) < 0 {
		s.held.Store(0)
	}
}

// countHeld counts the envelopes in hold/ into s.held. It reads names
// only: the owner calls it when it looks at the whole spool (Open, a
// rescan), which another process's hold or release asks for. A
// directory that cannot be read leaves the count as it was.
func (s *spool) countHeld() {
	n, err := countEnvelopes(filepath.Join(s.dir, holdDir), math.MaxInt)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.held.Store(0) // a spool from before the hold queue
	case err == nil:
		s.held.Store(int64(n))
	}
}

// countEnvelopes counts the envelopes in dir, reading names only, and
// stops once it found limit.
func countEnvelopes(dir string, limit int) (int, error) {
	d, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n := 0
	for n < limit {
		names, err := d.Readdirnames(readDirBatch)
		for _, name := range names {
			if id, perr := ParseID(strings.TrimSuffix(name, extEnvelope)); perr == nil && id+extEnvelope == name {
				n++
			}
		}
		if errors.Is(err, io.EOF) || len(names) == 0 {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// isHeld reports whether id's envelope is in hold/.
func (s *spool) isHeld(id string) bool {
	_, err := os.Lstat(s.heldPath(id, extEnvelope))
	return err == nil
}

// syncBoth makes renames between the spool and hold/ durable.
func (s *spool) syncBoth() error {
	if err := syncPath(filepath.Join(s.dir, holdDir)); err != nil {
		return err
	}
	return s.syncDir()
}

// syncPath fsyncs the directory dir.
func syncPath(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// finishHolds, in recover, moves into hold/ the data whose envelope is
// there already (a hold or a release cut short): otherwise it would be
// removed as data without an envelope. It returns the ids it moved.
func (s *spool) finishHolds(data map[string]bool, hasEnv map[string]bool) []string {
	var moved []string
	for id := range data {
		if hasEnv[id] || !s.isHeld(id) {
			continue
		}
		if os.Rename(s.path(id, extData), s.heldPath(id, extData)) == nil {
			moved = append(moved, id)
			delete(data, id)
		}
	}
	return moved
}

// Hold takes a message out of delivery until Release (postsuper -h). A
// delivery already in progress completes, and what it delivered is
// recorded in the held envelope (a message it finished leaves the hold
// queue), so that a release never sends a copy twice.
func (q *Queue) Hold(id string) error {
	id, err := ParseID(id)
	if err != nil {
		return err
	}
	if err := q.sp.hold(id); err != nil {
		return err
	}
	q.log.Info("held", "queue_id", id)
	if !q.sp.owner() {
		return q.sp.request(rescanFile)
	}
	q.forget(id, true)
	return nil
}

// Release puts a held message back in the queue (postsuper -H): its
// recipients are tried at their next attempt time, or at once after Flush.
func (q *Queue) Release(id string) error {
	id, err := ParseID(id)
	if err != nil {
		return err
	}
	if err := q.sp.release(id); err != nil {
		return err
	}
	q.log.Info("released", "queue_id", id)
	if !q.sp.owner() {
		return q.sp.request(rescanFile)
	}
	m, err := q.sp.readEnvelope(id)
	if err != nil {
		return err
	}
	q.mu.Lock()
	q.addLocked(m)
	q.mu.Unlock()
	q.wake()
	return nil
}

// ListHeld returns the held messages, read from disk.
func (q *Queue) ListHeld() ([]Summary, error) {
	l, err := scanDir(filepath.Join(q.sp.dir, holdDir), q.o.MaxQueueFiles)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // a spool from before the hold queue
	}
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, id := range l.envelopes {
		m, err := q.sp.readEnvelopeAt(q.sp.heldPath(id, extEnvelope), id)
		if err != nil {
			continue // released or deleted meanwhile, or unreadable: not held
		}
		s := m.summary()
		s.Held = true
		out = append(out, s)
	}
	return out, nil
}

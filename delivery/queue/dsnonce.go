package queue

import (
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A DSN is handed over once, whatever the moment of a crash:
//
//   - its queue id is derived from what it is about (dsnID: the original's
//     id, the kind, the recipients), so that every try names it the same;
//   - the original's envelope records it (Message.DSNs, written and
//     synced) before the hand-over, and the record that the sender was
//     told (Notified, DelayWarned) takes it out;
//   - the hand-over (enqueueOnce, or Accept through Options.Bounce, given
//     the id by withQueueID) stores nothing under an id that is known: a
//     message in the spool or held, or the mark of one that left (dsn/ID);
//   - a DSN that leaves the spool (delivered, bounced, deleted by the
//     admin) while an envelope still records it as being handed over
//     leaves that mark first (leaving, deleting), so that a DSN
//     stored in a maildir during its own hand-over, or delivered before
//     the crash, is known too. The original takes the mark away once its
//     envelope no longer names the DSN (settleDSNs); Open notes the DSNs
//     that held envelopes name as well as the others (openHeldDSNs: a
//     DSN may leave while its original is held, and the release must
//     find it), and removes the marks no envelope names.
//
// The next try of a message whose envelope still names a DSN (a crash came
// between the hand-over and the record, or the hand-over failed) asks
// whether it is known: then it went, and only the record is written;
// otherwise it never did, and the DSNs owed are worked out afresh.

// withQueueID makes Accept store a DSN under id, the one its original
// recorded, or nothing when id is known (known). sendDSN gives it to
// Options.Bounce, which passes it on to Accept.
func withQueueID(id string) Option { return func(m *Message) { m.queueID = id } }

func (s *spool) dsnMarkPath(id string) string { return filepath.Join(s.dir, dsnDir, id) }

// markDSN durably leaves the mark of the DSN id, which an envelope of
// queue id orig names, before the DSN leaves the spool.
func (s *spool) markDSN(id, orig string) error {
	return s.writeMark(dsnDir, id, orig, time.Time{})
}

// hasDSN reports whether m names the DSN id as being handed over.
func (m *Message) hasDSN(id string) bool {
	return slices.ContainsFunc(m.DSNs, func(d PendingDSN) bool { return d.ID == id })
}

// dropDSN takes the DSN id out of m.DSNs.
func (m *Message) dropDSN(id string) {
	m.DSNs = slices.DeleteFunc(slices.Clone(m.DSNs), func(d PendingDSN) bool { return d.ID == id })
	if len(m.DSNs) == 0 {
		m.DSNs = nil
	}
}

// openDSNs notes the DSNs m names as being handed over, so that each leaves
// its mark if it leaves the spool before m's record (leaving).
func (q *Queue) openDSNs(m *Message) {
	if len(m.DSNs) == 0 {
		return
	}
	q.dsnMu.Lock()
	defer q.dsnMu.Unlock()
	for _, d := range m.DSNs {
		q.dsnOpen[d.ID] = m.ID
	}
}

// leaving is called before a finished message leaves the spool: a DSN that
// an envelope names as being handed over leaves its mark, so that the
// original's next try knows it went, and so does a message made under a
// key (leavingOnce, once.go).
func (q *Queue) leaving(m *Message) {
	if q.leavingOnce(m) || m.From != "" {
		return // not a DSN
	}
	q.dsnMu.Lock()
	defer q.dsnMu.Unlock()
	orig, ok := q.dsnOpen[m.ID]
	if !ok {
		return
	}
	if err := q.sp.markDSN(m.ID, orig); err != nil {
		// Rare (a failing disk), and harmful only with a crash before
		// the original's record: the DSN is not kept for it.
		q.logFor(m).Error("recording that the DSN left the queue failed: a crash now would send it again", "err", err)
	}
}

// settleDSNs forgets the DSNs ids, and removes their marks, once m's
// envelope as written no longer names them; m nil: it left the spool.
func (q *Queue) settleDSNs(m *Message, ids []string) {
	if len(ids) == 0 {
		return
	}
	q.dsnMu.Lock()
	defer q.dsnMu.Unlock()
	for _, id := range ids {
		if m != nil && m.hasDSN(id) {
			continue // handed over again, not recorded yet
		}
		delete(q.dsnOpen, id)
		os.Remove(q.sp.dsnMarkPath(id))
	}
}

// openHeldDSNs, in recover, notes the DSNs that held envelopes name as
// being handed over (openDSNs), as those of the envelopes loaded: such a
// DSN may leave the spool while its original is held, and must leave its
// mark then, or the release would find it unknown and send it again. It
// reports whether every held envelope was read (the hold queue is within
// MaxQueueFiles).
func (q *Queue) openHeldDSNs() (all bool) {
	l, err := scanDir(filepath.Join(q.sp.dir, holdDir), q.o.MaxQueueFiles)
	if err != nil {
		q.log.Error("reading the hold queue failed", "err", err)
		return false
	}
	all = true
	for _, id := range l.envelopes {
		m, err := q.sp.readEnvelopeAt(q.sp.heldPath(id, extEnvelope), id)
		if err != nil {
			// Its marks, if any, stay: nothing is swept.
			q.log.Warn("unreadable held envelope", "queue_id", id, "err", err)
			all = false
			continue
		}
		q.openDSNs(m)
	}
	return all && !l.truncated
}

// sweepDSNMarks, in recover once every envelope is loaded, held ones
// included (openHeldDSNs), removes the marks of DSNs that no envelope
// names any more (the original's record was written, then a crash came
// before it removed the mark).
func (q *Queue) sweepDSNMarks() {
	dir := filepath.Join(q.sp.dir, dsnDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		q.log.Error("reading the marks of DSNs sent failed", "err", err)
		return
	}
	for _, e := range ents {
		id := e.Name()
		if _, ok := q.dsnOpen[id]; ok {
			continue
		}
		os.Remove(filepath.Join(dir, id))
	}
}

// settleLeftovers settles the DSNs m names as being handed over from an
// earlier try: a DSN known (known) went, and the sender's notification
// is recorded now; any other never went, and is worked out afresh. It
// returns the DSNs taken out of m; on an error the rest stay.
func (q *Queue) settleLeftovers(m *Message) (settled []string, err error) {
	for len(m.DSNs) > 0 {
		d := m.DSNs[0]
		known, err := q.sp.known(d.ID)
		if err != nil {
			return settled, err
		}
		kind, _ := parseDSNKind(d.Kind)
		if known {
			q.logFor(m).Info("sender notification handed over before a restart, recorded now", "kind", d.Kind, "dsn_id", d.ID)
			applyDSN(m, kind, d.Rcpts)
		}
		m.dropDSN(d.ID)
		settled = append(settled, d.ID)
	}
	return settled, nil
}

// applyDSN records that the DSN of kind about the recipients idx is out.
func applyDSN(m *Message, kind dsnKind, idx []int) {
	if kind == dsnDelayed {
		m.DelayWarned = true
		return
	}
	markNotified(m, idx)
}

package mailstore

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Delivered applies one message that a delivery agent has just placed (and
// made durable) as new/<name> in folder dir ("" for INBOX, ".Sent" for a
// folder) of maildir, to that folder if a session has it open: the file is
// numbered, moved to cur/ and announced in the change log, with no listing
// of the directory, so a burst of deliveries to a 100,000-message INBOX
// costs a few system calls each rather than a rescan each. A folder nobody
// has open is left alone: the next open reads the directory anyway.
//
// It trusts that the delivery was the only change to the folder since the
// last look: what other programs did meanwhile is found by the next
// listing, forced within verifyAfter.
func (r *Registry) Delivered(maildir, dir, name string) error {
	mb := r.Lookup(filepath.Clean(maildir), dir)
	if mb == nil {
		return nil
	}
	return mb.Delivered(name)
}

// Delivered is Registry.Delivered on a known folder.
func (mb *Mailbox) Delivered(name string) error {
	if name == "" || name[0] == '.' || strings.ContainsAny(name, "/:\x00") || len(name) > 255 {
		return fmt.Errorf("%w: delivered file name %q", ErrBadName, name)
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.closed || mb.detached {
		return nil
	}
	if _, ok := mb.baseMapLocked()[name]; ok {
		return nil // a sync found it first
	}
	nfd, err := mb.dirFDLocked("new")
	if err != nil {
		return fmt.Errorf("mailstore: open new: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(nfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil // taken (or never there): the next sync sees what is
	}
	checkedAt := mb.reg.now().UnixNano()
	curClean := mb.statLocked("cur") == mb.curSt
	lk, err := acquireUIDList(mb)
	if err != nil {
		return err
	}
	defer lk.Release()
	if err := mb.refreshHeldLocked(lk); err != nil {
		return err
	}
	if _, ok := mb.baseMapLocked()[name]; ok {
		return nil // another process numbered it: adopted by the listing
	}
	_, pending := mb.listed[name]
	_, stale := mb.stale[name]
	if pending || stale || !mb.staleKnown {
		// The uidlist numbers it, or may (courriel-state keeps no stale
		// records): a sync under the lock reads it and applies the rules
		// (never a second UID for a file).
		err := mb.syncPass(syncArgs{force: true, lk: lk, owned: true})
		mb.flushModLocked()
		return err
	}
	m := &Msg{UID: mb.nextUID, Base: name, New: true}
	if err := mb.addToUIDListLocked(lk, []*Msg{m}); err != nil {
		return err
	}
	lk.Release()
	// As a sync would: a message a session has seen moves to cur/.
	if err := mb.renameLocked("new/"+name, "cur/"+FileName(name, 0)); err == nil {
		m.New = false
	}
	mb.addMsgLocked(m, Cached{})
	mb.flushModLocked()
	// new/ may hold other files now that no listing saw: its stamp is
	// not to be trusted beyond verifyAfter, nor saved as settled. One
	// unknown before (files left there without a UID: see assignLocked)
	// stays unknown, so that the next sync lists new/.
	if mb.newSt.ok {
		mb.newSt, mb.newAt = mb.statLocked("new"), 0
	}
	if st := mb.statLocked("cur"); curClean && mb.curSt.ok && st != mb.curSt {
		mb.curSt, mb.curAt = st, checkedAt
	}
	if mb.trustedAt.IsZero() {
		mb.trustedAt = time.Now()
	}
	return nil
}

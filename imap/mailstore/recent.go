package mailstore

import (
	"bytes"
	"io"
	"os"
)

// ClaimRecent gives the calling session the \Recent messages it may report
// (RFC 3501 §2.3.2): every message with a UID in [first, uidNext) is recent
// for this session and for no other. A read-write session calls it when it
// selects the folder and whenever it learns of new messages, with the
// UIDNEXT of its own view; a read-only one (EXAMINE) does not claim. A
// message claimed once is never recent again, in this process or after a
// restart (the boundary is kept in the folder's courriel-index). When
// nothing is left to claim, first == uidNext.
func (mb *Mailbox) ClaimRecent(uidNext uint32) (first uint32) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if n := mb.uidNextLocked(); uidNext > n {
		uidNext = n // never claim UIDs not given out (or adopted) yet
	}
	if uidNext <= mb.recentFrom {
		return uidNext
	}
	first = mb.recentFrom
	mb.recentFrom = uidNext
	mb.recentDirty = true
	if mb.writeIndexHeaderLocked() == nil {
		mb.recentDirty = false
	}
	return first
}

// RecentFrom is the first UID no session has claimed yet: what a SELECT
// now would find recent, without claiming it (EXAMINE, STATUS RECENT).
func (mb *Mailbox) RecentFrom() uint32 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.recentFrom
}

// loadRecentLocked sets the claim boundary when the folder is loaded: the
// one kept in the index if it belongs to this UIDVALIDITY, else "nothing is
// recent"; messages found in new/ are recent in any case (nobody saw them).
// Dovecot, finding no index of its own, makes every message of cur/
// \Recent; courriel does not, on purpose: a folder Dovecot served keeps its
// boundary in Dovecot's index, which courriel does not read, and after a
// migration "all recent" would announce a user's whole mailbox as new.
func (mb *Mailbox) loadRecentLocked() {
	mb.recentFrom = mb.nextUID
	if h, ok := mb.readIndexHeaderLocked(); ok && h.UIDValidity == mb.uidValidity && h.RecentFrom < mb.recentFrom {
		mb.recentFrom = h.RecentFrom
	}
	if mb.lowNew != 0 && mb.lowNew < mb.recentFrom {
		// Moving them to cur/ took away the only other sign that nobody
		// has seen them: the boundary must be kept (at release), or a
		// STATUS alone would make them not recent for the next load.
		mb.recentFrom = mb.lowNew
		mb.recentDirty = true
	}
	mb.lowNew = 0
}

func (mb *Mailbox) readIndexHeaderLocked() (indexHeader, bool) {
	f, err := mb.root.Open(IndexFileName)
	if err != nil {
		return indexHeader{}, false
	}
	defer f.Close()
	buf := make([]byte, len(indexMagic)+indexHeaderLen)
	if _, err := io.ReadFull(f, buf); err != nil || !knownIndexMagic(buf[:len(indexMagic)]) {
		return indexHeader{}, false
	}
	return parseIndexHeader(buf[len(indexMagic):])
}

// writeIndexHeaderLocked rewrites the header of an existing index in place:
// 24 bytes in one sector, so no temporary file and no fsync (losing the
// last claims in a crash only makes messages recent again).
func (mb *Mailbox) writeIndexHeaderLocked() error {
	if mb.detached {
		return nil
	}
	f, err := mb.root.OpenFile(IndexFileName, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, len(indexMagic))
	if _, err := io.ReadFull(f, buf); err != nil || !knownIndexMagic(buf) {
		return os.ErrInvalid
	}
	_, err = f.WriteAt(indexHeader{UIDValidity: mb.uidValidity, RecentFrom: mb.recentFrom}.marshal(), int64(len(indexMagic)))
	return err
}

// knownIndexMagic reports whether an index file starts with this version's
// magic or an older one with the same header line.
func knownIndexMagic(b []byte) bool {
	if bytes.Equal(b, indexMagic) {
		return true
	}
	for _, m := range oldIndexMagics {
		if bytes.Equal(b, m) {
			return true
		}
	}
	return false
}

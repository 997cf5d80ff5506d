package mailstore

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"courriel/imap/uidlist"
)

// How the folder's memory stands to dovecot-uidlist, the source of truth
// for UIDs, shared with Dovecot under its lock (uidlist.Lock): every
// record of the file, as last read or written here, is one of
//
//   - a message of the folder (mb.msgs), with the record's UID;
//   - pending (mb.listed): a file another program numbered at or above
//     the UIDNEXT sessions were told (uidNextLocked), not found here yet;
//     it is adopted with that UID when its file is found, and declared gone
//     only after a listing that could not have missed it (see syncPass);
//   - stale (mb.stale): a file not in the folder (expunged, or declared
//     gone), whose UID is below what sessions know. Its record stays in the
//     file until the file is next rewritten whole.
//
// A file found with no message is numbered afresh only when the uidlist,
// read under its lock, has no record of it: a file the uidlist numbers keeps
// that UID, and a file is never listed twice. See syncPass for what
// happens when a stale record's file shows up.

// readUIDListLocked (re)reads dovecot-uidlist. While loading, its records
// become the folder's messages (the sync that follows drops those without a
// file). Later, the records that are not messages of the folder are sorted
// into pending and stale ones (see above); a file that contradicts what
// sessions were told (another UIDVALIDITY, a known message under another
// UID) invalidates the folder. A file that no longer parses is rewritten
// from memory at the next write, keeping every UID; one that cannot be read
// is an error, never a renumbering.
func (mb *Mailbox) readUIDListLocked() error {
	st := mb.statLocked(uidlist.FileName)
	data, err := mb.root.ReadFile(uidlist.FileName)
	if errors.Is(err, fs.ErrNotExist) {
		if mb.uidValidity == 0 {
			mb.newValidityLocked()
		}
		mb.listSt, mb.listRecords = st, 0
		mb.listCRCOK = false
		mb.listVer = fileVer{}
		mb.listDirty = true
		mb.listed, mb.stale, mb.staleKnown, mb.listRead = nil, nil, true, true
		return nil
	}
	if err != nil {
		return fmt.Errorf("mailstore: read uidlist: %w", err)
	}
	l, err := uidlist.Parse(bytes.NewReader(data))
	mb.listSt = st
	mb.listCRC, mb.listCRCOK = crc32.Checksum(data, castagnoli), true
	mb.listVer = fileVer{}
	if err != nil {
		if !mb.listRead {
			// Like Dovecot: a broken uidlist is discarded and UIDs are
			// given anew under a new UIDVALIDITY.
			mb.newValidityLocked()
			mb.listRead = true
		}
		mb.listDirty = true
		return nil
	}
	// What sessions may have been told, before this read adds to it:
	// records below it that are no message here are stale.
	floor := mb.uidNextLocked()
	mb.listRecords = len(l.Records)
	if l.NextUID > mb.nextUID {
		mb.nextUID = l.NextUID
	}
	mb.guid, mb.hdrExt = l.GUID, l.HeaderExt
	mb.validityUnsaved = false // the file's, from here on
	if !mb.listRead {
		mb.uidValidity = l.UIDValidity
		mb.adoptRecordsLocked(l.Records)
		mb.listRead = true
		return nil
	}
	if l.UIDValidity != mb.uidValidity {
		mb.invalidateLocked(l)
		return nil
	}
	byBase := mb.baseMapLocked()
	var listed map[string]uidlist.Record
	var newStale []uidlist.Record
	staleSeen := 0
	for _, r := range l.Records {
		if m, ok := byBase[r.Name]; ok {
			if m.UID != r.UID {
				mb.invalidateLocked(l)
				return nil
			}
			continue
		}
		if r.UID >= floor {
			if listed == nil {
				listed = make(map[string]uidlist.Record)
			}
			r.Name = strings.Clone(r.Name) // not the whole file kept for it
			listed[r.Name] = r
			continue
		}
		if u, ok := mb.stale[r.Name]; ok && u == r.UID {
			staleSeen++
			continue
		}
		newStale = append(newStale, r)
	}
	// Pending records the file no longer has are gone: the other
	// program found their files gone and rewrote it.
	mb.listed = listed
	if staleSeen != len(mb.stale) {
		// Records of ours gone from the file (rewritten by the other
		// program): the stale ones are the file's again.
		mb.stale, newStale = nil, newStale[:0]
		for _, r := range l.Records {
			if _, ok := byBase[r.Name]; !ok && r.UID < floor {
				newStale = append(newStale, r)
			}
		}
	}
	for _, r := range newStale {
		mb.noteStaleLocked(strings.Clone(r.Name), r.UID)
	}
	mb.staleKnown = true
	return nil
}

// noteStaleLocked records that the uidlist numbers base with uid, a file
// that is no message of the folder (see above).
func (mb *Mailbox) noteStaleLocked(base string, uid uint32) {
	if mb.stale == nil {
		mb.stale = make(map[string]uint32)
	}
	mb.stale[base] = uid
}

// goneLocked forgets message m, expunged or found gone: its record stays in
// the uidlist, stale, until the file is next rewritten.
func (mb *Mailbox) goneLocked(m *Msg) {
	if mb.byBase != nil && mb.byBase[m.Base] == m {
		delete(mb.byBase, m.Base)
	}
	delete(mb.cache, m.UID)
	delete(mb.ext, m.UID)
	mb.undirtyLocked(m)
	mb.noteBareLocked(m.Base, false)
	mb.noteOddLocked(m.Base, "")
	mb.dropExtraLocked(m.Base)
	mb.noteStaleLocked(m.Base, m.UID)
}

// uidNextLocked is the UIDNEXT sessions are told (RFC 9051 §2.3.1.1): the
// next UID to give, or the lowest pending record when lower. A message
// another program numbered is added for sessions when its file is found
// (a listing later); until then UIDNEXT stays at or below its UID, so that
// a client fetching from the UIDNEXT it was told does not pass over it.
func (mb *Mailbox) uidNextLocked() uint32 {
	n := mb.nextUID
	for _, r := range mb.listed {
		n = min(n, r.UID)
	}
	return n
}

// adoptRecordsLocked makes the records the folder's messages, before the
// sync that checks them against the directories. A file listed twice is
// the later record's (Dovecot's "Duplicate file entry" rule): the sync
// drops the earlier one (see syncPass).
func (mb *Mailbox) adoptRecordsLocked(recs []uidlist.Record) {
	mb.msgs = make([]*Msg, len(recs))
	mb.byBase = nil
	mb.listed, mb.stale, mb.staleKnown = nil, nil, true
	mb.ext = nil
	slab := make([]Msg, len(recs)) // one allocation, not one per message
	for i, r := range recs {
		slab[i] = Msg{UID: r.UID, Base: r.Name}
		mb.msgs[i] = &slab[i]
		mb.setExtLocked(r.UID, r.Ext)
	}
}

// setExtLocked records the uidlist extension fields of a message.
func (mb *Mailbox) setExtLocked(uid uint32, ext []string) {
	if len(ext) == 0 {
		delete(mb.ext, uid)
		return
	}
	if mb.ext == nil {
		mb.ext = make(map[uint32][]string)
	}
	mb.ext[uid] = ext
}

// invalidateLocked takes another program's numbering of the folder (a new
// UIDVALIDITY, or UIDs given anew): every UID sessions hold is meaningless
// now, so the change log says Invalidated, which a session answers by
// closing the connection (RFC 9051 §2.3.1.1 leaves no other way to tell a
// client that UIDs changed under a selected mailbox). Sessions that select
// the folder afterwards see the new numbering.
func (mb *Mailbox) invalidateLocked(l *uidlist.List) {
	mb.uidValidity = l.UIDValidity
	mb.nextUID = max(l.NextUID, 1)
	mb.adoptRecordsLocked(l.Records)
	if n := len(mb.msgs); n > 0 {
		mb.nextUID = max(mb.nextUID, mb.msgs[n-1].UID+1)
	}
	mb.cache = make(map[uint32]*Cached)
	mb.cachePending, mb.cachePayload = nil, "" // entries of the old numbering
	mb.cacheDirty = mb.cacheLoaded
	mb.recentFrom = mb.nextUID
	// The records carry no flags: the next sync lists the directories.
	mb.newSt, mb.curSt = stamp{}, stamp{}
	mb.gen++
	mb.appendChangeLocked(Change{Kind: Invalidated})
}

// revalidateLocked adds to the folder messages whose files the uidlist
// numbers below UIDs sessions know (stale records whose files showed up:
// see syncPass), with those UIDs, under a new UIDVALIDITY. Sessions cannot
// be shown a message below UIDs they were told of (RFC 9051 §2.3.1.1: UIDs
// ascend as messages are added), and hiding it would lose it for them;
// another UID would make it a second message for the other program, which
// numbered it. Within a new UIDVALIDITY any UIDs are valid: every message
// keeps its UID, here and for Dovecot, and clients start afresh (sessions
// end, as for Invalidated). found is in ascending UIDs; extra are new
// messages numbered above every other, written with them under lk.
func (mb *Mailbox) revalidateLocked(lk *uidlist.Lock, found, extra []*Msg) error {
	uid, gid := mb.owner.ids()
	old, oldMsgs := mb.uidValidity, mb.msgs
	mb.uidValidity = uidlist.NextUIDValidity(mb.mroot, time.Now(), old, uid, gid)
	merged := make([]*Msg, 0, len(mb.msgs)+len(found))
	i := 0
	for _, m := range mb.msgs {
		for i < len(found) && found[i].UID < m.UID {
			merged = append(merged, found[i])
			i++
		}
		merged = append(merged, m)
	}
	mb.msgs = append(merged, found[i:]...)
	if err := mb.writeUIDListLocked(lk, extra); err != nil {
		mb.uidValidity, mb.msgs = old, oldMsgs
		return err
	}
	for _, m := range found {
		delete(mb.stale, m.Base)
		if mb.byBase != nil {
			mb.byBase[m.Base] = m
		}
	}
	// The cache keeps its entries (the same UIDs, the same messages),
	// written again under the new UIDVALIDITY.
	mb.cacheDirty = mb.cacheLoaded
	mb.gen++
	mb.appendChangeLocked(Change{Kind: Invalidated})
	return nil
}

func (mb *Mailbox) newValidityLocked() {
	uid, gid := mb.owner.ids()
	mb.uidValidity = uidlist.NextUIDValidity(mb.mroot, time.Now(), mb.uidValidity, uid, gid)
	mb.listDirty, mb.validityUnsaved = true, true
	mb.nextUID = 1
	var g [16]byte
	_, _ = rand.Read(g[:])
	mb.guid = hex.EncodeToString(g[:])
}

// writeUIDListLocked replaces dovecot-uidlist with the records of the
// folder's messages, the pending ones (files another program numbered, not
// found here yet: their UIDs are theirs) and extra (new messages not in
// mb.msgs yet). The stale records go: the file lists what is in the
// folder, as Dovecot's after a full sync. It commits lk (releasing it).
func (mb *Mailbox) writeUIDListLocked(lk *uidlist.Lock, extra []*Msg) error {
	next := mb.nextUID
	if n := len(extra); n > 0 {
		next = max(next, extra[n-1].UID+1)
	}
	l := uidlist.List{UIDValidity: mb.uidValidity, NextUID: next, GUID: mb.guid, HeaderExt: mb.hdrExt}
	l.Records = make([]uidlist.Record, 0, len(mb.msgs)+len(mb.listed)+len(extra))
	for _, m := range mb.msgs {
		l.Records = append(l.Records, uidlist.Record{UID: m.UID, Ext: mb.ext[m.UID], Name: m.Base})
	}
	if len(mb.listed) > 0 {
		for _, r := range mb.listed {
			l.Records = append(l.Records, r)
		}
		slices.SortFunc(l.Records, func(a, b uidlist.Record) int { return cmp.Compare(a.UID, b.UID) })
	}
	for _, m := range extra {
		l.Records = append(l.Records, uidlist.Record{UID: m.UID, Ext: mb.ext[m.UID], Name: m.Base})
	}
	data := l.Marshal()
	if err := lk.Commit(data); err != nil {
		return err
	}
	mb.listCRC, mb.listCRCOK = crc32.Checksum(data, castagnoli), true
	mb.listVer = fileVer{}
	mb.listDirty, mb.validityUnsaved = false, false
	mb.listRecords = len(l.Records)
	mb.listSt = mb.statLocked(uidlist.FileName)
	mb.stale, mb.staleKnown = nil, true
	return nil
}

// rewriteUIDList persists the current records (after expunges) under lock.
func (mb *Mailbox) rewriteUIDListLocked() error {
	lk, err := mb.lockLocked(uidlist.FileName)
	if err != nil {
		return err
	}
	defer lk.Release()
	return mb.writeUIDListLocked(lk, nil)
}

func acquireUIDList(mb *Mailbox) (*uidlist.Lock, error) {
	mb.reg.hook("lock")
	return mb.lockLocked(uidlist.FileName)
}

// ErrFolderGone refuses a change to a folder deleted or renamed under
// the caller (Registry.Forget detached it); it wraps ErrNoFolder.
var ErrFolderGone = fmt.Errorf("%w: deleted or renamed meanwhile", ErrNoFolder)

// lockLocked takes the dotlock of file (dovecot-uidlist,
// dovecot-keywords), under which every change to the folder is made. A
// detached folder takes none (ErrFolderGone), and so changes nothing: a
// deleted folder's directory, renamed into the trash (Store.Trash), is
// being removed, and a file made in it meanwhile (the lock itself) would
// stop that removal.
func (mb *Mailbox) lockLocked(file string) (*uidlist.Lock, error) {
	if mb.detached {
		return nil, ErrFolderGone
	}
	wait := lockWait
	if file == ExtraKeywordsFileName && mb.reg.extraLockWait > 0 {
		wait = mb.reg.extraLockWait // tests
	}
	uid, gid := mb.owner.ids()
	return uidlist.Acquire(mb.root, file, wait, 0o600, uid, gid)
}

// refreshUIDListLocked re-reads dovecot-uidlist if another process changed
// it since we last read or wrote it. The caller holds the uidlist lock.
func (mb *Mailbox) refreshUIDListLocked() error {
	if st := mb.statLocked(uidlist.FileName); st != mb.listSt {
		return mb.readUIDListLocked()
	}
	return nil
}

// refreshHeldLocked re-reads dovecot-uidlist under lk, held by the caller
// who is about to number files. Files another process numbered meanwhile are
// adopted first (a listing, rare), so that UIDs keep ascending in the order
// sessions learn of them; an invalidation is followed by a listing too.
// That listing writes nothing (the caller commits lk): files it finds
// without a record wait for the next sync.
func (mb *Mailbox) refreshHeldLocked(lk *uidlist.Lock) error {
	gen := mb.gen
	if err := mb.refreshUIDListLocked(); err != nil {
		return err
	}
	if mb.gen != gen || len(mb.listed) > 0 {
		return mb.syncPass(syncArgs{force: true, lk: lk})
	}
	return nil
}

// staleRecordsMax is how many records of gone messages an appended
// dovecot-uidlist may keep before it is rewritten whole.
const staleRecordsMax = 1000

// addToUIDListLocked writes the records of new messages (with UIDs above
// every record) under lk: appended to the file as Dovecot does, so that a
// delivery into a 100,000-message folder writes one line rather than the
// whole list; rewritten whole when the file is missing, has a new
// UIDVALIDITY to record, or holds too many records of expunged messages.
func (mb *Mailbox) addToUIDListLocked(lk *uidlist.Lock, msgs []*Msg) error {
	if mb.listDirty || !mb.listSt.ok || mb.listRecords-len(mb.msgs) > max(staleRecordsMax, len(mb.msgs)/4) {
		return mb.writeUIDListLocked(lk, msgs)
	}
	f, err := mb.root.OpenFile(uidlist.FileName, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return mb.writeUIDListLocked(lk, msgs)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return mb.writeUIDListLocked(lk, msgs)
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], st.Size()-1); err != nil || last[0] != '\n' {
		return mb.writeUIDListLocked(lk, msgs) // a torn record: start clean
	}
	mb.listVer = fileVer{} // written from here on
	var b []byte
	for _, m := range msgs {
		b = uidlist.AppendRecord(b, uidlist.Record{UID: m.UID, Ext: mb.ext[m.UID], Name: m.Base})
	}
	if _, err := f.Write(b); err != nil {
		// Out of room in the middle of a record (a full disk fills the
		// last block, then refuses the next): the file goes back to its
		// last whole record, which needs no room. Dovecot appends after
		// whatever ends the file; a torn record would glue its next one
		// into a line it finds corrupt.
		if f.Truncate(st.Size()) != nil {
			mb.listCRCOK = false // some of it may be there
		}
		return fmt.Errorf("mailstore: append to uidlist: %w", err)
	}
	mb.listCRC = crc32.Update(mb.listCRC, castagnoli, b)
	if err := f.Sync(); err != nil {
		return fmt.Errorf("mailstore: fsync uidlist: %w", err)
	}
	mb.listRecords += len(msgs)
	mb.listSt = mb.statLocked(uidlist.FileName)
	return nil
}

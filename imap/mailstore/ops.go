package mailstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"courriel/delivery/maildirsize"
	"courriel/imap/uidlist"
)

// StoreOp is how STORE combines the given flags with a message's flags.
type StoreOp int

const (
	StoreReplace StoreOp = iota // FLAGS: the message gets exactly these
	StoreAdd                    // +FLAGS
	StoreRemove                 // -FLAGS
)

// StoreFlags changes the flags of uids and returns their new flags (ok false
// for messages that are gone). source is the session, whose own changes are
// not echoed back to it through the change log.
func (mb *Mailbox) StoreFlags(uids []uint32, op StoreOp, flags []string, source *Watcher) ([]Flags, []bool, error) {
	return mb.StoreFlagsPiece(nil, uids, op, flags, source)
}

// StoreFlagsPiece is StoreFlags for one piece of a command that changes
// flags in several (see FlagWait); fw nil: a command of one piece.
func (mb *Mailbox) StoreFlagsPiece(fw *FlagWait, uids []uint32, op StoreOp, flags []string, source *Watcher) ([]Flags, []bool, error) {
	if op != StoreReplace && op != StoreAdd && op != StoreRemove {
		return nil, nil, fmt.Errorf("mailstore: unknown store operation %d", op)
	}
	var out []Flags
	var ok []bool
	err := mb.flagChange(fw, func(mode lockMode) (err error) {
		out, ok, err = mb.storeFlagsLocked(uids, op, flags, source, mode)
		return err
	})
	return out, ok, err
}

// lockMode says what a flag change does when another process holds the
// uidlist lock (see flagChange).
type lockMode int

const (
	lockTry   lockMode = iota // errUIDListBusy, nothing changed
	lockDefer                 // the change is made, its renames wait (dirty)
)

// errUIDListBusy: another process holds the uidlist lock, and the flag change
// changed nothing (lockTry).
var errUIDListBusy = errors.New("mailstore: uidlist lock held by another process")

// FlagWait is what a command that changes flags in several pieces (a
// STORE over 100,000 messages, in pieces of a few thousand whose FETCH
// responses go out between them) has spent of its wait for another
// process's uidlist lock: the wait (lockWait) is the command's, not each
// piece's, or a lock held through the command would hold it up one wait
// per piece (25 for 100,000 messages). Once it is spent, every later
// piece takes the lock if it is free and defers its renames at once if
// not (see flagChange). The zero value is a command that has not waited.
// One command's, not for concurrent use.
//
// The lock itself is not held from one piece to the next: between them
// the FETCH responses are written to the client, which may take as long
// as the client reads slowly (the IMAP server waits minutes for a
// write). The lock is
// touched only while work is done under it (heldStepLocked), so it would
// look stale to Dovecot after uidlist.StaleTimeout and be broken, and
// until then Dovecot's own sessions would wait on a client of ours.
// Taking it again for a piece costs a link and an unlink.
//
// A piece whose renames were all deferred leaves their record in
// PendingFlagsFileName to Done, so that a STORE deferring 100,000
// renames writes the file once rather than once a piece, each longer
// than the last.
type FlagWait struct {
	deadline time.Time // when the wait ends; zero until the lock was first found held
	spent    bool      // the wait ran out
	unsaved  *Mailbox  // a piece deferred renames and left their record to Done
}

// Done ends a command of several pieces: the renames its pieces deferred
// are recorded in PendingFlagsFileName, so that they survive a crash of
// courriel. Call it after the last piece, before the command's tagged
// response, whether the command succeeded or not (its pieces' changes are
// made for the sessions either way). Nothing to do, and nothing written,
// when no piece deferred a rename.
func (fw *FlagWait) Done() {
	mb := fw.unsaved
	if mb == nil {
		return
	}
	fw.unsaved = nil
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.recordPendingLocked()
}

// flagChange runs f, a flag change, under mb.mu. f takes the uidlist lock
// without waiting; while another process holds it, f gives up
// (errUIDListBusy) having changed no file name (keywords beyond the
// letters of messages before the one that needed the lock may have
// changed: f runs again as one whole, and STORE UNCHANGEDSINCE tells
// them from changes of others, see StoreFlagsUnchangedSincePiece), and
// the lock is waited for with
// mb.mu let go, so that the folder's other sessions go on meanwhile (a
// FETCH of one of them is no reason for all to stall), up to lockWait
// for the whole command (fw; nil: a command of one piece). Past the wait
// f runs once more, and makes the change for the sessions even without
// the lock: the files keep their names until the lock is had (see
// dirty). That is Dovecot 2.3's answer when its lock wait times out
// (checked with a lock held by hand): STORE answers OK with the new flags,
// FETCH BODY[] its data with \Seen, and the files are renamed at a later
// sync.
//
// A change whose renames wait is recorded in PendingFlagsFileName before
// flagChange returns (for a command of several pieces, by fw.Done), so
// that the OK the client is given for it survives a crash of courriel.
func (mb *Mailbox) flagChange(fw *FlagWait, f func(lockMode) error) error {
	piece := fw != nil
	if fw == nil {
		fw = new(FlagWait)
	}
	mode := lockTry
	if fw.spent {
		mode = lockDefer
	}
	for {
		mb.mu.Lock()
		err := f(mode)
		if piece && mode == lockDefer && mb.pendingStale {
			// Deferred renames only (a piece that had the lock
			// recorded what its flush made, under it): one write
			// for the command, at its end.
			fw.unsaved = mb
		} else {
			mb.recordPendingLocked()
		}
		mb.mu.Unlock()
		if !errors.Is(err, errUIDListBusy) || mode == lockDefer {
			return err
		}
		if fw.deadline.IsZero() {
			fw.deadline = time.Now().Add(mb.reg.flagWait())
		}
		mb.reg.hook("flag lock wait")
		if !uidlist.WaitFree(mb.root, uidlist.FileName, time.Until(fw.deadline)) {
			fw.spent = true
			mode = lockDefer
		}
	}
}

func (mb *Mailbox) storeFlagsLocked(uids []uint32, op StoreOp, flags []string, source *Watcher, mode lockMode) ([]Flags, []bool, error) {
	bits, extra, err := mb.flagBitsLocked(flags, op != StoreRemove)
	if err != nil {
		return nil, nil, err
	}
	named := foldSet(keywordNames(flags))
	extraSet := foldSet(extra)
	if op != StoreRemove && len(extra) > 0 {
		// Refused before anything changes: a file that could not be
		// read, or past a bound (MaxExtraKeywords in the folder,
		// MaxMessageExtraKeywords on a message).
		if mb.extraBroken {
			return nil, nil, errExtraUnusable
		}
		if _, dropped := mb.extraRoomLocked(extra); len(dropped) > 0 {
			return nil, nil, ErrTooManyKeywords
		}
		if len(extra) > MaxMessageExtraKeywords {
			return nil, nil, ErrTooManyKeywords
		}
		if op == StoreAdd {
			for _, uid := range uids {
				if m := mb.findLocked(uid); m != nil && len(mb.extraAfterLocked(m.Base, op, extra, extraSet, named)) > MaxMessageExtraKeywords {
					return nil, nil, ErrTooManyKeywords
				}
			}
		}
	}
	// Keywords beyond the letters change for the sessions and in
	// ExtraKeywordsFileName, written once at the end (extraWas: what the
	// messages whose ones changed had before, given back when the write
	// fails; extraBase: what the file had for them when this process's
	// changes not written yet were made, see extraDirty).
	var extraWas, extraBase map[string][]string
	defer func() {
		if extraWas != nil && mb.extraStale {
			_ = mb.saveExtraLocked(syncFolder) // an error half-way: best effort
		}
	}()
	clean := mb.cleanLocked()
	out := make([]Flags, len(uids))
	ok := make([]bool, len(uids))
	logged := false // changes recorded: the watchers are woken once, at the end
	mb.log = slices.Grow(mb.log, len(uids))
	defer func() {
		if logged {
			mb.wakeWatchersLocked()
		}
	}()
	// The files are renamed under the uidlist lock, as Dovecot 2.3
	// renames them (its STORE: lock, renames, unlock), taken at the first
	// rename and held to the end of the command, touched as it goes
	// (heldStepLocked) so that a long one is not broken as stale. A
	// program that lists
	// cur/ under the lock (Dovecot always; a sync of ours that missed a
	// file, see syncPass) trusts that no file is renamed meanwhile: a
	// directory of thousands of names is read in several calls, and a
	// file renamed between two of them may be in neither. Dovecot then
	// took a file renamed here for expunged (EXPUNGE in its sessions,
	// and a new UID when it showed up again), and another courriel
	// gave the folder a new UIDVALIDITY. Without an inode for the lock
	// (a full disk) the files are renamed without it, as Dovecot does
	// when its lock fails: the user can still flag and expunge. While
	// another process holds it, see flagChange: with mode lockDefer, the
	// flags change for the sessions and the renames wait (dirty).
	var lk *uidlist.Lock
	lockTried, deferred := false, false
	lock := func() error {
		if lockTried {
			return nil
		}
		lockTried = true
		if mb.detached {
			return ErrFolderGone // deleted: nothing is written in it any more
		}
		uid, gid := mb.owner.ids()
		l, err := uidlist.Acquire(mb.root, uidlist.FileName, 0, 0o600, uid, gid)
		switch {
		case err == nil:
			lk = l
			mb.flushDirtyLocked(lk) // the renames earlier changes left
		case errors.Is(err, uidlist.ErrLocked) && mode == lockTry:
			return errUIDListBusy
		case errors.Is(err, uidlist.ErrLocked):
			deferred = true
		case !noRoom(err):
			return err
		}
		return nil
	}
	unlock := func() {
		if lk != nil {
			lk.Release()
			lk = nil
		}
	}
	defer unlock()
	store := func(i int, m *Msg) error {
		var nf Flags
		switch op {
		case StoreReplace:
			nf = (m.Flags &^ (systemMask | keywordMask)) | bits
		case StoreAdd:
			nf = m.Flags | bits
		case StoreRemove:
			nf = m.Flags &^ bits
		}
		changed := false
		if nf != m.Flags || m.New {
			if err := lock(); err != nil {
				return err
			}
			switch {
			case deferred && nf == m.Flags:
				// only out of new/: a sync moves it
			case deferred:
				mb.deferFlagsLocked(m, nf)
				changed = true
			default:
				if err := mb.renameFlagsLocked(m, nf); err != nil {
					return err
				}
				mb.heldStepLocked(lk)
				mb.undirtyLocked(m)
				changed = nf != m.Flags
				m.Flags, m.New = nf, false
			}
		}
		if len(extra) > 0 || (len(mb.extra) > 0 && mb.extra[m.Base] != nil) {
			was := mb.extraOfLocked(m.Base)
			if mb.setExtraLocked(m.Base, mb.extraAfterLocked(m.Base, op, extra, extraSet, named)) {
				if extraWas == nil {
					extraWas = make(map[string][]string)
					extraBase = make(map[string][]string)
				}
				if _, ok := extraWas[m.Base]; !ok {
					extraWas[m.Base] = was
					extraBase[m.Base] = mb.extraDirty[m.Base]
				}
				changed = true
			}
		}
		if changed {
			mb.recordChangeLocked(Change{Kind: FlagsChanged, UID: m.UID, Source: source}, m)
			logged = true
		}
		out[i], ok[i] = m.Flags|mb.extraBitsLocked(m.Base), true
		return nil
	}
	missing := map[string]bool{}
	j := 0
	for i, uid := range uids {
		// uids usually ascend (a session's view): walk instead of
		// searching each.
		for j < len(mb.msgs) && mb.msgs[j].UID < uid {
			j++
		}
		var m *Msg
		if j < len(mb.msgs) && mb.msgs[j].UID == uid {
			m = mb.msgs[j]
		} else if m = mb.findLocked(uid); m == nil {
			continue
		}
		if err := store(i, m); errors.Is(err, fs.ErrNotExist) {
			missing[m.Base] = true
		} else if err != nil {
			return nil, nil, fmt.Errorf("mailstore: store flags: %w", err)
		}
	}
	if len(missing) > 0 {
		// Renamed by another program (its flags changed): apply the
		// operation to the flags it has now. Gone: a sync reports it.
		found, err := mb.locateLocked(missing)
		if err != nil {
			return nil, nil, err
		}
		for i, uid := range uids {
			m := mb.findLocked(uid)
			if m == nil || !found[m.Base] || ok[i] {
				continue
			}
			if err := store(i, m); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("mailstore: store flags: %w", err)
			}
		}
		if len(found) < len(missing) {
			unlock() // the sync takes it when it needs it
			_ = mb.syncLocked(true, nil)
		}
		clean.ok = false
	}
	if extraWas != nil {
		if err := mb.saveExtraLocked(syncFolder); err != nil {
			// Not kept: this STORE's changes are undone, and the
			// sessions get the keywords back as they were, but for
			// another process's changes that the write (or a sync)
			// read meanwhile (mergeExtraLocked): what the file has
			// now, with this process's earlier changes not written yet.
			for base, was := range extraWas {
				mb.setExtraLocked(base, mergeKeywords(extraBase[base], was, mb.extraDirty[base]))
			}
			mb.extraStale = false
			return nil, nil, fmt.Errorf("mailstore: store flags: %w", err)
		}
	}
	mb.restampLocked(clean)
	if lk != nil {
		// Renames that waited were made (flushDirtyLocked): their
		// record goes before the lock does, so that no other program's
		// later rename can be undone by it after a crash.
		mb.recordPendingLocked()
	}
	return out, ok, nil
}

const keywordMask = Flags(1)<<26 - 1

// deferFlagsLocked gives m the flags nf for the sessions while its file
// keeps its name (the uidlist lock is another process's): it joins dirty
// with the flags that name carries, unless nf are those.
func (mb *Mailbox) deferFlagsLocked(m *Msg, nf Flags) {
	disk, ok := mb.dirty[m]
	if !ok {
		disk = m.Flags
	}
	m.Flags = nf
	if nf == disk && !m.New {
		mb.undirtyLocked(m)
		return
	}
	if mb.dirty == nil {
		mb.dirty = make(map[*Msg]Flags)
	}
	mb.dirty[m] = disk
	mb.pendingStale = true
}

// undirtyLocked takes m out of dirty (its file's name carries its flags,
// or it is gone), noting that PendingFlagsFileName no longer says so.
func (mb *Mailbox) undirtyLocked(m *Msg) {
	if len(mb.dirty) == 0 {
		return
	}
	if _, ok := mb.dirty[m]; ok {
		delete(mb.dirty, m)
		mb.pendingStale = true
	}
}

// fileFlagsLocked takes the flags fl of m's file in cur/, as a listing
// found them (another program may have renamed it), and reports whether
// m.Flags changed. For a message whose rename waits (dirty), the change
// not written yet is made again on the flags the file has now, as Dovecot
// applies a change from its log to the file as it finds it.
func (mb *Mailbox) fileFlagsLocked(m *Msg, fl Flags) bool {
	want := fl
	if disk, ok := mb.dirty[m]; ok {
		want = fl&^(disk&^m.Flags) | m.Flags&^disk
		switch {
		case want == fl:
			mb.undirtyLocked(m)
		case fl != disk:
			mb.dirty[m] = fl
			mb.pendingStale = true
		}
	}
	if want == m.Flags {
		return false
	}
	m.Flags = want
	return true
}

// flushDirtyLocked renames, under lk, the files whose renames waited for
// the uidlist lock (dirty, bare). A file not found under its name was
// renamed by another program: it stays dirty, for a sync to find it (its
// listing makes the change again on the file's flags: fileFlagsLocked).
func (mb *Mailbox) flushDirtyLocked(lk *uidlist.Lock) {
	for base := range mb.bare {
		if f := mb.reg.bareFault; f != nil {
			if err := f(base); err != nil {
				mb.keepBareLocked(base, err)
				continue
			}
		}
		if m := mb.baseMapLocked()[base]; m != nil && !m.New {
			if _, ok := mb.dirty[m]; ok {
				continue // renamed with its flags below
			}
			switch err := mb.renameFlagsLocked(m, m.Flags); {
			case errors.Is(err, fs.ErrNotExist):
				delete(mb.bare, base) // renamed by another program: a sync finds it
			case err != nil:
				mb.keepBareLocked(base, err)
			}
		} else {
			// No message (a file waiting for a UID, a pending
			// record's), or one back in new/: the name alone.
			switch err := mb.renameLocked("cur/"+base, "cur/"+base+":2,"); {
			case err == nil || errors.Is(err, fs.ErrNotExist):
				delete(mb.bare, base)
			default:
				mb.keepBareLocked(base, err)
			}
		}
		mb.heldStepLocked(lk)
	}
	for base, f := range mb.odd {
		m := mb.baseMapLocked()[base]
		if f.kept || m == nil || m.New || !strings.HasPrefix(f.rel, "cur/") {
			continue // moved to cur/ by a sync; no message yet: the name serves
		}
		if _, ok := mb.dirty[m]; ok {
			continue // renamed with its flags below
		}
		switch err := mb.renameFlagsLocked(m, m.Flags); {
		case errors.Is(err, fs.ErrNotExist):
			delete(mb.odd, base) // renamed by another program: a sync finds it
		case err != nil:
			mb.odd[base] = oddFile{rel: f.rel, kept: true}
			mb.reg.log().Warn("mailstore: an unusual maildir name keeps it", "folder", mb.root.Name(), "name", f.rel, "err", err)
		}
		mb.heldStepLocked(lk)
	}
	for m, disk := range mb.dirty {
		if mb.findLocked(m.UID) != m {
			mb.undirtyLocked(m) // gone, or the folder renumbered
			continue
		}
		if disk == m.Flags && !m.New {
			mb.undirtyLocked(m)
			continue
		}
		if err := mb.renameFlagsLocked(m, m.Flags); err != nil {
			continue
		}
		mb.undirtyLocked(m)
		m.New = false
		mb.heldStepLocked(lk)
	}
}

// oddToRenameLocked reports whether a file of cur/ waits for the lock to
// be given its usual name (see odd).
func (mb *Mailbox) oddToRenameLocked() bool {
	for _, f := range mb.odd {
		if !f.kept && strings.HasPrefix(f.rel, "cur/") {
			return true
		}
	}
	return false
}

// keepBareLocked gives up the rename of bare name base, which failed with
// err (see bareKept).
func (mb *Mailbox) keepBareLocked(base string, err error) {
	delete(mb.bare, base)
	if mb.bareKept == nil {
		mb.bareKept = make(map[string]struct{})
	}
	mb.bareKept[base] = struct{}{}
	mb.reg.log().Warn("mailstore: a cur/ name without ':2,' keeps it", "folder", mb.root.Name(), "name", base, "err", err)
}

// tryFlushDirtyLocked flushes dirty under the uidlist lock, waiting for it
// up to wait.
func (mb *Mailbox) tryFlushDirtyLocked(wait time.Duration) {
	if len(mb.dirty) == 0 && len(mb.bare) == 0 && !mb.oddToRenameLocked() || mb.closed || mb.detached {
		return
	}
	if wait > 0 {
		mb.reg.hook("flush lock wait")
	}
	uid, gid := mb.owner.ids()
	lk, err := uidlist.Acquire(mb.root, uidlist.FileName, wait, 0o600, uid, gid)
	if err != nil {
		return
	}
	defer lk.Release()
	clean := mb.cleanLocked()
	mb.flushDirtyLocked(lk)
	mb.restampLocked(clean)
	mb.recordPendingLocked() // under the lock, as in storeFlagsLocked
}

// dirCheck is what cleanLocked found: whether new/ and cur/ were as last
// synchronised, and when it looked.
type dirCheck struct {
	ok bool
	at int64 // Unix nanoseconds, taken before the stats
}

// cleanLocked reports whether the directories are as last synchronised, so
// that an operation of ours may update the stamps afterwards without hiding
// a change made by someone else.
func (mb *Mailbox) cleanLocked() dirCheck {
	at := mb.reg.now().UnixNano()
	return dirCheck{ok: mb.statLocked("new") == mb.newSt && mb.statLocked("cur") == mb.curSt, at: at}
}

// restampLocked takes the stamps of the directories after an operation of
// ours, when they were clean before it. A directory the operation changed
// is known as of the check only (another program may have changed it
// during the operation, in the same clock tick as ours): its stamp is not
// settled until a listing after the tick confirms it. A stamp made unknown
// during the operation (a listing under its lock left files for the next
// sync: see syncArgs) stays unknown.
func (mb *Mailbox) restampLocked(c dirCheck) {
	mb.flushModLocked() // every change ends here: its modseq records too
	if !c.ok {
		return
	}
	if st := mb.statLocked("new"); mb.newSt.ok && st != mb.newSt {
		mb.newSt, mb.newAt = st, c.at
	}
	if st := mb.statLocked("cur"); mb.curSt.ok && st != mb.curSt {
		mb.curSt, mb.curAt = st, c.at
	}
}

// Expunge removes messages. With onlyDeleted, only those flagged \Deleted;
// filter (nil = all) restricts to some UIDs. The expunges are logged for
// every watcher, the caller's included: its EXPUNGE responses come from the
// log like everybody's.
func (mb *Mailbox) Expunge(filter func(uid uint32) bool, onlyDeleted bool) ([]uint32, error) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	clean := mb.cleanLocked()
	goneSet := map[uint32]bool{}
	var firstErr error
	var freed, freedN int64 // what we removed, for maildirsize
	remove := func(m *Msg) {
		sz, ok := sizeField(m.Base, 'S')
		if !ok {
			if fi, err := mb.root.Lstat(mb.pathLocked(m)); err == nil {
				sz = fi.Size()
			}
		}
		err := mb.root.Remove(mb.pathLocked(m))
		if err == nil {
			freed += sz
			freedN++
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			if firstErr == nil {
				firstErr = fmt.Errorf("mailstore: expunge: %w", err)
			}
			return
		}
		goneSet[m.UID] = err == nil
	}
	for _, m := range mb.msgs {
		if (onlyDeleted && m.Flags&FlagDeleted == 0) || (filter != nil && !filter(m.UID)) {
			continue
		}
		remove(m)
	}
	// Not found under its name: another program renamed it (changed its
	// flags) or removed it. Find it by its base name.
	missing := map[string]bool{}
	for uid, removed := range goneSet {
		if !removed {
			missing[mb.findLocked(uid).Base] = true
		}
	}
	if len(missing) > 0 {
		found, err := mb.locateLocked(missing)
		if err != nil {
			return nil, err
		}
		for base := range missing {
			if !found[base] {
				goneSet[mb.baseMapLocked()[base].UID] = true // removed by the other program
			}
		}
		for base := range found {
			m := mb.baseMapLocked()[base]
			// With onlyDeleted, the other program may have taken
			// \Deleted away: its decision stands.
			if onlyDeleted && m.Flags&FlagDeleted == 0 {
				delete(goneSet, m.UID)
				continue
			}
			remove(m)
		}
		clean.ok = false
	}
	gone := make([]uint32, 0, len(goneSet))
	for uid, ok := range goneSet {
		if ok {
			gone = append(gone, uid)
		}
	}
	slices.Sort(gone)
	mb.dropLocked(goneSet)
	mb.restampLocked(clean)
	mb.quotaChange(-freed, -freedN)
	return gone, firstErr
}

// quotaChange records in the maildir's Maildir++ maildirsize what an
// APPEND, COPY or EXPUNGE added or removed, as Dovecot's maildir++ quota
// does, so that the usage delivery checks a quota against follows what the
// user does over IMAP. Nothing when the maildir keeps no maildirsize (no
// quota); best effort otherwise: a lost line is made good when the file is
// next counted afresh.
func (mb *Mailbox) quotaChange(bytes, messages int64) {
	if messages == 0 || mb.mroot == nil {
		return
	}
	_ = maildirsize.Add(mb.mroot, bytes, messages)
}

// dropLocked forgets the messages whose UIDs are in gone and logs their
// expunge for every watcher, in ascending UID order.
func (mb *Mailbox) dropLocked(gone map[uint32]bool) {
	if len(gone) == 0 {
		return
	}
	kept := mb.msgs[:0]
	var expunged []uint32
	for _, m := range mb.msgs {
		if !gone[m.UID] {
			kept = append(kept, m)
			continue
		}
		mb.goneLocked(m)
		expunged = append(expunged, m.UID)
	}
	for i := len(kept); i < len(mb.msgs); i++ {
		mb.msgs[i] = nil
	}
	mb.msgs = kept
	for _, uid := range expunged {
		mb.appendChangeLocked(Change{Kind: Expunged, UID: uid})
	}
}

// writeTemp writes r into tmp/<name>, converting CRLF to LF (the form the
// delivery side stores) and returns the stored and the CRLF sizes.
func (mb *Mailbox) writeTemp(name string, r io.Reader, mtime time.Time) (psize, vsize int64, err error) {
	tmp := "tmp/" + name
	f, err := mb.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("mailstore: create %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			_ = mb.root.Remove(tmp)
		}
	}()
	br := bufio.NewReaderSize(r, 64*1024)
	bw := bufio.NewWriterSize(f, 64*1024)
	for {
		line, rerr := br.ReadSlice('\n')
		if n := len(line); n >= 2 && line[n-1] == '\n' && line[n-2] == '\r' {
			line = append(line[:n-2], '\n')
		}
		if len(line) > 0 {
			if _, err := bw.Write(line); err != nil {
				return 0, 0, err
			}
			psize += int64(len(line))
			vsize += int64(len(line))
			if line[len(line)-1] == '\n' {
				vsize++
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			return 0, 0, fmt.Errorf("mailstore: read message: %w", rerr)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, fmt.Errorf("mailstore: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("mailstore: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, fmt.Errorf("mailstore: close %s: %w", tmp, err)
	}
	ok = true
	mb.owner.chown(mb.root, tmp)
	if !mtime.IsZero() {
		_ = mb.root.Chtimes(tmp, mtime, mtime)
	}
	return psize, vsize, nil
}

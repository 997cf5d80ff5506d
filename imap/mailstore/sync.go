package mailstore

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"courriel/imap/uidlist"

	"golang.org/x/sys/unix"
)

// diskEntry is a message file a listing found.
type diskEntry struct {
	flags Flags
	isNew bool
	// owner is the message of the file (matchLocked), nil for a file
	// the folder has no message of.
	owner *Msg
	// name is the file's in its directory, as the listing left it: the
	// other of two names of one base is checked against it (see
	// splitDuplicateLocked).
	name string
}

// Sync brings the in-memory state up to date with the directories. Without
// force it only stats new/ and cur/ and returns at once when neither changed,
// which is cheap enough to do before every command.
func (mb *Mailbox) Sync(force bool) error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.closed {
		return nil
	}
	return mb.syncLocked(force, nil)
}

func (mb *Mailbox) syncLocked(force bool, source *Watcher) error {
	if mb.detached {
		// Deleted or renamed (Registry.Forget): its sessions are told
		// so, and nothing is written into the directory any more (see
		// lockLocked), where a deleted folder's files are going.
		return nil
	}
	defer mb.flushModLocked()
	// Renames that waited and were made, or messages gone, by this
	// sync: their changes leave PendingFlagsFileName.
	defer mb.recordPendingLocked()
	gen := mb.gen
	if err := mb.syncOnceLocked(force); err != nil {
		return err
	}
	if mb.gen != gen {
		// Renumbered while numbering: check the adopted records
		// against the directories.
		if err := mb.syncOnceLocked(true); err != nil {
			return err
		}
	}
	// Renames that waited for the lock (flag changes, bare names): done
	// if it is free now, as Dovecot's next sync does them.
	mb.tryFlushDirtyLocked(0)
	// Keywords beyond the letters another courriel process changed:
	// one stat while it changed none.
	mb.refreshExtraLocked()
	return nil
}

// syncOnceLocked is a sync by a caller without the uidlist lock.
func (mb *Mailbox) syncOnceLocked(force bool) error {
	return mb.syncPass(syncArgs{force: force})
}

// verifyAfter bounds how long directory stamps set by Delivered (which
// trusts that the delivery was the only change) go unchecked by a listing.
const verifyAfter = time.Minute

// maxRescans bounds the listings a sync repeats while a file it looks for
// is missing and the directories are changing (Dovecot rescans up to five
// times, MAILDIR_SCAN_DIR_MAX_COUNT): a file renamed within cur/ while
// cur/ is read may be in neither the old name's place nor the new one's.
const maxRescans = 2

// syncArgs says how a pass of a sync runs.
type syncArgs struct {
	force bool
	// lk is the uidlist lock when it is held: by the caller, who writes
	// under it afterwards (the pass writes nothing: files it cannot
	// number wait for the next sync), or, with owned, by the sync for
	// this pass to write under.
	lk    *uidlist.Lock
	owned bool
}

// syncPass lists the directories unless their stamps say nothing changed,
// and brings the folder up to date with what it finds. With force it looks
// even when the stamps are unchanged: new/ is listed, and cur/ too unless
// its stamp is unchanged and settled (then nothing can have changed there
// unseen, and a 100,000-message cur/ is not read for a delivery into new/).
//
// The rules, Dovecot's (maildir-sync.c) where they apply:
//
//   - new/ is listed before cur/: a file another program moves from new/ to
//     cur/ meanwhile is in one listing or the other, never in neither.
//   - A message, or the file of a pending record (see records.go), missing
//     from a listing while the directories were changing is looked for
//     again under the uidlist lock, which every Dovecot holds while it
//     renames a file (and courriel too for flag changes, see
//     storeFlagsLocked, but not for a sync's own renames: see below), and
//     again (maxRescans) for another program that renames without it.
//     Only then is a message expunged, or a pending record declared gone.
//   - A sync's own renames are not all made under the lock. A cur/ name
//     without an info part is given ":2," under it only: by a listing
//     under it, else when it is next had (see bare; Dovecot leaves such a
//     name as it is until the message's flags change, under its lock).
//     But messages move from new/ to cur/ at the end (moveNewLocked),
//     after the numbering's write has let the lock go (Delivered
//     likewise). Dovecot moves files out of new/ only under its lock
//     (maildir-sync.c, move_new), but loses nothing to a file we move so:
//     its full sync lists new/ before cur/ and takes a file seen in both
//     as moved (maildir-uidlist.c, NEW_DIR/MOVED), and a new/-only sync
//     keeps the records it did not see and rescans in full later.
//   - Two files of one base name (a backup restored beside the messages,
//     a sync tool's copy) are two messages: under the lock, the second is
//     given a fresh base (splitDuplicateLocked), as Dovecot's full sync
//     does; a listing without it shows one of them and takes the lock.
//   - Files are numbered under the lock, after a read of the uidlist under
//     it: a file with a pending record is adopted with its UID, in
//     ascending order, never past a pending record still waiting for its
//     file; a file the uidlist numbers below what sessions know (a stale
//     record) keeps that UID under a new UIDVALIDITY (revalidateLocked);
//     only a file the uidlist has no record of gets a new UID.
func (mb *Mailbox) syncPass(a syncArgs) error {
	force, lk, owned := a.force, a.lk, a.owned
	// Another program may have rewritten the uidlist (Dovecot numbering
	// its deliveries, or starting over): read it, without the lock, as
	// Dovecot does (it is replaced by rename, appended to in whole lines).
	// Under the lock the holder has read it (refreshUIDListLocked); a pass
	// that numbers files needs every record known (see records.go).
	if st := mb.statLocked(uidlist.FileName); (st != mb.listSt && lk == nil) || (owned && !mb.staleKnown) {
		gen := mb.gen
		if err := mb.readUIDListLocked(); err != nil {
			return err
		}
		if lk == nil {
			mb.reg.hook("uidlist read")
		}
		if mb.gen != gen || len(mb.listed) > 0 {
			force = true
		}
	}
	t0 := mb.reg.now().UnixNano()
	newSt := mb.statLocked("new")
	curSt := mb.statLocked("cur")
	if !force && newSt == mb.newSt && curSt == mb.curSt &&
		(mb.trustedAt.IsZero() || time.Since(mb.trustedAt) < verifyAfter) {
		return nil
	}
	listCur := curSt != mb.curSt || !settled(mb.curSt, mb.curAt) || !mb.trustedAt.IsZero()
	mb.trustedAt = time.Time{}
	if kw := mb.statLocked(uidlist.KeywordsFileName); kw != mb.kwStamp {
		mb.readKeywordsLocked()
	}
	var disk map[string]*diskEntry
	var files []*diskEntry        // each message's, as mb.msgs has them
	missing, sure := false, false // sure: what is missing is gone
	dups := 0                     // names of one base not settled (no lock)
	for pass := 0; ; pass++ {
		var err error
		if disk, dups, err = mb.listDirsLocked(listCur, curSt, lk); err != nil {
			return err
		}
		if files, missing = mb.matchLocked(disk, listCur, files); !missing {
			break
		}
		if listCur {
			// Nothing changed since before the listing, long enough
			// ago for a change to show in the stamps: nothing moved
			// during it.
			if mb.statLocked("new") == newSt && mb.statLocked("cur") == curSt && settled(newSt, t0) && settled(curSt, t0) {
				sure = true
				break
			}
			// Without the lock, the next listing is made under it
			// (Dovecot renames nothing then); under it, again, for a
			// program that renames without it.
			if lk == nil || pass >= maxRescans {
				sure = lk != nil
				break
			}
		}
		// A message of new/, or a pending record's file, may be in cur/
		// now; or a file was renamed while cur/ was read.
		listCur = true
		t0 = mb.reg.now().UnixNano()
		newSt, curSt = mb.statLocked("new"), mb.statLocked("cur")
	}
	// The files with no message: pending records', stale ones' (below),
	// and fresh ones, which the uidlist has no record of.
	var theirs, below []*Msg
	var fresh []string
	classify := func() {
		theirs, below, fresh = theirs[:0], below[:0], fresh[:0]
		for base, d := range disk {
			if d.owner != nil {
				continue
			}
			if r, ok := mb.listed[base]; ok {
				theirs = append(theirs, &Msg{UID: r.UID, Base: r.Name, Flags: d.flags, New: d.isNew})
			} else if uid, ok := mb.stale[base]; ok {
				below = append(below, &Msg{UID: uid, Base: base, Flags: d.flags, New: d.isNew})
			} else {
				fresh = append(fresh, base)
			}
		}
	}
	classify()
	readOnly := false // a full disk: the lock cannot be had, nothing is written
	var roomErr error // why files wait for a sync with room
	if (len(fresh) > 0 || len(below) > 0 || (missing && !sure) || dups > 0) && lk == nil {
		l, err := acquireUIDList(mb)
		switch {
		case err == nil:
			defer l.Release()
			before := mb.listSt
			if err := mb.refreshUIDListLocked(); err != nil {
				return err
			}
			// Nobody numbers files or (Dovecot) renames them while we
			// hold the lock: the listing is made again under it when the
			// uidlist changed since (records of files it may not show),
			// when a file was missing, or to settle two names of one
			// base.
			if mb.listSt != before || (missing && !sure) || dups > 0 {
				return mb.syncPass(syncArgs{force: true, lk: l, owned: true})
			}
			if !mb.staleKnown {
				// Opened from courriel-state: the records of gone
				// files are read before any file is numbered. The
				// listing stands (the file is as it was).
				gen := mb.gen
				if err := mb.readUIDListLocked(); err != nil {
					return err
				}
				if mb.gen != gen {
					return mb.syncPass(syncArgs{force: true, lk: l, owned: true})
				}
				classify()
			}
			lk, owned = l, true
		case noRoom(err) || (errors.Is(err, uidlist.ErrLocked) && len(fresh)+len(below) == 0):
			// Nothing to number, only to be sure of what is missing:
			// without the lock, as without room, nothing is declared
			// gone that another program may still number.
			readOnly = true
			if noRoom(err) {
				roomErr = err
			}
		default:
			return err
		}
	}

	// Known messages: gone, moved, or re-flagged by someone else.
	kept := mb.msgs[:0]
	var expunged []*Msg
	for i, m := range mb.msgs {
		d := files[i]
		ok := d != nil
		if !ok && !listCur && !m.New {
			kept = append(kept, m) // in cur/, which did not change
			continue
		}
		if !ok || d.owner != m {
			// Gone; or the earlier record of a file listed twice.
			expunged = append(expunged, m)
			continue
		}
		m.New = d.isNew
		if !d.isNew && (m.Flags != d.flags || len(mb.dirty) > 0) && mb.fileFlagsLocked(m, d.flags) {
			mb.appendChangeLocked(Change{Kind: FlagsChanged, UID: m.UID})
		}
		kept = append(kept, m)
	}
	for i := len(kept); i < len(mb.msgs); i++ {
		mb.msgs[i] = nil
	}
	mb.msgs = kept
	for _, m := range expunged {
		mb.appendChangeLocked(Change{Kind: Expunged, UID: m.UID})
		if d, ok := disk[m.Base]; ok {
			// Dovecot's "Duplicate file entry": the later record stands,
			// the file is written again without the other.
			delete(mb.cache, m.UID)
			delete(mb.ext, m.UID)
			mb.undirtyLocked(m)
			if mb.byBase != nil {
				mb.byBase[m.Base] = d.owner
			}
			mb.listDirty = true
			continue
		}
		mb.goneLocked(m)
	}

	// Pending records: adopted with their UIDs in ascending order, up to
	// the first whose file may yet show up; declared gone once sure.
	waitFrom := uint32(math.MaxUint32)
	for base, r := range mb.listed {
		if _, ok := disk[base]; ok {
			continue
		}
		if sure {
			delete(mb.listed, base)
			mb.noteStaleLocked(base, r.UID)
			continue
		}
		waitFrom = min(waitFrom, r.UID)
	}
	slices.SortFunc(theirs, func(a, b *Msg) int { return cmp.Compare(a.UID, b.UID) })
	for _, m := range theirs {
		if m.UID > waitFrom {
			break
		}
		r := mb.listed[m.Base]
		delete(mb.listed, m.Base)
		if n := len(mb.msgs); n > 0 && m.UID <= mb.msgs[n-1].UID {
			// Below a message sessions have: as a stale record's.
			mb.noteStaleLocked(m.Base, m.UID)
			below = append(below, m)
			continue
		}
		mb.setExtLocked(m.UID, r.Ext)
		mb.addMsgLocked(m, Cached{})
	}

	var waiting waitingFiles
	if lk == nil || !owned || readOnly {
		waiting = waitingFor(disk, fresh, below)
	} else if err := mb.assignLocked(lk, fresh, below, disk); noRoom(err) {
		waiting = waitingFor(disk, fresh, below)
		roomErr = err
	} else if err != nil {
		return err
	}
	mb.noRoomErr = nil
	if waiting.inNew || waiting.inCur {
		mb.noRoomErr = roomErr
	}
	mb.newSt, mb.newAt = newSt, t0
	if listCur {
		mb.curSt, mb.curAt = curSt, t0
	}
	if mb.hasNewLocked() {
		// Moving new/ to cur/ changes both: the stamps follow our own
		// renames when nothing else changed the directories meanwhile.
		clean := mb.cleanLocked()
		mb.moveNewLocked(lk)
		mb.restampLocked(clean)
	}
	// Files left without a UID (for want of room, or of the lock), and
	// pending records whose files were not found for sure: the next sync
	// lists both directories again, whatever their stamps.
	if waiting.inNew || waitFrom != math.MaxUint32 {
		mb.newSt = stamp{}
	}
	if waiting.inCur || waitFrom != math.MaxUint32 || dups > 0 {
		mb.curSt = stamp{}
	}
	if dups > 0 {
		// Two names of one base left for want of the lock: the
		// second file is unseen until a listing under it.
		mb.newSt = stamp{}
	}
	// Renames that waited, made by the move out of new/, and messages
	// gone: out of PendingFlagsFileName (nothing written unless a rename
	// waits or waited).
	mb.recordPendingLocked()
	return nil
}

// listDirsLocked lists new/, then cur/ when listCur (whose stamp curSt
// sizes the first read), touching lk, the uidlist lock when held (nil:
// not), as it goes. The order is Dovecot's: a file moved from new/ to
// cur/ while the two are read is found in one or the other (in both: the
// cur/ name is the file's), where reading cur/ first would miss it in
// both.
func (mb *Mailbox) listDirsLocked(listCur bool, curSt stamp, lk *uidlist.Lock) (disk map[string]*diskEntry, dups int, err error) {
	subs := []string{"new", "cur"}
	if !listCur {
		subs = subs[:1]
	}
	var lists [2][]string
	total := 0
	for i, sub := range subs {
		f, err := mb.root.Open(sub)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, 0, fmt.Errorf("mailstore: open %s: %w", sub, err)
		}
		hint := 0
		if sub == "cur" && curSt.ok {
			hint = int(min(curSt.size/48, 1<<22)) // some 48 bytes a directory entry
		}
		lists[i], err = listNames(f, hint, func() { mb.heldStepLocked(lk) })
		f.Close()
		mb.listings++
		mb.reg.hook("listed " + sub)
		if err != nil {
			return nil, 0, fmt.Errorf("mailstore: read %s: %w", sub, err)
		}
		total += len(lists[i])
	}
	disk = make(map[string]*diskEntry, total)
	if lk != nil && listCur {
		mb.unsplit = nil // this listing finds them again
	}
	for i, sub := range subs {
		// One array for the entries rather than one allocation each.
		ents := make([]diskEntry, 0, len(lists[i]))
		for _, n := range lists[i] {
			if n == "" || n[0] == '.' {
				continue // maildir spec: dot files are not messages
			}
			// A new/ name's flags count too, as Dovecot reads them.
			base, fl := SplitName(n)
			if prev, dup := disk[base]; dup {
				// Two files of one base (a backup restored beside
				// the messages, a sync tool's copy), or one file
				// seen twice, renamed or moved out of new/ while the
				// directories were read. Without the lock it cannot
				// be told which (another program renames meanwhile):
				// the cur/ name stands, else the first, and the
				// caller lists again under the lock, where the second
				// file of a true pair is given a base of its own.
				nameHere := sub + "/" + n
				if lk == nil {
					if _, settled := mb.unsplit[base]; !settled {
						dups++
					}
					if !prev.isNew || sub == "new" {
						continue
					}
				} else if renamed, ok := mb.splitDuplicateLocked(disk, prev, nameHere, base); ok && renamed == "" {
					// prev took a base of its own: n is the base's.
				} else if ok {
					n = renamed
					base, fl = SplitName(n)
				} else {
					if listCur {
						if mb.unsplit == nil {
							mb.unsplit = map[string]struct{}{}
						}
						mb.unsplit[base] = struct{}{}
					}
					if !prev.isNew || sub == "new" {
						continue
					}
				}
			}
			bare := sub == "cur" && strings.IndexByte(n, ':') < 0
			name := n // as it is once renamed below
			if bare && lk != nil && !mb.isKeptBareLocked(base) {
				// A cur/ name without an info part (another program's
				// doing): given the empty one under the lock, as
				// Dovecot renames in cur/ only under it. Without the
				// lock (a first listing) it keeps its name until the
				// lock is had (see bare); Dovecot leaves such a name
				// as it is until the message's flags change.
				if err := mb.renameLocked("cur/"+n, "cur/"+n+":2,"); err == nil {
					bare = false
					name = n + ":2,"
				}
			}
			if sub == "cur" && (bare || len(mb.bare) > 0 || len(mb.bareKept) > 0) {
				mb.noteBareLocked(base, bare)
			}
			odd := oddName(sub, n, base, fl)
			// Only a name whose info is its flags alone (letters out of
			// order or twice) is given its usual one, under the lock, as
			// a bare one; one whose info holds more (another flag set, a
			// character that is no flag) keeps its name, as under
			// Dovecot, until its flags change (withFlags).
			usual := odd == "" || withFlags(n, fl) == FileName(base, fl)
			if odd != "" && sub == "cur" && lk != nil && !mb.odd[base].kept && usual {
				if err := mb.renameLocked(odd, "cur/"+FileName(base, fl)); err == nil {
					odd = ""
					name = FileName(base, fl)
				}
			}
			if odd != "" || len(mb.odd) > 0 {
				mb.noteOddLocked(base, odd)
			}
			if odd != "" && !usual && sub == "cur" {
				mb.odd[base] = oddFile{rel: odd, kept: true}
			}
			ents = append(ents, diskEntry{flags: fl, isNew: sub == "new", name: name})
			disk[base] = &ents[len(ents)-1]
		}
	}
	return disk, dups, nil
}

// splitDuplicateLocked settles, under the uidlist lock, the second name
// of base a listing found, rel ("cur/..." or "new/..."), the first being
// prev's. When both are there and are two files (not one file's two
// links), one of them is renamed to a fresh base, as Dovecot does
// (maildir-sync.c, maildir_fix_duplicate): otherwise the other file
// stays on disk unseen, a message its user cannot reach. The file that
// keeps the base is the one the folder's message of that base has (its
// UID, flags and cache stay that file's), else the cur/ one, else the
// first. Renamed is rel's new name in its directory when rel took the
// fresh base (the caller lists it under that name); "" when prev did
// (its entry is in disk under its new base already). ok is false when
// nothing was renamed: one file seen twice, or the rename failed.
func (mb *Mailbox) splitDuplicateLocked(disk map[string]*diskEntry, prev *diskEntry, rel, base string) (renamed string, ok bool) {
	prevRel := "cur/" + prev.name
	if prev.isNew {
		prevRel = "new/" + prev.name
	}
	if !mb.twoFilesLocked(prevRel, rel) {
		return "", false
	}
	movePrev := prev.isNew && strings.HasPrefix(rel, "cur/")
	if mb.loaded {
		if m := mb.baseMapLocked()[base]; m != nil {
			switch mb.pathLocked(m) {
			case rel:
				movePrev = true
			case prevRel:
				movePrev = false
			}
		}
	}
	victim := rel
	if movePrev {
		victim = prevRel
	}
	sub, name, _ := splitRel(victim)
	to, err := mb.freshNameLocked(sub, name, base)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // gone: one file seen twice after all
			mb.reg.log().Warn("mailstore: a second file of one base name not renamed; it stays unseen", "folder", mb.root.Name(), "name", victim, "err", err)
		}
		return "", false
	}
	mb.reg.log().Warn("mailstore: a second file of one base name given its own", "folder", mb.root.Name(), "name", victim, "to", to)
	if !movePrev {
		return to, true
	}
	// prev's notes of base (bare, odd) are overwritten by rel's, which
	// the caller lists as the base's next.
	fresh, fl := SplitName(to)
	prev.name = to
	disk[fresh] = prev
	if odd := oddName(sub, to, fresh, fl); odd != "" {
		mb.noteOddLocked(fresh, odd)
		if sub == "cur" {
			mb.odd[fresh] = oddFile{rel: odd, kept: true}
		}
	}
	return "", true
}

// twoFilesLocked reports whether a and b (paths in the folder) are both
// there and are not one file: a file renamed while its directory was
// read is listed under both names, and one given two links (Dovecot
// leaves them, and removes one only when they have not changed for a
// while) holds one message.
func (mb *Mailbox) twoFilesLocked(a, b string) bool {
	var st [2]unix.Stat_t
	for i, rel := range []string{a, b} {
		sub, name, ok := splitRel(rel)
		if !ok {
			return false
		}
		fd, err := mb.dirFDLocked(sub)
		if err != nil {
			return false
		}
		if ignoringEINTR(func() error { return unix.Fstatat(fd, name, &st[i], unix.AT_SYMLINK_NOFOLLOW) }) != nil {
			return false
		}
	}
	return st[0].Ino != st[1].Ino || st[0].Dev != st[1].Dev
}

// freshNameLocked renames sub/name, a file of base, to a fresh base made
// as a delivery's (Registry.uniqueBase) in the same directory, and
// returns its new name there. The sizes Dovecot reads in a base (",S=",
// ",W=") are kept, as maildir_fix_duplicate keeps them; a cur/ name
// whose info is its flags alone gets its usual one, another keeps its
// info, as the listing would leave it. The rename never replaces a file.
func (mb *Mailbox) freshNameLocked(sub, name, base string) (string, error) {
	_, fl := SplitName(name)
	info := name[len(base):]
	if sub == "cur" && (info == "" || withFlags(name, fl) == FileName(base, fl)) {
		info = ":2," + fl.String()
	}
	var sizes string
	for _, key := range []byte{'S', 'W'} {
		if n, ok := sizeField(base, key); ok {
			sizes += "," + string(key) + "=" + strconv.FormatInt(n, 10)
		}
	}
	var err error
	for try := 0; try < 3; try++ {
		to := mb.reg.uniqueBase() + sizes + info
		if err = mb.renameLocked(sub+"/"+name, sub+"/"+to); err == nil {
			return to, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return "", err
}

// matchLocked gives the files of a listing their messages (owner: in
// ascending UIDs, a file the uidlist listed twice is the later record's)
// and the messages their files (in buf, reused: one map lookup a message
// for the whole sync), and reports whether a message or a pending
// record's file is missing from it (a message of cur/ counts only when
// cur/ was listed).
func (mb *Mailbox) matchLocked(disk map[string]*diskEntry, listCur bool, buf []*diskEntry) (files []*diskEntry, missing bool) {
	files = slices.Grow(buf[:0], len(mb.msgs))[:len(mb.msgs)]
	for i, m := range mb.msgs {
		d := disk[m.Base]
		files[i] = d
		if d != nil {
			d.owner = m
		} else if listCur || m.New {
			missing = true
		}
	}
	for base := range mb.listed {
		if _, ok := disk[base]; !ok {
			missing = true
		}
	}
	return files, missing
}

// waitingFiles says where the files left without a UID are.
type waitingFiles struct{ inNew, inCur bool }

func waitingFor(disk map[string]*diskEntry, fresh []string, below []*Msg) waitingFiles {
	var w waitingFiles
	note := func(base string) {
		if disk[base].isNew {
			w.inNew = true
		} else {
			w.inCur = true
		}
	}
	for _, base := range fresh {
		note(base)
	}
	for _, m := range below {
		note(m.Base)
	}
	return w
}

// noRoom reports whether err is the file system's lack of room: no
// block or inode left (ENOSPC), or none left to the owner (EDQUOT).
func noRoom(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// hasNewLocked reports whether a message is still in new/.
func (mb *Mailbox) hasNewLocked() bool {
	for _, m := range mb.msgs {
		if m.New {
			return true
		}
	}
	return false
}

// assignLocked numbers files found on disk under lk, taken by the sync and
// with the uidlist read under it: the fresh ones (no record) get new UIDs,
// written to the uidlist; those of stale records keep their UIDs under a
// new UIDVALIDITY (revalidateLocked), written with them.
//
// When a sync cannot have the lock for want of room (no inode for the
// lock, no block for the records: a full disk), or cannot write the
// records, the folder is read as it is: the files another process
// numbered are adopted from the uidlist as read without the lock (as
// Dovecot reads it), and the others wait, unseen and untouched, for a sync
// with room (the caller notes where they are). Nothing is written and no
// UID is given in memory only, so a Dovecot working on the folder
// meanwhile numbers them as it would: a user on a full disk still opens
// the folder, reads, and expunges to make room.
func (mb *Mailbox) assignLocked(lk *uidlist.Lock, fresh []string, below []*Msg, disk map[string]*diskEntry) error {
	sort.Strings(fresh) // maildir names start with the delivery time
	ours := make([]*Msg, len(fresh))
	slab := make([]Msg, len(fresh)) // one allocation, not one per message
	for i, base := range fresh {
		d := disk[base]
		slab[i] = Msg{UID: mb.nextUID + uint32(i), Base: base, Flags: d.flags, New: d.isNew}
		ours[i] = &slab[i]
	}
	switch {
	case len(below) > 0:
		slices.SortFunc(below, func(a, b *Msg) int { return cmp.Compare(a.UID, b.UID) })
		if err := mb.revalidateLocked(lk, below, ours); err != nil {
			return err
		}
	case len(ours) > 0 || mb.listDirty:
		if err := mb.addToUIDListLocked(lk, ours); err != nil {
			return err
		}
	}
	if n := len(mb.msgs); !mb.loaded && len(ours) > 0 && (n == 0 || mb.msgs[n-1].UID < ours[0].UID) {
		// The first load: nobody watches its change log (dropped when
		// it is done), and the new UIDs are above every other.
		mb.msgs = append(mb.msgs, ours...)
		mb.nextUID = max(mb.nextUID, ours[len(ours)-1].UID+1)
		if mb.byBase != nil {
			for _, m := range ours {
				mb.byBase[m.Base] = m
			}
		}
		return nil
	}
	for _, m := range ours {
		mb.addMsgLocked(m, Cached{})
	}
	return nil
}

// moveNewLocked moves messages from new/ to cur/, as Dovecot does once a
// session has seen them, touching lk (the uidlist lock when held, else
// nil) as it goes.
func (mb *Mailbox) moveNewLocked(lk *uidlist.Lock) {
	for _, m := range mb.msgs {
		if !m.New {
			continue
		}
		if mb.lowNew == 0 || m.UID < mb.lowNew {
			mb.lowNew = m.UID
		}
		from := mb.pathLocked(m)
		to := "cur/" + withFlags(path.Base(from), m.Flags)
		if from == "new/"+m.Base {
			to = "cur/" + FileName(m.Base, m.Flags)
		}
		if err := mb.renameLocked(from, to); err == nil {
			mb.noteOddRenamedLocked(m.Base, to, m.Flags)
			m.New = false
			mb.undirtyLocked(m) // its name has its flags now
		}
		mb.heldStepLocked(lk)
	}
}

package mailstore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"courriel/imap/uidlist"

	"golang.org/x/sys/unix"
)

// lockWait bounds how long a command waits for another process's uidlist lock.
const lockWait = 10 * time.Second

// Msg is what the mailbox knows about one message without reading it.
//
// The fields are in the order that packs them closest: a 100,000-message
// folder is an array of 100,000 of them (the rare uidlist extension fields
// are in Mailbox.ext).
type Msg struct {
	UID   uint32
	New   bool // still in new/
	Flags Flags
	// ModSeq is the modification sequence of the message's last change
	// (RFC 7162); see modseq.go.
	ModSeq uint64
	Base   string // maildir base name (before ":2,")
}

// Path is the message file's path inside the folder.
func (m *Msg) Path() string {
	if m.New {
		return "new/" + m.Base
	}
	return "cur/" + FileName(m.Base, m.Flags)
}

// stamp identifies a version of a directory or file cheaply. The change
// time is in it because no program can set it back (utimes sets the
// modification time only): a directory restored with its old mtime still
// reads as changed.
type stamp struct {
	mtime int64 // Unix nanoseconds
	ctime int64
	size  int64
	ino   uint64
	ok    bool
}

// statLocked stamps name in the folder. It asks the kernel through the
// folder's own descriptor into a Stat_t on the stack: every session in
// IDLE stamps new/ and cur/ at each IdleCheck, and the Root's Stat made
// some 300 bytes of garbage a call (its FileInfo, the path split). A
// symlink, which the Root follows within the folder, and a name of more
// than one component take the Root's way.
func (mb *Mailbox) statLocked(name string) stamp {
	if fd, err := mb.dirFDLocked("."); err == nil && !strings.ContainsAny(name, "/\x00") {
		// The name NUL-terminated in the folder's reused buffer, as
		// renameFlagsLocked does: unix.Fstatat would copy it each time.
		b := append(append(mb.nameBuf[:0], name...), 0)
		mb.nameBuf = b
		var st unix.Stat_t
		var errno unix.Errno
		for {
			_, _, errno = unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
				uintptr(unsafe.Pointer(&st)), unix.AT_SYMLINK_NOFOLLOW, 0, 0)
			if errno != unix.EINTR {
				break
			}
		}
		switch {
		case errno != 0:
			return stamp{}
		case st.Mode&unix.S_IFMT != unix.S_IFLNK:
			return mb.grained(stamp{mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), size: st.Size, ino: st.Ino, ok: true})
		}
	}
	st, err := mb.root.Stat(name)
	if err != nil {
		return stamp{}
	}
	return mb.stampOf(st)
}

// stampOf is the stamp of a file's information.
func (mb *Mailbox) stampOf(st fs.FileInfo) stamp {
	s := stamp{mtime: st.ModTime().UnixNano(), size: st.Size(), ok: true}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
		s.ctime = sys.Ctim.Nano()
	}
	return mb.grained(s)
}

// grained is s as the registry's clock sees it.
func (mb *Mailbox) grained(s stamp) stamp {
	if g := mb.reg.stampGrain; g > 0 {
		// Tests: a file system keeping whole seconds only.
		s.mtime -= s.mtime % int64(g)
		s.ctime -= s.ctime % int64(g)
	}
	return s
}

// Mailbox is the shared state of one folder. All fields after mu are guarded
// by mu.
type Mailbox struct {
	reg  *Registry
	key  regKey
	refs int // guarded by reg.mu
	// lingerGen counts the releases; a lingering folder's settle acts
	// only if no release came after the one that scheduled it. Guarded by
	// reg.mu.
	lingerGen uint64
	// kept: loaded after its last release (see Registry.keepLocked),
	// holding keptSize bytes by estimate. Guarded by reg.mu.
	kept     bool
	keptSize int64
	user     string   // the login that opened it (Store.SetUser), for DropUser
	root     *os.Root // the folder
	mroot    *os.Root // the maildir (for its UIDVALIDITY counter)
	owner    Owner

	mu          sync.Mutex
	closed      bool
	detached    bool
	uidValidity uint32
	nextUID     uint32
	guid        string
	hdrExt      []string
	msgs        []*Msg // ascending UID
	// ext holds the uidlist extension fields of the messages that have
	// any (another program's), by UID, to write them back as they were.
	ext      map[uint32][]string
	byBase   map[string]*Msg // nil until needed: see baseMapLocked
	keywords uidlist.Keywords
	kwStamp  stamp
	newSt    stamp
	curSt    stamp
	// newAt and curAt say since when the memory has every change of new/
	// and cur/ up to their stamps (Unix nanoseconds, 0: not known); see
	// settled in state.go.
	newAt, curAt int64
	listSt       stamp
	// listCRC is the CRC-32C of dovecot-uidlist as last read or written
	// (listCRCOK: known), whose content courriel-state is checked against.
	listCRC   uint32
	listCRCOK bool
	// listVer is the uidlist's stamp verified settled with its content,
	// for courriel-state (see fileVer); fileReads counts the files
	// read whole to verify them, for tests.
	listVer     fileVer
	fileReads   uint64
	listDirty   bool                      // a new UIDVALIDITY not written to dovecot-uidlist yet
	listRecords int                       // records in the file, gone messages' included
	listed      map[string]uidlist.Record // records of files not seen yet
	loaded      bool                      // load() is done
	gen         uint64                    // counts invalidations
	listings    uint64                    // directory listings, for tests
	trustedAt   time.Time                 // first stamps set by Delivered since the last listing

	// recentFrom is the first UID no session has claimed as \Recent
	// (RFC 3501 §2.3.2); lowNew the lowest UID found in new/ while
	// loading, recent whatever the index says.
	recentFrom  uint32
	recentDirty bool
	lowNew      uint32

	log      []Change
	logBase  uint64 // sequence number of log[0]
	watchers map[*Watcher]struct{}

	cache map[uint32]*Cached
	// cachePending reads the entries of courriel-index not in cache yet,
	// in ascending UIDs (see cacheUpToLocked); nil once all are.
	cachePending *indexReader
	cacheLoaded  bool
	cacheDirty   bool

	curDir, newDir *os.File // opened on first use; see dirfd.go
	folderDir      *os.File // the folder's own, for statLocked; opened on first use
	nameBuf        []byte   // renameFlagsLocked's names

	savedState stateSummary // as courriel-state has it; see state.go

	mod modState // modseqs (CONDSTORE, QRESYNC); see modseq.go
}

// ChangeKind says what happened to a message.
type ChangeKind uint8

const (
	Added ChangeKind = iota + 1
	Expunged
	FlagsChanged
	// Invalidated: another program renumbered the folder (a new
	// UIDVALIDITY, or UIDs given anew). The UIDs a session holds mean
	// nothing now: it must end with BYE rather than act on them.
	Invalidated
)

// Change is one entry of a mailbox's change log.
type Change struct {
	Kind   ChangeKind
	UID    uint32
	Source *Watcher // the session that caused it, nil for others
}

// load reads the uidlist and keywords, then synchronises with the directories.
func (mb *Mailbox) load() error {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.watchers = make(map[*Watcher]struct{})
	mb.readKeywordsLocked()
	fromState, err := mb.loadStateLocked()
	if err != nil {
		return err
	}
	if !fromState {
		if err := mb.readUIDListLocked(); err != nil {
			return err
		}
		if err := mb.syncLocked(true, nil); err != nil {
			return err
		}
	}
	if mb.listDirty {
		// Keep the new UIDVALIDITY even while the folder is empty. Best
		// effort: a folder we may not write is still read.
		_ = mb.rewriteUIDListLocked()
	}
	mb.loadRecentLocked()
	if !fromState {
		mb.loadModLocked()
	}
	mb.log = nil // nobody watched the initial load
	mb.loaded = true
	mb.flushModLocked()
	return nil
}

func (mb *Mailbox) readKeywordsLocked() {
	mb.kwStamp = mb.statLocked(uidlist.KeywordsFileName)
	data, err := mb.root.ReadFile(uidlist.KeywordsFileName)
	if err != nil {
		return
	}
	kw, _ := uidlist.ParseKeywords(bytes.NewReader(data))
	mb.keywords = kw
}

// readUIDListLocked (re)reads dovecot-uidlist. While loading, its records
// become the folder's messages (the sync that follows drops those without a
// file). Later, the records of files not numbered here yet are kept in
// mb.listed for when their files are found; a file that contradicts what
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
		if !mb.loaded {
			// Like Dovecot: a broken uidlist is discarded and UIDs are
			// given anew under a new UIDVALIDITY.
			mb.newValidityLocked()
		}
		mb.listDirty = true
		return nil
	}
	mb.listRecords = len(l.Records)
	if l.NextUID > mb.nextUID {
		mb.nextUID = l.NextUID
	}
	mb.guid, mb.hdrExt = l.GUID, l.HeaderExt
	if !mb.loaded {
		mb.uidValidity = l.UIDValidity
		mb.adoptRecordsLocked(l.Records)
		return nil
	}
	if l.UIDValidity != mb.uidValidity {
		mb.invalidateLocked(l)
		return nil
	}
	var last uint32
	if n := len(mb.msgs); n > 0 {
		last = mb.msgs[n-1].UID
	}
	for _, r := range l.Records {
		if m, ok := mb.baseMapLocked()[r.Name]; ok {
			if m.UID != r.UID {
				mb.invalidateLocked(l)
				return nil
			}
			continue
		}
		if r.UID > last {
			if mb.listed == nil {
				mb.listed = make(map[string]uidlist.Record)
			}
			mb.listed[r.Name] = r
		}
		// Lower unknown UIDs are records of messages expunged here.
	}
	return nil
}

// adoptRecordsLocked makes the records the folder's messages, before the
// sync that checks them against the directories.
func (mb *Mailbox) adoptRecordsLocked(recs []uidlist.Record) {
	mb.msgs = make([]*Msg, len(recs))
	mb.byBase = nil
	mb.listed = nil
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

// baseMapLocked returns the messages by base name, made on first use: a
// folder opened from courriel-state, with nothing to number or to look
// for, never needs it.
func (mb *Mailbox) baseMapLocked() map[string]*Msg {
	if mb.byBase == nil {
		mb.byBase = make(map[string]*Msg, len(mb.msgs)+16)
		for _, m := range mb.msgs {
			mb.byBase[m.Base] = m
		}
	}
	return mb.byBase
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
	mb.cachePending = nil // entries of the old numbering
	mb.cacheDirty = mb.cacheLoaded
	mb.recentFrom = mb.nextUID
	// The records carry no flags: the next sync lists the directories.
	mb.newSt, mb.curSt = stamp{}, stamp{}
	mb.gen++
	mb.appendChangeLocked(Change{Kind: Invalidated})
}

func (mb *Mailbox) newValidityLocked() {
	uid, gid := mb.owner.ids()
	mb.uidValidity = uidlist.NextUIDValidity(mb.mroot, time.Now(), mb.uidValidity, uid, gid)
	mb.listDirty = true
	mb.nextUID = 1
	var g [16]byte
	_, _ = rand.Read(g[:])
	mb.guid = hex.EncodeToString(g[:])
}

type diskEntry struct {
	flags Flags
	isNew bool
	seen  bool
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
	defer mb.flushModLocked()
	gen := mb.gen
	if err := mb.syncOnceLocked(force, nil); err != nil {
		return err
	}
	if mb.gen != gen {
		// Invalidated while numbering: check the adopted records
		// against the directories.
		return mb.syncOnceLocked(true, nil)
	}
	return nil
}

// verifyAfter bounds how long directory stamps set by Delivered (which
// trusts that the delivery was the only change) go unchecked by a listing.
const verifyAfter = time.Minute

// syncOnceLocked lists the directories unless their stamps say nothing
// changed; lk is the uidlist lock when the caller holds it already. With
// force it looks even when the stamps are unchanged: new/ is listed, and
// cur/ too unless its stamp is unchanged and settled (then nothing can
// have changed there unseen, and a 100,000-message cur/ is not read for a
// delivery into new/).
func (mb *Mailbox) syncOnceLocked(force bool, lk *uidlist.Lock) error {
	// Another program may have rewritten the uidlist (Dovecot numbering
	// its deliveries, or starting over): read it, without the lock, as
	// Dovecot does (it is replaced by rename, appended to in whole lines).
	if st := mb.statLocked(uidlist.FileName); st != mb.listSt && lk == nil {
		gen := mb.gen
		if err := mb.readUIDListLocked(); err != nil {
			return err
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
	stale := make([]string, 0, len(mb.listed))
	for base := range mb.listed {
		stale = append(stale, base)
	}
	if kw := mb.statLocked(uidlist.KeywordsFileName); kw != mb.kwStamp {
		mb.readKeywordsLocked()
	}
	subs := []string{"cur", "new"}
	if !listCur {
		subs = subs[1:]
	}
	var disk map[string]*diskEntry
	for _, sub := range subs {
		f, err := mb.root.Open(sub)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("mailstore: open %s: %w", sub, err)
		}
		hint := 0
		if st := curSt; sub == "cur" && st.ok {
			hint = int(min(st.size/48, 1<<22)) // some 48 bytes a directory entry
		}
		names, err := listNames(f, hint)
		f.Close()
		mb.listings++
		if err != nil {
			return fmt.Errorf("mailstore: read %s: %w", sub, err)
		}
		if disk == nil {
			// Sized for cur/ (listed first); new/ adds a few.
			disk = make(map[string]*diskEntry, len(names)+64)
		}
		// One array for the entries rather than one allocation each.
		ents := make([]diskEntry, 0, len(names))
		for _, n := range names {
			if n == "" || n[0] == '.' {
				continue // maildir spec: dot files are not messages
			}
			if sub == "cur" && strings.IndexByte(n, ':') < 0 {
				// A cur/ name without an info part (another program's
				// doing): give it the empty one, the name Path expects.
				if err := mb.renameLocked("cur/"+n, "cur/"+n+":2,"); err == nil {
					n += ":2,"
				}
			}
			base, fl := SplitName(n)
			if sub == "new" {
				fl = 0
			}
			if prev, dup := disk[base]; dup && !prev.isNew {
				continue // the same message twice: keep the cur/ copy
			}
			ents = append(ents, diskEntry{flags: fl, isNew: sub == "new"})
			disk[base] = &ents[len(ents)-1]
		}
	}
	// Known messages: gone, moved, or re-flagged by someone else.
	kept := mb.msgs[:0]
	var expunged []uint32
	for _, m := range mb.msgs {
		d, ok := disk[m.Base]
		if !ok && !listCur && !m.New {
			kept = append(kept, m) // in cur/, which did not change
			continue
		}
		if !ok {
			delete(mb.byBase, m.Base)
			expunged = append(expunged, m.UID)
			continue
		}
		d.seen = true
		if m.New != d.isNew || (!d.isNew && m.Flags != d.flags) {
			old := m.Flags
			m.New = d.isNew
			if !d.isNew {
				m.Flags = d.flags
			}
			if old != m.Flags {
				mb.appendChangeLocked(Change{Kind: FlagsChanged, UID: m.UID})
			}
		}
		kept = append(kept, m)
	}
	for i := len(kept); i < len(mb.msgs); i++ {
		mb.msgs[i] = nil
	}
	mb.msgs = kept
	for _, uid := range expunged {
		mb.appendChangeLocked(Change{Kind: Expunged, UID: uid})
		delete(mb.cache, uid)
		delete(mb.ext, uid)
	}
	var unknown []string
	if len(mb.msgs) == 0 {
		unknown = make([]string, 0, len(disk)) // the first load: all of them
	}
	for base, d := range disk {
		if !d.seen {
			unknown = append(unknown, base)
		}
	}
	var waiting waitingFiles
	if len(unknown) > 0 {
		sort.Strings(unknown) // maildir names start with the delivery time
		var err error
		if waiting, err = mb.assignLocked(unknown, disk, lk); err != nil {
			return err
		}
	}
	for _, base := range stale {
		if _, ok := disk[base]; !ok {
			delete(mb.listed, base) // a record of a file gone since
		}
	}
	mb.newSt, mb.newAt = newSt, t0
	if listCur {
		mb.curSt, mb.curAt = curSt, t0
	}
	if mb.hasNewLocked() {
		// Moving new/ to cur/ changes both: the stamps follow our own
		// renames when nothing else changed the directories meanwhile.
		clean := mb.cleanLocked()
		mb.moveNewLocked()
		mb.restampLocked(clean)
	}
	// Files left without a UID for want of room: the next sync lists
	// their directory again, whatever its stamp, to number them.
	if waiting.inNew {
		mb.newSt = stamp{}
	}
	if waiting.inCur {
		mb.curSt = stamp{}
	}
	return nil
}

// waitingFiles says where the files that assignLocked left without a UID
// are.
type waitingFiles struct{ inNew, inCur bool }

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

// assignLocked numbers files found on disk under the uidlist lock: first
// with the UIDs another process gave them, then with new ones, appended to
// the uidlist.
//
// When the caller holds no lock (a sync, not a write of ours) and the
// uidlist cannot be written for want of room (no inode for the lock, no
// block for the records: a full disk), the folder is read as it is: the
// files another process numbered are adopted from the uidlist as read
// without the lock (as Dovecot reads it), and the others wait, unseen and
// untouched, for a sync with room; the result says where they are. Nothing
// is written and no UID is given in memory only, so a Dovecot working on
// the folder meanwhile numbers them as it would: a user on a full disk
// still opens the folder, reads, and expunges to make room.
func (mb *Mailbox) assignLocked(bases []string, disk map[string]*diskEntry, lk *uidlist.Lock) (waitingFiles, error) {
	wait := func(fresh []string) waitingFiles {
		var w waitingFiles
		for _, base := range fresh {
			if disk[base].isNew {
				w.inNew = true
			} else {
				w.inCur = true
			}
		}
		return w
	}
	// The bases are of no message known when the directories were
	// compared with the memory; only a uidlist read since (another
	// process's numbering adopted) may have made some known.
	reread, own, readOnly := false, lk == nil, false
	if own {
		uid, gid := mb.owner.ids()
		l, err := acquireUIDList(mb, uid, gid)
		switch {
		case err == nil:
			lk = l
			defer lk.Release()
			before := mb.listSt
			if err := mb.refreshUIDListLocked(); err != nil {
				return waitingFiles{}, err
			}
			reread = mb.listSt != before
		case noRoom(err):
			readOnly = true
		default:
			return waitingFiles{}, err
		}
	}
	var theirs []*Msg
	fresh := make([]string, 0, len(bases))
	for _, base := range bases {
		if reread {
			if _, ok := mb.baseMapLocked()[base]; ok {
				continue // invalidated meanwhile: syncLocked starts over
			}
		}
		if r, ok := mb.listed[base]; ok {
			theirs = append(theirs, &Msg{UID: r.UID, Base: base})
			mb.setExtLocked(r.UID, r.Ext)
			delete(mb.listed, base)
			continue
		}
		fresh = append(fresh, base)
	}
	// Theirs first: their UIDs are below our next one, and msgs ascends.
	sort.Slice(theirs, func(i, j int) bool { return theirs[i].UID < theirs[j].UID })
	for _, m := range theirs {
		d := disk[m.Base]
		m.Flags, m.New = d.flags, d.isNew
		mb.addMsgLocked(m, Cached{})
	}
	if readOnly {
		return wait(fresh), nil
	}
	ours := make([]*Msg, len(fresh))
	slab := make([]Msg, len(fresh)) // one allocation, not one per message
	for i, base := range fresh {
		d := disk[base]
		slab[i] = Msg{UID: mb.nextUID + uint32(i), Base: base, Flags: d.flags, New: d.isNew}
		ours[i] = &slab[i]
	}
	if len(ours) > 0 || mb.listDirty {
		if err := mb.addToUIDListLocked(lk, ours); err != nil {
			if own && noRoom(err) {
				return wait(fresh), nil
			}
			return waitingFiles{}, err
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
		return waitingFiles{}, nil
	}
	for _, m := range ours {
		mb.addMsgLocked(m, Cached{})
	}
	return waitingFiles{}, nil
}

// writeUIDListLocked replaces dovecot-uidlist with the records of the
// folder's messages and of extra (new messages not in mb.msgs yet).
func (mb *Mailbox) writeUIDListLocked(lk *uidlist.Lock, extra []*Msg) error {
	next := mb.nextUID
	if n := len(extra); n > 0 {
		next = max(next, extra[n-1].UID+1)
	}
	l := uidlist.List{UIDValidity: mb.uidValidity, NextUID: next, GUID: mb.guid, HeaderExt: mb.hdrExt}
	l.Records = make([]uidlist.Record, 0, len(mb.msgs)+len(extra))
	for _, m := range mb.msgs {
		l.Records = append(l.Records, uidlist.Record{UID: m.UID, Ext: mb.ext[m.UID], Name: m.Base})
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
	mb.listDirty = false
	mb.listRecords = len(l.Records)
	mb.listSt = mb.statLocked(uidlist.FileName)
	return nil
}

// rewriteUIDList persists the current records (after expunges) under lock.
func (mb *Mailbox) rewriteUIDListLocked() error {
	uid, gid := mb.owner.ids()
	lk, err := uidlist.Acquire(mb.root, uidlist.FileName, lockWait, 0o600, uid, gid)
	if err != nil {
		return err
	}
	defer lk.Release()
	return mb.writeUIDListLocked(lk, nil)
}

// moveNewLocked moves messages from new/ to cur/, as Dovecot does once a
// session has seen them.
func (mb *Mailbox) moveNewLocked() {
	for _, m := range mb.msgs {
		if !m.New {
			continue
		}
		if mb.lowNew == 0 || m.UID < mb.lowNew {
			mb.lowNew = m.UID
		}
		to := "cur/" + FileName(m.Base, m.Flags)
		if err := mb.renameLocked("new/"+m.Base, to); err == nil {
			m.New = false
		}
	}
}

func (mb *Mailbox) appendChangeLocked(c Change) {
	mb.recordChangeLocked(c, nil)
	mb.wakeWatchersLocked()
}

// recordChangeLocked logs a change without waking the watchers, for an
// operation that logs many (a STORE over the folder) and wakes them once
// at the end; m is the changed message when the caller has it at hand.
func (mb *Mailbox) recordChangeLocked(c Change, m *Msg) {
	mb.noteModLocked(c, m)
	mb.log = append(mb.log, c)
}

// wakeWatchersLocked tells every watcher that the log has grown, and
// trims the log below every watcher's cursor.
func (mb *Mailbox) wakeWatchersLocked() {
	for w := range mb.watchers {
		select {
		case w.C <- struct{}{}:
		default:
		}
	}
	if len(mb.log) > 1024 {
		min := mb.logBase + uint64(len(mb.log))
		for w := range mb.watchers {
			if w.cursor < min {
				min = w.cursor
			}
		}
		if drop := int(min - mb.logBase); drop > 0 {
			mb.log = append(mb.log[:0:0], mb.log[drop:]...)
			mb.logBase = min
		}
	}
}

// Status is a summary for SELECT and STATUS.
type Status struct {
	UIDValidity uint32
	UIDNext     uint32
	Messages    uint32
	Unseen      uint32
	Deleted     uint32
	FirstUnseen uint32 // sequence number, 0 if none
	Recent      uint32 // messages no session has claimed yet (STATUS RECENT)
	// HighestModSeq is the folder's HIGHESTMODSEQ (RFC 7162).
	HighestModSeq uint64
}

// Status returns the summary of the mailbox.
func (mb *Mailbox) Status() Status {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	s := Status{UIDValidity: mb.uidValidity, UIDNext: mb.nextUID, Messages: uint32(len(mb.msgs)), HighestModSeq: mb.mod.highest}
	for i, m := range mb.msgs {
		if m.Flags&FlagSeen == 0 {
			s.Unseen++
			if s.FirstUnseen == 0 {
				s.FirstUnseen = uint32(i + 1)
			}
		}
		if m.Flags&FlagDeleted != 0 {
			s.Deleted++
		}
		if m.UID >= mb.recentFrom {
			s.Recent++
		}
	}
	return s
}

// UIDValidity returns the folder's UIDVALIDITY.
// ChangeDirs returns the paths of the folder's new/ and cur/, whose
// entries change with every delivery, flag change and expunge (for
// inotify watches; the folder itself is read through its os.Root).
func (mb *Mailbox) ChangeDirs() (newDir, curDir string) {
	folder := filepath.Join(mb.key.maildir, mb.key.dir)
	return filepath.Join(folder, "new"), filepath.Join(folder, "cur")
}

func (mb *Mailbox) UIDValidity() uint32 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.uidValidity
}

// Get returns a copy of the message with the given UID.
func (mb *Mailbox) Get(uid uint32) (Msg, bool) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	m := mb.findLocked(uid)
	if m == nil {
		return Msg{}, false
	}
	return *m, true
}

func (mb *Mailbox) findLocked(uid uint32) *Msg {
	i := sort.Search(len(mb.msgs), func(i int) bool { return mb.msgs[i].UID >= uid })
	if i < len(mb.msgs) && mb.msgs[i].UID == uid {
		return mb.msgs[i]
	}
	return nil
}

// Open opens a message file for reading.
func (mb *Mailbox) Open(uid uint32) (*os.File, Msg, error) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	fd, rel, err := mb.openMsgLocked(uid)
	if err != nil {
		return nil, Msg{}, err
	}
	msg := *mb.findLocked(uid)
	return os.NewFile(uintptr(fd), rel), msg, nil
}

func acquireUIDList(mb *Mailbox, uid, gid int) (*uidlist.Lock, error) {
	return uidlist.Acquire(mb.root, uidlist.FileName, lockWait, 0o600, uid, gid)
}

// UIDs returns all UIDs, ascending.
func (mb *Mailbox) UIDs() []uint32 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	out := make([]uint32, len(mb.msgs))
	for i, m := range mb.msgs {
		out[i] = m.UID
	}
	return out
}

package mailstore

import (
	"bytes"
	"fmt"
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

// heldStepLocked is a step of work done under the uidlist lock lk (nil:
// none held): lk is touched when uidlist.TouchInterval has passed, so that
// a long hold (thousands of renames on slow storage) is not taken for a
// dead one's and broken by another process meanwhile. A clock read
// otherwise.
func (mb *Mailbox) heldStepLocked(lk *uidlist.Lock) {
	lk.Touch(mb.reg.now())
	mb.reg.hook("held")
}

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

// pathLocked is the path of m's file inside the folder: its name in cur/
// carries the flags it has on disk, which lag behind m.Flags while its
// rename waits for the uidlist lock (see dirty), or none (see bare); a
// name another program gave otherwise is as it was found (see odd).
func (mb *Mailbox) pathLocked(m *Msg) string {
	if rel := mb.oddPathLocked(m.Base); rel != "" {
		return rel
	}
	if m.New {
		return "new/" + m.Base
	}
	if mb.isBareLocked(m) {
		return "cur/" + m.Base
	}
	return "cur/" + FileName(m.Base, mb.diskFlagsLocked(m))
}

// isBareLocked reports whether m's file in cur/ is named without an info
// part (see bare).
func (mb *Mailbox) isBareLocked(m *Msg) bool {
	if len(mb.bare) == 0 && len(mb.bareKept) == 0 {
		return false
	}
	_, ok := mb.bare[m.Base]
	if !ok {
		_, ok = mb.bareKept[m.Base]
	}
	return ok
}

// isKeptBareLocked reports whether base is a bare name whose rename was
// given up (see bareKept).
func (mb *Mailbox) isKeptBareLocked(base string) bool {
	if len(mb.bareKept) == 0 {
		return false
	}
	_, ok := mb.bareKept[base]
	return ok
}

// noteBareLocked records whether the file of base in cur/ is named
// without an info part.
func (mb *Mailbox) noteBareLocked(base string, bare bool) {
	if mb.isKeptBareLocked(base) {
		if !bare {
			delete(mb.bareKept, base)
		}
		return // still bare: kept so, not tried again
	}
	switch {
	case bare && mb.bare == nil:
		mb.bare = map[string]struct{}{base: {}}
	case bare:
		mb.bare[base] = struct{}{}
	case len(mb.bare) > 0:
		delete(mb.bare, base)
	}
}

// oddName is the path of the file named n, found in sub (new or cur),
// when it is not the one pathLocked derives from its base and flags fl:
// a new/ name with an info part (offlineimap writes ":2," there), or a
// cur/ info part other than ":2," and the flags' letters in ASCII order
// (letters out of order or twice, characters that are no flags, another
// info version: mutt, scripts, hand edits). "" for the usual names; a
// cur/ name without an info part is bare, not odd.
func oddName(sub, n, base string, fl Flags) string {
	switch {
	case n == base:
		return ""
	case sub == "new" || !fl.named(n[len(base)+1:]):
		return sub + "/" + n
	}
	return ""
}

// noteOddRenamedLocked records that base's file, odd, is now named to
// (with flags f): usual again, or odd still and kept so (its info holds
// more than flags, which a rename to the usual name would drop).
func (mb *Mailbox) noteOddRenamedLocked(base, to string, f Flags) {
	if to == "cur/"+FileName(base, f) {
		mb.noteOddLocked(base, "")
		return
	}
	mb.noteOddLocked(base, to)
	mb.odd[base] = oddFile{rel: to, kept: true}
}

// oddPathLocked is the path of base's file when its name is odd, else "".
func (mb *Mailbox) oddPathLocked(base string) string {
	if len(mb.odd) == 0 {
		return ""
	}
	return mb.odd[base].rel
}

// noteOddLocked records the path of base's file when its name is odd
// (rel, see oddName), or forgets it (rel "").
func (mb *Mailbox) noteOddLocked(base, rel string) {
	switch {
	case rel == "":
		if len(mb.odd) > 0 {
			delete(mb.odd, base)
		}
	case mb.odd == nil:
		mb.odd = map[string]oddFile{base: {rel: rel}}
	case mb.odd[base].rel != rel:
		mb.odd[base] = oddFile{rel: rel}
	}
}

// diskFlagsLocked is the flags in the name of m's file in cur/.
func (mb *Mailbox) diskFlagsLocked(m *Msg) Flags {
	if len(mb.dirty) > 0 {
		if fl, ok := mb.dirty[m]; ok {
			return fl
		}
	}
	return m.Flags
}

// oddFile is the path of a file with an odd name (see Mailbox.odd); kept:
// its rename to the usual name failed otherwise than by the file being
// gone, and is not tried again (see bareKept).
type oddFile struct {
	rel  string
	kept bool
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
			_, _, errno = unix.Syscall6(sysFstatat, uintptr(fd), uintptr(unsafe.Pointer(&b[0])),
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
	timer     *time.Timer // the pending settle or end of keeping; guarded by reg.mu
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
	listDirty   bool // a new UIDVALIDITY, or a record to drop, not written to dovecot-uidlist yet
	listRecords int  // records in the file, gone messages' included
	// validityUnsaved: the UIDVALIDITY was made here (no uidlist, or a
	// broken one) and is not in the file yet. noRoomErr: the last sync
	// left files without a UID for want of room, with that error (see
	// ErrNoRoomToOpen).
	validityUnsaved bool
	noRoomErr       error
	// listed (pending) and stale hold the records of the file that are
	// no message here, by base name (see records.go); staleKnown: stale
	// has them all (not after a load from courriel-state, which keeps
	// none: the next numbering reads the file first).
	listed     map[string]uidlist.Record
	stale      map[string]uint32
	staleKnown bool
	// dirty holds the messages whose flags changed for sessions while
	// another process held the uidlist lock past lockWait, with the
	// flags their files' names still carry: renamed once the lock is
	// had (flushDirtyLocked: tried at every sync, and at the last
	// release waiting lockWait), as Dovecot renames the files of its
	// flag changes at a later sync when its lock timed out. What waits
	// is in PendingFlagsFileName from before the command that deferred
	// it is answered until its rename is made (pendingStale), and what
	// still waits when the folder closes, or when courriel crashed, is
	// made again by the next open (Dovecot keeps it in its index);
	// courriel-state is not written meanwhile.
	dirty map[*Msg]Flags
	// bare holds the base names of files in cur/ named without an info
	// part (another program's doing), which a listing found without the
	// uidlist lock: pathLocked gives their names as they are, and they
	// are given the empty ":2," under the lock, when it is next had
	// (flushDirtyLocked), not by the listing: Dovecot renames in cur/
	// only under its lock, and its listings under it trust that nobody
	// else does. Nil while there are none.
	bare map[string]struct{}
	// bareKept holds the names of bare whose rename failed otherwise
	// than by the file being gone (a file or folder we may not rename):
	// they keep their names, as Dovecot keeps them until the message's
	// flags change, and are not tried again, or every sync would take
	// the lock for them, and the folder's state (courriel-state, a kept
	// folder) would never be saved. Logged once. Nil while there are
	// none.
	bareKept map[string]struct{}
	// odd holds the files whose names are not the ones pathLocked would
	// give them (see oddName), by base: pathLocked gives them as they
	// are. Those in cur/ are given their usual names under the uidlist
	// lock, as bare ones (flushDirtyLocked), those in new/ by the move to
	// cur/; until then courriel-state is not written. Nil while there are
	// none.
	odd map[string]oddFile
	// unsplit holds the bases whose second name the last listing of
	// both directories under the lock left as it is (one file's two
	// links, which Dovecot leaves too; a rename that failed): a
	// listing without the lock does not count them as names to settle,
	// or each change of the folder would take the lock and list it
	// again. The next full listing under the lock looks at them again.
	unsplit map[string]struct{}
	// pendingFile: PendingFlagsFileName exists, as this folder wrote or
	// found it (removed when nothing waits any more). pendingStale: dirty
	// changed since the file was last written (or found at the open), so
	// the file must be written again (see recordPendingLocked); only ever
	// set while renames wait, so a folder whose renames are made at once
	// writes nothing more.
	pendingFile  bool
	pendingStale bool
	// listRead: the folder has its messages, from the uidlist's first
	// read (which adopts its records) or from courriel-state.
	listRead bool

	loaded    bool      // load() is done
	gen       uint64    // counts invalidations
	listings  uint64    // directory listings, for tests
	trustedAt time.Time // first stamps set by Delivered since the last listing

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
	// cachePayload is the payload of courriel-index as read, which the
	// strings of the entries decoded from it are slices of (held as long
	// as one of them is); for the memory estimate (memsize.go).
	cachePayload string
	cacheLoaded  bool
	cacheDirty   bool

	curDir, newDir *os.File // opened on first use; see dirfd.go
	folderDir      *os.File // the folder's own, for statLocked; opened on first use
	nameBuf        []byte   // renameFlagsLocked's names

	savedState stateSummary // as courriel-state has it; see state.go

	mod modState // modseqs (CONDSTORE, QRESYNC); see modseq.go

	// extra holds the keywords of messages beyond the 26 letters, by
	// base name (see ExtraKeywordsFileName); extraNames the distinct
	// ones by lower-case name, extraOrder them as first given (FLAGS).
	// extraStale: the file lags behind extra (entries of messages gone),
	// written by flushExtraLocked. Nil while there are none.
	// extraBroken: the file could not be read (unreadable, oversize,
	// malformed) and is kept as it is: no change to keywords beyond
	// the letters is made in the folder (errExtraUnusable) until it is
	// read again. extraDirty: the base names whose keywords changed
	// here since the file was last read or written, each with the
	// keywords it had then, merged with another process's changes when
	// the file is written (see saveExtraLocked); extraGone those of
	// messages gone, whose entries the write drops. extraSt is the
	// file's stamp as this process last read or wrote it (stamp{}: no
	// file), which a sync compares with the file's to read another
	// process's changes (see refreshExtraLocked).
	extra       map[string]*extraKw
	extraNames  map[string]*extraName
	extraOrder  []string
	extraStale  bool
	extraBroken bool
	extraDirty  map[string][]string
	extraGone   map[string]bool
	extraSt     stamp
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
		if mb.validityUnsaved && mb.noRoomErr != nil {
			// Shown now, the folder would be empty under a UIDVALIDITY
			// that is not kept: refused until there is room, nothing
			// written (see ErrNoRoomToOpen).
			return fmt.Errorf("%w: %w", ErrNoRoomToOpen, mb.noRoomErr)
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
	mb.loadExtraLocked()
	mb.loadPendingLocked()
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
	s := Status{UIDValidity: mb.uidValidity, UIDNext: mb.uidNextLocked(), Messages: uint32(len(mb.msgs)), HighestModSeq: mb.mod.highest}
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

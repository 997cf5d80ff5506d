package mailstore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"courriel/imap/uidlist"
)

// Registry shares one Mailbox per folder among all sessions of a server, so
// that they see each other's changes. The server owns one; there is no
// package-level state.
type Registry struct {
	mu    sync.Mutex
	boxes map[regKey]*Mailbox // guarded by mu

	host    string // sanitised host name for unique file names
	counter atomic.Uint64

	// closing: SaveAll ran (the server is closing); no folder lingers
	// after its release any more. settling counts the lingering folders
	// being settled, which SaveAll waits for. Guarded by mu.
	closing  bool
	settling sync.WaitGroup
	// lingerMin is the least number of messages for which a folder
	// lingers after its release (see Release); 0: lingerMinMessages.
	lingerMin int

	// kept are the folders kept loaded after their last release (see
	// keepLocked), oldest first, keptBytes what they hold in memory by
	// estimate. keepFor and keepBudget: tests (0: keepDuration,
	// keepMemoryBudget). Guarded by mu.
	kept       []*Mailbox
	keptBytes  int64
	keepFor    time.Duration
	keepBudget int64

	noHardLinks bool // tests: COPY as on a file system without hard links
	// flagLockWait, tests: how long a flag change waits for another
	// process's uidlist lock before it defers its renames, and the
	// folder's close for it before it keeps them for the next open (0:
	// lockWait).
	flagLockWait time.Duration
	// extraLockWait, tests: how long a write of ExtraKeywordsFileName
	// waits for its dotlock (0: lockWait).
	extraLockWait time.Duration
	// Tests: stamps kept in whole units of stampGrain (a file system with
	// coarse times), and the clock that says when a stamp was taken.
	stampGrain time.Duration
	clock      func() time.Time
	// syncHook, tests: called where a step of another program may fall
	// between two of ours in a sync or a write (see hook).
	syncHook func(event string)
	// bareFault, tests: the error of the rename giving bare name base its
	// ':2,' (see bareKept), returned instead of renaming when not nil.
	bareFault func(base string) error

	// Logger receives what a folder cannot do and goes on without (a
	// file it may not rename); nil: slog.Default().
	Logger *slog.Logger
}

func (r *Registry) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// hook tells a test that a sync or a write reached event: "uidlist read"
// (without the lock), "listed new", "listed cur", "lock" (about to take
// the uidlist lock), "flag lock wait" (a flag change waits for another
// process's lock), "flush lock wait" (renames that waited for the lock
// wait for it, at a release).
func (r *Registry) hook(event string) {
	if r.syncHook != nil {
		r.syncHook(event)
	}
}

// flagWait is how long a flag change, and a close with renames that wait,
// waits for another process's uidlist lock (see flagLockWait).
func (r *Registry) flagWait() time.Duration {
	if r.flagLockWait > 0 {
		return r.flagLockWait
	}
	return lockWait
}

func (r *Registry) now() time.Time {
	if r.clock != nil {
		return r.clock()
	}
	return time.Now()
}

type regKey struct{ maildir, dir string }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	h, _ := os.Hostname()
	if h == "" {
		h = "localhost"
	}
	// Maildir spec: '/' and ':' in the host name are written as octal escapes.
	h = strings.ReplaceAll(h, "/", `\057`)
	h = strings.ReplaceAll(h, ":", `\072`)
	h = strings.ReplaceAll(h, ",", `\054`)
	return &Registry{boxes: make(map[regKey]*Mailbox), host: h}
}

// uniqueBase returns a new maildir base name, Dovecot style:
// <secs>.M<usecs>P<pid>Q<n>.<host>.
func (r *Registry) uniqueBase() string {
	now := time.Now()
	n := r.counter.Add(1)
	return strconv.FormatInt(now.Unix(), 10) + ".M" + strconv.Itoa(now.Nanosecond()/1000) +
		"P" + strconv.Itoa(os.Getpid()) + "Q" + strconv.FormatUint(n, 10) + "." + r.host
}

// Open returns the shared Mailbox of folder name in store, loading it on
// first use. Release must be called when done.
func (r *Registry) Open(store *Store, name string) (*Mailbox, error) {
	dir, err := FolderDir(name)
	if err != nil {
		return nil, err
	}
	if !store.Exists(name) {
		return nil, ErrNoFolder
	}
	key := regKey{store.path, dir}
	r.mu.Lock()
	defer r.mu.Unlock()
	if mb, ok := r.boxes[key]; ok {
		if !mb.kept || r.reviveLocked(mb, store, dir) {
			mb.refs++
			return mb, nil
		}
		// Changed while kept: loaded afresh, as any folder nobody has
		// open.
	}
	d := dir
	if d == "" {
		d = "."
	} else if err := store.completeFolder(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNoFolder // deleted or renamed meanwhile
		}
		return nil, err
	}
	root, err := store.root.OpenRoot(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoFolder
	}
	if err != nil {
		return nil, fmt.Errorf("mailstore: open folder: %w", err)
	}
	mroot, err := store.root.OpenRoot(".")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("mailstore: open maildir: %w", err)
	}
	mb := &Mailbox{reg: r, key: key, refs: 1, root: root, mroot: mroot, owner: store.owner, user: store.user}
	if err := mb.load(); err != nil {
		mb.closeDirsLocked()
		root.Close()
		mroot.Close()
		return nil, err
	}
	r.boxes[key] = mb
	return mb, nil
}

// Lookup returns the loaded Mailbox of folder dir ("" = INBOX) of the maildir,
// or nil; it takes no reference and is meant for notifications. A folder
// kept after its last release (see keepLocked) is not given: nobody has
// it open, and its next open finds what changed on disk.
func (r *Registry) Lookup(maildir, dir string) *Mailbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	if mb := r.boxes[regKey{maildir, dir}]; mb != nil && !mb.kept {
		return mb
	}
	return nil
}

// Forget detaches the mailbox of a deleted or renamed folder (with
// children, those of its children too: a RENAME moves them; a DELETE
// leaves them) so that the next Open reads the new state from disk. A
// detached mailbox writes nothing more into its directory (see
// lockLocked): its sessions are told it is gone, and a deleted folder's
// files are being removed (Store.Trash). Forget waits for what a session
// is doing in the folder meanwhile (its lock).
func (r *Registry) Forget(maildir, dir string, children bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, mb := range r.boxes {
		if k.maildir == maildir && (k.dir == dir || children && strings.HasPrefix(k.dir, dir+".")) {
			if mb.kept {
				r.dropKeptLocked(mb)
				continue
			}
			delete(r.boxes, k)
			mb.mu.Lock()
			mb.detached = true
			mb.mu.Unlock()
		}
	}
}

// Detached reports whether the folder was deleted or renamed since it was
// opened (Forget): it changes nothing any more.
func (mb *Mailbox) Detached() bool {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.detached
}

// lingerMinMessages is the size from which a folder lingers after its
// last release (see Release): below it, listing cur/ at the next open
// costs little.
const lingerMinMessages = 1000

// Release drops a reference taken by Open; the last one saves the cache and
// the folder's state and closes the folder. The folder stays registered
// while it is saved, so that a session opening it meanwhile shares it
// rather than loading it from files half written.
//
// A large folder whose directories changed too recently for their stamps
// to be settled (see settled in state.go; typically a session that
// changed flags or expunged, then logged out) stays open a little longer:
// once the stamps have settled, a listing confirms them and courriel-state
// is written again with settled stamps, so that the next open reads that
// file alone rather than listing cur/ (100,000 names) itself. The same
// goes for the stamps of dovecot-uidlist and courriel-modseq, confirmed by
// a read of each, so that the next open need not read them. A session
// opening the folder meanwhile shares it, as any open folder.
func (mb *Mailbox) Release() { mb.release(false) }

// release is Release; settling says it ends a lingering (see settle): the
// folder may be kept then, but lingers no more.
func (mb *Mailbox) release(settling bool) {
	r := mb.reg
	r.mu.Lock()
	mb.refs--
	last := mb.refs == 0
	r.mu.Unlock()
	if !last {
		return
	}
	var wait time.Duration
	var keepable bool
	var size, cacheSize int64
	mb.mu.Lock()
	if !mb.closed {
		// Renames still waiting for the lock: made now if it comes
		// within the wait, else kept for the next open (see
		// PendingFlagsFileName). Bare names alone are not waited for:
		// a name without ':2,' is as good a name (Dovecot renames it
		// only when the message's flags change), and the wait would
		// hold mb.mu, a new SELECT of the folder with it, for up to
		// lockWait.
		var flushWait time.Duration
		if len(mb.dirty) > 0 {
			flushWait = r.flagWait()
		}
		mb.tryFlushDirtyLocked(flushWait)
		mb.savePendingLocked()
		wait = mb.confirmLocked()
		mb.saveCacheLocked()
		mb.closeModLocked()
		wait = max(wait, mb.confirmFilesLocked())
		if len(mb.msgs) < r.lingerMinLocked() {
			wait = 0
		}
		mb.saveStateLocked()
		if keepable = wait == 0 && len(mb.msgs) >= r.lingerMinLocked() && mb.keepableLocked(); keepable {
			size = mb.memSizeLocked()
			cacheSize = mb.cacheSizeLocked(keepMemoryBudget)
		}
	}
	mb.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if mb.refs > 0 {
		return // opened again while it was saved: it lives on
	}
	if !r.closing && r.boxes[mb.key] == mb {
		switch {
		case wait > 0 && !settling:
			mb.stopTimerLocked()
			gen := mb.lingerGen
			mb.timer = time.AfterFunc(wait, func() { mb.settle(gen) })
			return
		case keepable && r.keepLocked(mb, size, cacheSize):
			return
		}
	}
	mb.stopTimerLocked() // a pending settle has nothing left to do
	if r.boxes[mb.key] == mb {
		delete(r.boxes, mb.key)
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.closeLocked()
}

// closeLocked closes the folder's files and lets go of its memory: a
// closed folder may stay referenced a while (a notification that looked it
// up), and must not hold a large folder's messages and cache meanwhile.
func (mb *Mailbox) closeLocked() {
	if !mb.closed {
		mb.closeDirsLocked()
		mb.root.Close()
		mb.mroot.Close()
		mb.closed = true
		mb.msgs, mb.byBase, mb.ext, mb.log = nil, nil, nil, nil
		mb.cache, mb.cachePending, mb.cachePayload, mb.cacheLoaded = nil, nil, "", false
		mb.listed, mb.stale, mb.dirty, mb.bare, mb.bareKept, mb.odd = nil, nil, nil, nil, nil, nil
		mb.mod = modState{}
	}
}

// stopTimerLocked ends what a pending settle or end of keeping would do
// (lingerGen), and lets its timer go: a timer that is left to fire holds
// the folder, its messages and cache, until it does (two minutes for a
// kept folder), long after the folder was dropped. Guarded by reg.mu.
func (mb *Mailbox) stopTimerLocked() {
	mb.lingerGen++
	if mb.timer != nil {
		mb.timer.Stop()
		mb.timer = nil
	}
}

func (r *Registry) lingerMinLocked() int {
	if r.lingerMin > 0 {
		return r.lingerMin
	}
	return lingerMinMessages
}

// settle ends a folder's lingering (see Release): unless a session opened
// it meanwhile (its own release settles it), the stamps are confirmed,
// courriel-state written, and the folder closed.
func (mb *Mailbox) settle(gen uint64) {
	r := mb.reg
	r.mu.Lock()
	if mb.refs > 0 || mb.lingerGen != gen || r.closing {
		r.mu.Unlock()
		return
	}
	mb.refs++
	r.settling.Add(1)
	r.mu.Unlock()
	defer r.settling.Done()
	mb.release(true)
}

// How long a large folder stays loaded after its last session ends, and
// how much memory (by memSizeLocked's estimate) such folders may hold in
// all. A client that comes back (a phone reconnecting, a desktop client's
// next check, the second session of an office's clients) then finds its
// folder loaded: opening it costs a few stats rather than reading
// courriel-state (4.6 MB for 100,000 messages) and decoding it again.
const (
	keepDuration     = 2 * time.Minute
	keepMemoryBudget = 64 << 20
)

// keepLocked keeps a released folder loaded (in the registry, nobody
// holding it) for keepDuration, within the memory budget, the oldest
// folders kept going first; it reports false when the folder alone is
// over the budget. Its next open checks it first (reviveLocked). size is
// the folder's memory without its metadata cache, cacheSize the cache's
// (cacheSizeLocked).
//
// The cache is kept with the folder when the budget has room for it
// beside the folders already kept: the next session's FETCH ENVELOPE or
// BODYSTRUCTURE then reads memory (measured on 20,000 messages: 0.03 s of
// server CPU instead of 0.12 s reading and decoding courriel-index).
// Otherwise it goes, rather than another folder: it reads back from
// courriel-index when needed, while an evicted folder is loaded whole.
func (r *Registry) keepLocked(mb *Mailbox, size, cacheSize int64) bool {
	budget := r.keepBudget
	if budget == 0 {
		budget = keepMemoryBudget
	}
	if size > budget {
		return false
	}
	if r.keptBytes+size+cacheSize <= budget {
		size += cacheSize
	} else {
		mb.mu.Lock() // nobody holds the folder: r.mu keeps Open out
		mb.cache, mb.cachePending, mb.cachePayload, mb.cacheLoaded = nil, nil, "", false
		mb.mu.Unlock()
	}
	for len(r.kept) > 0 && r.keptBytes+size > budget {
		r.dropKeptLocked(r.kept[0])
	}
	mb.kept, mb.keptSize = true, size
	r.kept = append(r.kept, mb)
	r.keptBytes += size
	mb.stopTimerLocked()
	gen := mb.lingerGen
	d := r.keepFor
	if d == 0 {
		d = keepDuration
	}
	mb.timer = time.AfterFunc(d, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if mb.kept && mb.lingerGen == gen {
			r.dropKeptLocked(mb)
		}
	})
	return true
}

// KeptFolders is the number of folders kept loaded after their last
// release, and their memory by estimate (tests, figures).
func (r *Registry) KeptFolders() (n int, bytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.kept), r.keptBytes
}

// unkeepLocked takes mb out of the kept folders, if it is one.
func (r *Registry) unkeepLocked(mb *Mailbox) {
	if !mb.kept {
		return
	}
	mb.kept = false
	r.keptBytes -= mb.keptSize
	mb.keptSize = 0
	for i, k := range r.kept {
		if k == mb {
			r.kept = append(r.kept[:i], r.kept[i+1:]...)
			break
		}
	}
}

// dropKeptLocked closes a kept folder and forgets it. Nothing is written:
// courriel-state and the index had everything when it was kept, and
// nothing changed it since.
func (r *Registry) dropKeptLocked(mb *Mailbox) {
	r.unkeepLocked(mb)
	mb.stopTimerLocked()
	if r.boxes[mb.key] == mb {
		delete(r.boxes, mb.key)
	}
	mb.mu.Lock()
	mb.closeLocked()
	mb.mu.Unlock()
}

// keepableLocked reports whether the folder, being released, may be kept
// loaded: its memory is what a load from courriel-state would give, and
// the stamps that reviveLocked compares are settled, so that an unchanged
// stamp means unchanged files. That is what loadStateLocked trusts to read
// courriel-state alone: the folder written to it, dovecot-uidlist and
// courriel-modseq verified under their stamps, new/ and cur/ listed after
// their last change with no message left in new/.
func (mb *Mailbox) keepableLocked() bool {
	if mb.detached || !mb.loaded || mb.cacheDirty || mb.recentDirty || !mb.trustedAt.IsZero() || len(mb.listed) > 0 || len(mb.dirty) > 0 || len(mb.bare) > 0 || len(mb.odd) > 0 {
		return false
	}
	if mb.savedState != mb.stateSummaryLocked() || !mb.listVerLocked().sure() || !mb.modVerLocked().sure() {
		return false
	}
	if !settled(mb.newSt, mb.newAt) || !settled(mb.curSt, mb.curAt) {
		return false
	}
	return !mb.hasNewLocked()
}

// reviveLocked takes a kept folder back for a session when nothing of it
// changed on disk since it was kept, as loadStateLocked would find it:
// the folder and the maildir still the directories at their paths, the
// same stamps for dovecot-uidlist, courriel-modseq, dovecot-keywords,
// new/ and cur/. Otherwise the folder is closed (false), for the caller
// to load it afresh.
func (r *Registry) reviveLocked(mb *Mailbox, store *Store, dir string) bool {
	r.unkeepLocked(mb)
	mb.stopTimerLocked() // the end of the keeping has nothing left to do
	mb.mu.Lock()
	ok := mb.unchangedLocked(store, dir)
	mb.mu.Unlock()
	if !ok {
		r.dropKeptLocked(mb)
	}
	return ok
}

func (mb *Mailbox) unchangedLocked(store *Store, dir string) bool {
	if mb.closed || mb.detached {
		return false
	}
	if dir == "" {
		dir = "."
	}
	sameDir := func(root *os.Root, path string) bool {
		a, err := root.Stat(".")
		if err != nil {
			return false
		}
		b, err := store.root.Lstat(path)
		return err == nil && b.IsDir() && os.SameFile(a, b)
	}
	if !sameDir(mb.mroot, ".") || !sameDir(mb.root, dir) {
		return false // the home was moved, restored, replaced
	}
	ms := &mb.mod
	if st := mb.statLocked(uidlist.FileName); st != mb.listSt || st != mb.listVer.st {
		return false
	}
	if mb.statLocked(ModSeqFileName) != ms.ver.st {
		return false
	}
	if mb.statLocked(uidlist.KeywordsFileName) != mb.kwStamp {
		return false
	}
	return mb.statLocked("new") == mb.newSt && mb.statLocked("cur") == mb.curSt
}

// SaveAll writes the cache of every loaded mailbox (at shutdown).
func (r *Registry) SaveAll() {
	r.mu.Lock()
	r.closing = true // no folder lingers from now on
	r.mu.Unlock()
	r.settling.Wait()
	r.mu.Lock()
	boxes := make([]*Mailbox, 0, len(r.boxes))
	var lingering []*Mailbox
	for k, mb := range r.boxes {
		if mb.refs == 0 {
			// Lingering after its release: closed now, so that
			// nothing writes into the maildir later.
			r.unkeepLocked(mb)
			mb.stopTimerLocked()
			delete(r.boxes, k)
			lingering = append(lingering, mb)
			continue
		}
		boxes = append(boxes, mb)
	}
	r.mu.Unlock()
	for _, mb := range lingering {
		mb.closeIdle()
	}
	for _, mb := range boxes {
		mb.mu.Lock()
		if !mb.closed {
			mb.saveCacheLocked()
			mb.flushModLocked()
			mb.saveStateLocked()
			mb.savePendingLocked()
		}
		mb.mu.Unlock()
	}
}

// closeIdle closes a folder nobody has open any more, taken out of the
// registry (lingering, or kept): saved at its release, unless that release
// is still under way: then here (nothing is written twice).
func (mb *Mailbox) closeIdle() {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if !mb.closed {
		mb.saveCacheLocked()
		mb.closeModLocked()
		mb.saveStateLocked()
		mb.savePendingLocked()
		mb.closeLocked()
	}
}

// DropUser closes the folders of login's maildir that nobody has open
// (lingering or kept after their last release), at once: the user's home
// is being set aside (moved to another node), and nothing of it may stay
// open or be written here. Call it once the user's sessions are closed.
func (r *Registry) DropUser(login string) {
	r.mu.Lock()
	var idle []*Mailbox
	for k, mb := range r.boxes {
		if mb.refs == 0 && mb.user == login {
			r.unkeepLocked(mb)
			mb.stopTimerLocked()
			delete(r.boxes, k)
			idle = append(idle, mb)
		}
	}
	r.mu.Unlock()
	for _, mb := range idle {
		mb.closeIdle()
	}
}

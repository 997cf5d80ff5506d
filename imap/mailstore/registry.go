package mailstore

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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

	noHardLinks bool // tests: COPY as on a file system without hard links
	// Tests: stamps kept in whole units of stampGrain (a file system with
	// coarse times), and the clock that says when a stamp was taken.
	stampGrain time.Duration
	clock      func() time.Time
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
		mb.refs++
		return mb, nil
	}
	d := dir
	if d == "" {
		d = "."
	}
	root, err := store.root.OpenRoot(d)
	if err != nil {
		return nil, fmt.Errorf("mailstore: open folder: %w", err)
	}
	mroot, err := store.root.OpenRoot(".")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("mailstore: open maildir: %w", err)
	}
	mb := &Mailbox{reg: r, key: key, refs: 1, root: root, mroot: mroot, owner: store.owner}
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
// or nil; it takes no reference and is meant for notifications.
func (r *Registry) Lookup(maildir, dir string) *Mailbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.boxes[regKey{maildir, dir}]
}

// Forget detaches the mailboxes of a deleted or renamed folder (and its
// children) so that the next Open reads the new state from disk.
func (r *Registry) Forget(maildir, dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, mb := range r.boxes {
		if k.maildir == maildir && (k.dir == dir || strings.HasPrefix(k.dir, dir+".")) {
			delete(r.boxes, k)
			mb.mu.Lock()
			mb.detached = true
			mb.mu.Unlock()
		}
	}
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
func (mb *Mailbox) Release() { mb.release(true) }

func (mb *Mailbox) release(mayLinger bool) {
	r := mb.reg
	r.mu.Lock()
	mb.refs--
	last := mb.refs == 0
	r.mu.Unlock()
	if !last {
		return
	}
	var wait time.Duration
	mb.mu.Lock()
	if !mb.closed {
		wait = mb.confirmLocked()
		mb.saveCacheLocked()
		mb.closeModLocked()
		wait = max(wait, mb.confirmFilesLocked())
		if len(mb.msgs) < r.lingerMinLocked() {
			wait = 0
		}
		mb.saveStateLocked()
	}
	mb.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if mb.refs > 0 {
		return // opened again while it was saved: it lives on
	}
	if wait > 0 && mayLinger && !r.closing && r.boxes[mb.key] == mb {
		mb.lingerGen++
		gen := mb.lingerGen
		time.AfterFunc(wait, func() { mb.settle(gen) })
		return
	}
	mb.lingerGen++ // a pending settle has nothing left to do
	if r.boxes[mb.key] == mb {
		delete(r.boxes, mb.key)
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if !mb.closed {
		mb.closeDirsLocked()
		mb.root.Close()
		mb.mroot.Close()
		mb.closed = true
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
	mb.release(false)
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
			mb.lingerGen++
			delete(r.boxes, k)
			lingering = append(lingering, mb)
			continue
		}
		boxes = append(boxes, mb)
	}
	r.mu.Unlock()
	for _, mb := range lingering {
		mb.mu.Lock()
		if !mb.closed {
			// Saved at its release, unless that release is still
			// under way: then here (nothing is written twice).
			mb.saveCacheLocked()
			mb.closeModLocked()
			mb.saveStateLocked()
			mb.closeDirsLocked()
			mb.root.Close()
			mb.mroot.Close()
			mb.closed = true
		}
		mb.mu.Unlock()
	}
	for _, mb := range boxes {
		mb.mu.Lock()
		if !mb.closed {
			mb.saveCacheLocked()
			mb.flushModLocked()
			mb.saveStateLocked()
		}
		mb.mu.Unlock()
	}
}

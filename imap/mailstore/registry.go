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

// Release drops a reference taken by Open; the last one saves the cache and
// the folder's state and closes the folder. The folder stays registered
// while it is saved, so that a session opening it meanwhile shares it
// rather than loading it from files half written.
func (mb *Mailbox) Release() {
	r := mb.reg
	r.mu.Lock()
	mb.refs--
	last := mb.refs == 0
	r.mu.Unlock()
	if !last {
		return
	}
	mb.mu.Lock()
	if !mb.closed {
		mb.confirmLocked()
		mb.saveCacheLocked()
		mb.closeModLocked()
		mb.saveStateLocked()
	}
	mb.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if mb.refs > 0 {
		return // opened again while it was saved: it lives on
	}
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

// SaveAll writes the cache of every loaded mailbox (at shutdown).
func (r *Registry) SaveAll() {
	r.mu.Lock()
	boxes := make([]*Mailbox, 0, len(r.boxes))
	for _, mb := range r.boxes {
		boxes = append(boxes, mb)
	}
	r.mu.Unlock()
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

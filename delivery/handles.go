package delivery

import (
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// An openMaildir is a maildir's Root and its new/ directory, opened once and
// shared by the deliveries into it for a short while: opening them costs
// about ten system calls (the base, each path component, two lstats, new/,
// an fstat for the group commit key), which was a tenth of the server's CPU
// per message when one maildir receives a stream.
type openMaildir struct {
	path    string   // the cache key: the maildir relative to the base, and the uid with Chown
	newPath string   // absolute path of new/, to check it still leads to newDir
	root    *os.Root // confined to the maildir; tmp/ is opened through it
	newDir  *os.File // new/, where copies are linked
	key     dirKey   // new/'s identity, for the group commit
	sync    SyncMode // how copies here are made durable (syncModeFor); never SyncAuto
	// exactMode: a file created in new/ with mode copyMode has that mode,
	// so a copy needs no chmod: the umask clears none of its bits and
	// new/ has no default ACL (which would stand in for the umask).
	exactMode bool

	refs    int  // deliveries using it; guarded by maildirCache.mu
	evicted bool // out of the cache: closed when refs drops to 0; guarded by maildirCache.mu
}

// current tells whether a fresh open would find the same maildir, for two
// fstatat instead of about ten calls: the path still leads to the new/ we
// hold (not renamed, removed or replaced, whole maildir included) and tmp/
// is a directory, not a symlink. The first check follows symlinks on the
// way, but only compares identities: what we write to was opened confined.
func (md *openMaildir) current() bool {
	var st unix.Stat_t
	if err := unix.Fstatat(unix.AT_FDCWD, md.newPath, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
		st.Mode&unix.S_IFMT != unix.S_IFDIR || (dirKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}) != md.key {
		return false
	}
	fi, err := md.root.Lstat("tmp")
	return err == nil && fi.IsDir()
}

func (md *openMaildir) close() {
	md.newDir.Close()
	md.root.Close()
}

// maildirCache holds recently used maildirs open, at most max of them. Each
// use first checks that the maildir is still what a fresh open would give
// (openMaildir.current), and any failed delivery evicts it. The descriptors
// it holds cannot be redirected by a symlink planted later: every write goes
// through them.
type maildirCache struct {
	max int

	mu sync.Mutex
	m  map[string]*openMaildir // guarded by mu
}

// maildirCacheSize bounds the descriptors held: two per maildir.
const maildirCacheSize = 256

func newMaildirCache() *maildirCache {
	return &maildirCache{max: maildirCacheSize, m: make(map[string]*openMaildir)}
}

// get returns the cached maildir for path with a reference the caller must
// release, or nil.
func (c *maildirCache) get(path string) *openMaildir {
	c.mu.Lock()
	defer c.mu.Unlock()
	md := c.m[path]
	if md != nil {
		md.refs++
	}
	return md
}

// add caches md, which the caller holds a reference on, evicting any one
// entry when the cache is full (map order: close enough to random).
func (c *maildirCache) add(md *openMaildir) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[md.path]; old != nil {
		c.evictLocked(old)
	}
	for _, o := range c.m {
		if len(c.m) < c.max {
			break
		}
		c.evictLocked(o)
	}
	c.m[md.path] = md
}

// closeAll empties the cache; maildirs in use are closed when released.
func (c *maildirCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, md := range c.m {
		c.evictLocked(md)
	}
}

// evict takes md out of the cache (after an error through it); it is closed
// once its last user releases it.
func (c *maildirCache) evict(md *openMaildir) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evictLocked(md)
}

func (c *maildirCache) evictLocked(md *openMaildir) {
	if c.m[md.path] == md {
		delete(c.m, md.path)
	}
	if !md.evicted {
		md.evicted = true
		if md.refs == 0 {
			md.close()
		}
	}
}

func (c *maildirCache) release(md *openMaildir) {
	c.mu.Lock()
	defer c.mu.Unlock()
	md.refs--
	if md.refs == 0 && md.evicted {
		md.close()
	}
}

// acquireMaildir returns the recipient's open maildir, from the cache when
// it is still current, with a reference to release through s.maildirs.
func (s *Store) acquireMaildir(r *Recipient) (*openMaildir, *Error) {
	path, e := s.maildirRel(r.Maildir)
	if e != nil {
		return nil, e
	}
	if r.Folder != "" {
		if !validFolder(r.Folder) {
			return nil, badMaildir("invalid folder name", nil)
		}
		path += "/." + r.Folder
	}
	// Handles and the set of known maildirs are per path and uid: another
	// uid on the same path is checked afresh (usableBy).
	key := path
	if s.chown {
		key += "\x00" + strconv.Itoa(r.UID)
	}
	if md := s.maildirs.get(key); md != nil {
		if md.current() {
			return md, nil
		}
		s.maildirs.evict(md)
		s.maildirs.release(md)
	}
	if r.Folder != "" && r.NoCreate && s.folderMissing(path) {
		return nil, &Error{Reason: "folder does not exist", Err: ErrNoFolder}
	}
	mroot, e := s.openMaildir(path, key, r)
	if e != nil {
		return nil, e
	}
	// new/ is opened through the Root (O_NOFOLLOW: never a symlink), and
	// every step of a delivery works on it with a one-component name.
	newDir, err := mroot.OpenFile("new", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		mroot.Close()
		return nil, openError("cannot open maildir", err)
	}
	id, err := keyOf(newDir)
	if err != nil {
		newDir.Close()
		mroot.Close()
		return nil, openError("cannot open maildir", err)
	}
	md := &openMaildir{path: key, newPath: s.absolute(path) + "/new", root: mroot, newDir: newDir, key: id,
		sync: s.syncModeFor(newDir, id.dev), exactMode: s.umaskKeepsMode && !hasDefaultACL(newDir), refs: 1}
	s.maildirs.add(md)
	return md, nil
}

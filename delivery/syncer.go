package delivery

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// dirKey names a directory by identity, not by path: two paths to one
// directory share a syncer, and a path whose directory was replaced gets a
// new one (an fsync of the old inode would not cover a rename into the new).
type dirKey struct{ dev, ino uint64 }

func keyOf(f *os.File) (dirKey, error) {
	fi, err := f.Stat()
	if err != nil {
		return dirKey{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return dirKey{}, fmt.Errorf("stat %s: no device/inode", f.Name())
	}
	return dirKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// batch is one directory fsync and everyone waiting for it.
type batch struct {
	dir  *os.File      // a descriptor of the directory; owned by a member, open until done is closed
	done chan struct{} // closed once err is set
	err  error         // written before done is closed, read after
	n    int           // members; guarded by groupSyncer.mu while pending
}

// dirState is the group commit state of one directory.
type dirState struct {
	pending *batch // members that renamed before this batch's fsync starts; nil if none. guarded by groupSyncer.mu
	running bool   // a goroutine is running fsyncs for this directory. guarded by groupSyncer.mu
}

// groupSyncer shares directory fsyncs between concurrent deliveries into the
// same directory (group commit), or syncfs calls between copies written on
// one file system (SyncFilesystem). Invariant: a caller joins the pending
// batch only after its rename (or write) returned, and a batch stops accepting members (is
// taken off pending) before its fsync starts, so every member's rename
// precedes the fsync that acknowledges it. Nobody is released before the
// fsync of its own batch has completed. At most one fsync per directory runs
// at a time; while it runs, the next batch fills up.
type groupSyncer struct {
	sync func(*os.File) error // (*os.File).Sync; replaced in tests to inject failures

	mu   sync.Mutex
	dirs map[dirKey]*dirState // only directories with work in flight; guarded by mu
}

// newGroupSyncer shares calls of sync: (*os.File).Sync for directories, or
// syncfs keyed by device alone for file systems (syncmode.go).
func newGroupSyncer(sync func(*os.File) error) *groupSyncer {
	return &groupSyncer{sync: sync, dirs: make(map[dirKey]*dirState)}
}

// Sync returns once a sync of dir (whose identity is key, see keyOf) that
// started after the call has completed, and returns that sync's error. The first caller for an idle
// directory runs its fsync itself; later callers wait for the next batch,
// run by a goroutine until no batch is pending. dir must stay open until Sync
// returns.
func (g *groupSyncer) Sync(dir *os.File, key dirKey) error {
	g.mu.Lock()
	st := g.dirs[key]
	if st == nil {
		st = &dirState{}
		g.dirs[key] = st
	}
	b := st.pending
	if b == nil {
		b = &batch{dir: dir, done: make(chan struct{})}
		st.pending = b
	}
	b.n++
	if st.running {
		g.mu.Unlock()
		<-b.done
		return b.err
	}
	// Nobody is syncing this directory, so b is new and we are its only
	// member (pending != nil implies running): run its fsync ourselves,
	// sparing the uncontended case a goroutine hand-off.
	st.running = true
	st.pending = nil // b is closed to new members before its fsync starts
	g.mu.Unlock()
	b.err = g.sync(b.dir)
	close(b.done)
	g.mu.Lock()
	if st.pending != nil {
		// Others arrived during our fsync: a goroutine serves them, we
		// return now.
		g.mu.Unlock()
		go g.run(key, st)
	} else {
		st.running = false
		delete(g.dirs, key)
		g.mu.Unlock()
	}
	return b.err
}

// run fsyncs batch after batch for one directory until none is pending, then
// forgets the directory (so the map only holds busy directories).
func (g *groupSyncer) run(key dirKey, st *dirState) {
	for {
		g.mu.Lock()
		b := st.pending
		st.pending = nil // from here on, new callers form the next batch
		if b == nil {
			st.running = false
			delete(g.dirs, key)
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		b.err = g.sync(b.dir)
		close(b.done)
	}
}

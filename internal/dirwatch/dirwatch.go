package dirwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// What changes a maildir folder's new/ or cur/: a file linked or renamed
// in (delivery, flag change), renamed or unlinked out (new/ to cur/,
// expunge), and the directory itself going away.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_DONT_FOLLOW

// Watcher calls its changed function with the keys whose directories
// changed. Safe for concurrent use.
type Watcher[K comparable] struct {
	file    *os.File
	changed func([]K)
	done    chan struct{}

	mu   sync.Mutex
	wds  map[int32]map[K]bool // who each watch descriptor serves; guarded by mu
	keys map[K]*keyWatch      // guarded by mu
}

// keyWatch is one key's watches and how many holders it has.
type keyWatch struct {
	wds  []int32
	refs int
	lost bool // a watch of it is gone (its directory was removed or moved)
}

// New starts a watcher; changed runs on the watcher's goroutine, once per
// batch of events with each key once, and must not block for long.
func New[K comparable](changed func([]K)) (*Watcher[K], error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &Watcher[K]{
		file:    os.NewFile(uintptr(fd), "inotify"),
		changed: changed,
		done:    make(chan struct{}),
		wds:     map[int32]map[K]bool{},
		keys:    map[K]*keyWatch{},
	}
	go w.read()
	return w, nil
}

// Add watches dirs for key, or counts one more holder if key is watched
// already (dirs are then ignored). On error nothing is held: the caller
// polls instead.
func (w *Watcher[K]) Add(key K, dirs ...string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if kw := w.keys[key]; kw != nil {
		kw.refs++
		return nil
	}
	kw := &keyWatch{refs: 1}
	for _, dir := range dirs {
		var wd int
		err := w.control(func(fd int) (err error) {
			wd, err = unix.InotifyAddWatch(fd, dir, watchMask)
			return err
		})
		if err != nil {
			w.dropLocked(key, kw)
			return fmt.Errorf("inotify watch %s: %w", dir, err)
		}
		kw.wds = append(kw.wds, int32(wd))
		if w.wds[int32(wd)] == nil {
			w.wds[int32(wd)] = map[K]bool{}
		}
		w.wds[int32(wd)][key] = true
	}
	w.keys[key] = kw
	return nil
}

// Remove lets go of one holder of key; the last one removes its watches.
func (w *Watcher[K]) Remove(key K) {
	w.mu.Lock()
	defer w.mu.Unlock()
	kw := w.keys[key]
	if kw == nil {
		return
	}
	if kw.refs--; kw.refs > 0 {
		return
	}
	delete(w.keys, key)
	w.dropLocked(key, kw)
}

// dropLocked removes key from its watch descriptors, and the descriptors
// nobody else uses from the kernel.
func (w *Watcher[K]) dropLocked(key K, kw *keyWatch) {
	for _, wd := range kw.wds {
		users := w.wds[wd]
		delete(users, key)
		if len(users) == 0 {
			delete(w.wds, wd)
			// EINVAL: the kernel dropped it already (IN_IGNORED in flight).
			_ = w.control(func(fd int) error {
				_, err := unix.InotifyRmWatch(fd, uint32(wd))
				return err
			})
		}
	}
}

// control runs f on the inotify descriptor, unless the watcher is closed.
// (File.Fd would put the descriptor in blocking mode, and the reads would
// then hold a thread and not end at Close.)
func (w *Watcher[K]) control(f func(fd int) error) error {
	rc, err := w.file.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Watching reports whether every directory of key is still watched: false
// once one was removed or moved away, or if key was never added.
func (w *Watcher[K]) Watching(key K) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	kw := w.keys[key]
	return kw != nil && !kw.lost
}

// Close stops the watcher; changed is not called after it returns.
func (w *Watcher[K]) Close() error {
	err := w.file.Close()
	<-w.done
	return err
}

// read turns batches of inotify events into calls of changed.
func (w *Watcher[K]) read() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				// Nothing but a closed descriptor should end the reads; the
				// callers' polls still run.
				w.markAllLost()
			}
			return
		}
		if keys := w.keysOf(buf[:n]); len(keys) > 0 {
			w.changed(keys)
		}
	}
}

// keysOf returns the keys concerned by a buffer of events, each once.
func (w *Watcher[K]) keysOf(events []byte) []K {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[K]bool{}
	var keys []K
	add := func(k K) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for len(events) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(events[0:4]))
		mask := binary.NativeEndian.Uint32(events[4:8])
		nameLen := int(binary.NativeEndian.Uint32(events[12:16]))
		events = events[min(len(events), unix.SizeofInotifyEvent+nameLen):]
		if mask&unix.IN_Q_OVERFLOW != 0 {
			// Events were lost: everyone looks.
			for k := range w.keys {
				add(k)
			}
			continue
		}
		for k := range w.wds[wd] {
			add(k)
			if mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
				// The directory is gone or elsewhere: from now on only the
				// holder's poll sees it.
				w.keys[k].lost = true
			}
		}
		if mask&unix.IN_IGNORED != 0 {
			delete(w.wds, wd)
		}
	}
	return keys
}

func (w *Watcher[K]) markAllLost() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, kw := range w.keys {
		kw.lost = true
	}
}

// Local reports whether inotify sees every change of the file system
// holding path: true on the local disk file systems and tmpfs, false on
// network and FUSE file systems, where other machines' changes raise no
// event, and when path cannot be looked at.
func Local(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC,
		unix.F2FS_SUPER_MAGIC, zfsSuperMagic, unix.BCACHEFS_SUPER_MAGIC:
		return true
	}
	return false
}

// zfsSuperMagic is OpenZFS's f_type; x/sys does not name it.
const zfsSuperMagic = 0x2fc12fc1

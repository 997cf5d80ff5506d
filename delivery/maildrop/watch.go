package maildrop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watcher reports on C (a token, never more than one waiting) when an
// entry is made at the top of the maildrop (a new user's subdirectory) or
// a file is renamed into a subdirectory it was told of (AddUser), as
// Write does, so that the server picks it up at once. Its events are
// hints: the caller still lists the directories, and still looks from
// time to time without one (an event lost to an overflow, or a file
// written otherwise).
type Watcher struct {
	C    <-chan struct{}
	fd   int
	mu   sync.Mutex
	path string
	f    *os.File
	// wds: the watch of each uid's subdirectory, at most one: a user
	// who replaces theirs (moved away, made again) costs no watch more.
	wds map[uint32]int
}

// Watch starts a Watcher; it stops when ctx ends.
func (d *Dir) Watch(ctx context.Context) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("maildrop: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, d.path, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("maildrop: inotify %s: %w", d.path, err)
	}
	// Non-blocking: the runtime's poller waits for it, and Close ends a
	// Read in progress.
	f := os.NewFile(uintptr(fd), "inotify")
	ch := make(chan struct{}, 1)
	w := &Watcher{C: ch, fd: fd, path: d.path, f: f, wds: map[uint32]int{}}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer stop()
		defer f.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			w.forget(buf[:n])
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return w, nil
}

// AddUser watches the subdirectory of uid too: at each look, since one
// removed and made again is another directory (adding the same one again
// changes nothing). The watch of a subdirectory uid had before is
// removed: one watch per uid.
func (w *Watcher) AddUser(uid uint32) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	p := filepath.Join(w.path, strconv.FormatUint(uint64(uid), 10))
	var wd int
	err := withFd(w.f, func(fd int) error {
		var err error
		wd, err = unix.InotifyAddWatch(fd, p, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW)
		return err
	})
	if err != nil {
		return fmt.Errorf("maildrop: inotify %s: %w", p, err)
	}
	if old, ok := w.wds[uid]; ok && old != wd {
		w.rm(old)
	}
	w.wds[uid] = wd
	return nil
}

// Keep removes the watches of the uids not in users (their subdirectory
// gone, or no longer theirs): the watches are bounded by the
// subdirectories.
func (w *Watcher) Keep(users []uint32) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for uid, wd := range w.wds {
		if !slices.Contains(users, uid) {
			w.rm(wd)
			delete(w.wds, uid)
		}
	}
}

// rm removes the watch wd (gone already when its directory was: EINVAL).
func (w *Watcher) rm(wd int) {
	withFd(w.f, func(fd int) error {
		_, err := unix.InotifyRmWatch(fd, uint32(wd))
		return err
	})
}

// forget drops the uids whose watch the kernel removed (IN_IGNORED: the
// directory was removed), so that its number, if used again, is never
// taken for theirs.
func (w *Watcher) forget(buf []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(buf) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		if ev.Mask&unix.IN_IGNORED != 0 {
			for uid, wd := range w.wds {
				if wd == int(ev.Wd) {
					delete(w.wds, uid)
				}
			}
		}
		next := unix.SizeofInotifyEvent + int(ev.Len)
		if next > len(buf) {
			break
		}
		buf = buf[next:]
	}
}

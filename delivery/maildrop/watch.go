package maildrop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

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
	w := &Watcher{C: ch, fd: fd, path: d.path, f: f}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer stop()
		defer f.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
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
// changes nothing).
func (w *Watcher) AddUser(uid uint32) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	p := filepath.Join(w.path, strconv.FormatUint(uint64(uid), 10))
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		_, werr = unix.InotifyAddWatch(int(fd), p, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW)
	}); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("maildrop: inotify %s: %w", p, werr)
	}
	return nil
}

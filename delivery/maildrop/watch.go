package maildrop

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Watch reports on the returned channel (a token, never more than one
// waiting) when a file is renamed into the directory, as Write does, so
// that the server picks it up at once; it stops when ctx ends. Its events
// are hints: the caller still lists the directory, and still looks from
// time to time without one (an event lost to an overflow, or a file
// written otherwise).
func (d *Dir) Watch(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("maildrop: inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, d.path, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("maildrop: inotify %s: %w", d.path, err)
	}
	// Non-blocking: the runtime's poller waits for it, and Close ends a
	// Read in progress.
	f := os.NewFile(uintptr(fd), "inotify")
	ch := make(chan struct{}, 1)
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
	return ch, nil
}

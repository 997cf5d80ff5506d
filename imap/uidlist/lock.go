package uidlist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"time"
)

// StaleTimeout is when a dotlock left by a dead process is broken; Dovecot
// uses two minutes for dovecot-uidlist.lock (MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT).
const StaleTimeout = 2 * time.Minute

// ErrLocked is returned when another process holds the lock past the wait.
var ErrLocked = errors.New("uidlist: locked by another process")

// Lock is a Dovecot-style dotlock: "<file>.lock" created with O_EXCL. The new
// content is written into the lock file and renamed over the target, so the
// target is replaced atomically and the lock released in the same step.
type Lock struct {
	root   *os.Root
	target string
	f      *os.File
	done   bool
}

// Acquire takes the dotlock for target (a path inside root), waiting up to
// wait and breaking a lock older than StaleTimeout. perm is the mode of the
// new file; uid/gid >= 0 chown it.
func Acquire(root *os.Root, target string, wait time.Duration, perm fs.FileMode, uid, gid int) (*Lock, error) {
	lockName := target + ".lock"
	deadline := time.Now().Add(wait)
	delay := 5 * time.Millisecond
	for {
		f, err := root.OpenFile(lockName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			if uid >= 0 {
				_ = f.Chown(uid, gid) // best effort: same as the directory's owner
			}
			return &Lock{root: root, target: target, f: f}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("uidlist: create %s: %w", lockName, err)
		}
		if st, serr := root.Stat(lockName); serr == nil && time.Since(st.ModTime()) > StaleTimeout {
			_ = root.Remove(lockName)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path.Base(lockName))
		}
		time.Sleep(delay)
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// Commit writes data into the lock file, fsyncs it and renames it over the
// target, releasing the lock.
func (l *Lock) Commit(data []byte) error {
	if l.done {
		return errors.New("uidlist: lock already released")
	}
	l.done = true
	lockName := l.target + ".lock"
	_, err := l.f.Write(data)
	if err == nil {
		err = l.f.Sync()
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.root.Rename(lockName, l.target)
	}
	if err != nil {
		_ = l.root.Remove(lockName)
		return fmt.Errorf("uidlist: replace %s: %w", l.target, err)
	}
	return nil
}

// Release drops the lock without changing the target. It is a no-op after
// Commit.
func (l *Lock) Release() {
	if l.done {
		return
	}
	l.done = true
	l.f.Close()
	_ = l.root.Remove(l.target + ".lock")
}

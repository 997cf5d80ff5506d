package uidlist

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StaleTimeout is when a dotlock left by a dead process is broken; Dovecot
// uses two minutes for dovecot-uidlist.lock (MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT).
const StaleTimeout = 2 * time.Minute

// TouchInterval is how often a held lock's modification time is brought
// forward (Touch), so that a holder still at work (renames in a large
// folder on slow storage) is never taken for a dead one: Dovecot touches
// its dovecot-uidlist.lock every MAILDIR_LOCK_TOUCH_SECS (10 s) while it
// syncs, and breaks one untouched for StaleTimeout.
const TouchInterval = 10 * time.Second

// ErrLocked is returned when another process holds the lock past the wait.
var ErrLocked = errors.New("uidlist: locked by another process")

// ErrLockLost is returned by Commit when the lock file is no longer ours:
// another process took it for stale, removed it, and may hold its own.
var ErrLockLost = errors.New("uidlist: lock broken by another process")

// Lock is a Dovecot-style dotlock: "<file>.lock", made by a hard link so
// that it appears whole, already its owner's, holding "pid:host" as
// Dovecot's dotlocks do (file_write_pid), or nothing when that cannot be
// written (see createLock). The new content is written into the lock file
// and renamed over the target, so the target is replaced atomically and
// the lock released in the same step.
//
// What locks is the file's existence alone, for Dovecot as for us: its
// own dovecot-uidlist.lock is always empty (file_dotlock_open writes no
// pid), and its stale check reads a pid only to break the lock of a dead
// holder sooner, waiting for the stale timeout when there is none.
type Lock struct {
	root    *os.Root
	target  string
	f       *os.File
	fi      os.FileInfo // the lock file we made: its device and inode
	done    bool
	touched time.Time // when taken or last touched, by the caller's clock
}

// Acquire takes the dotlock for target (a path inside root), waiting up to
// wait. A lock whose "pid:host" names a process of this host that is gone
// (a server killed while it held it) is broken at once, as Dovecot breaks
// it; any other after StaleTimeout. perm is the mode of the new file;
// uid/gid >= 0 chown it.
func Acquire(root *os.Root, target string, wait time.Duration, perm fs.FileMode, uid, gid int) (*Lock, error) {
	lockName := target + ".lock"
	deadline := time.Now().Add(wait)
	delay := 5 * time.Millisecond
	for {
		f, err := createLock(root, lockName, perm, uid, gid)
		if err == nil {
			fi, serr := f.Stat()
			if serr != nil {
				f.Close()
				_ = root.Remove(lockName) // just made: ours
				return nil, fmt.Errorf("uidlist: stat %s: %w", lockName, serr)
			}
			return &Lock{root: root, target: target, f: f, fi: fi, touched: time.Now()}, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("uidlist: create %s: %w", lockName, err)
		}
		if st, serr := root.Stat(lockName); serr == nil && breakable(root, lockName, st) {
			// Removed only if it is still the lock judged stale, not one
			// another process made since.
			if now, nerr := root.Stat(lockName); nerr == nil && os.SameFile(st, now) {
				_ = root.Remove(lockName)
			}
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

// breakable reports whether the lock file lockName, whose stat is st, is
// left by a holder that is gone: untouched for StaleTimeout, or naming a
// dead process of this host.
func breakable(root *os.Root, lockName string, st fs.FileInfo) bool {
	return time.Since(st.ModTime()) > StaleTimeout || deadOwner(root, lockName)
}

// WaitFree waits, up to wait, until target's lock could be taken (no lock
// file, or one Acquire would break), without taking it: for a caller that
// must not wait while it holds something others need (a folder's mutex)
// and takes the lock afterwards, without waiting, once that is held
// again. It reports whether the lock looked free before the deadline.
func WaitFree(root *os.Root, target string, wait time.Duration) bool {
	lockName := target + ".lock"
	deadline := time.Now().Add(wait)
	delay := 5 * time.Millisecond
	for {
		st, err := root.Stat(lockName)
		if err != nil || breakable(root, lockName, st) {
			return true // gone (or unreadable: Acquire says why)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(delay, left))
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// createLock writes "pid:host" to a file of a unique name, gives it to its
// owner, and links it to lockName: fs.ErrExist when the lock is held. A
// lock that cannot hold "pid:host" is taken empty, as Dovecot's
// file_write_pid leaves it ("failed, leave it empty then"): the pid needs
// a data block, and on a full disk (ENOSPC, EDQUOT) a lock that needs
// none is what lets a user open a folder, read and expunge to make room.
// Only a holder that dies is then found out by StaleTimeout instead of at
// once.
func createLock(root *os.Root, lockName string, perm fs.FileMode, uid, gid int) (*os.File, error) {
	var r [6]byte
	rand.Read(r[:])
	tmp := lockName + ".tmp-" + hex.EncodeToString(r[:])
	f, err := root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	defer root.Remove(tmp) // the lock keeps the inode
	if uid >= 0 {
		_ = f.Chown(uid, gid) // best effort: same as the directory's owner
	}
	if _, err := f.WriteString(ownerTag()); err != nil {
		if terr := f.Truncate(0); terr != nil { // nothing of a partial write
			f.Close()
			return nil, err
		}
	}
	if err := root.Link(tmp, lockName); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ownerTag is what a held lock says of its holder, as Dovecot writes it.
func ownerTag() string {
	host, _ := os.Hostname()
	return strconv.Itoa(os.Getpid()) + ":" + host
}

// deadOwner reports whether the lock says it belongs to a process of this
// host that no longer exists. A lock whose content is anything else (one
// being committed, an older courriel's empty one, Dovecot's uidlist lock,
// which holds no pid) waits for StaleTimeout.
func deadOwner(root *os.Root, lockName string) bool {
	f, err := root.Open(lockName)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [256]byte
	n, _ := f.Read(b[:])
	pidStr, host, ok := strings.Cut(strings.TrimSpace(string(b[:n])), ":")
	if me, _ := os.Hostname(); !ok || host != me {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// Touch brings the lock file's modification time to now when TouchInterval
// has passed, by now (the caller's clock), since the lock was taken or
// last touched, as Dovecot's maildir_sync_notify does: otherwise it is a
// comparison, cheap enough for every step of a long loop. The time is set
// through the lock's own descriptor, so a lock of another process, made
// after ours was broken, is never kept alive by us. A nil or released
// lock is left alone.
func (l *Lock) Touch(now time.Time) {
	if l == nil || l.done || now.Sub(l.touched) < TouchInterval {
		return
	}
	l.touched = now
	// utimensat(fd, NULL, NULL, 0): both times to the current time, on
	// the file the descriptor is open on (futimens).
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, l.f.Fd(), 0, 0, 0, 0, 0)
		if errno != syscall.EINTR {
			break
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
	err := l.f.Truncate(0) // the "pid:host" goes
	if err == nil {
		_, err = l.f.WriteAt(data, 0)
	}
	if err == nil {
		err = l.f.Sync()
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !l.ours() {
		// Broken meanwhile: the name is another's lock, or nothing.
		// Renamed over the target, it would replace the file with
		// the other's empty lock, and let go of the other's lock.
		return fmt.Errorf("uidlist: replace %s: %w", l.target, ErrLockLost)
	}
	if err == nil {
		err = l.root.Rename(lockName, l.target)
	}
	if err != nil {
		if l.ours() {
			_ = l.root.Remove(lockName)
		}
		return fmt.Errorf("uidlist: replace %s: %w", l.target, err)
	}
	return nil
}

// Release drops the lock without changing the target. It is a no-op after
// Commit. The lock file is removed only while it is still the one we
// made: ours broken as stale by another process, the name may be that
// process's lock now, as Dovecot's file_dotlock_delete checks.
func (l *Lock) Release() {
	if l.done {
		return
	}
	l.done = true
	l.f.Close()
	if l.ours() {
		_ = l.root.Remove(l.target + ".lock")
	}
}

// ours reports whether the lock's name is still the file we made: the same
// device and inode (Dovecot's file_dotlock_delete and
// file_dotlock_is_locked compare those alone; its mtime, which Touch and
// other programs change, is no proof either way).
func (l *Lock) ours() bool {
	now, err := l.root.Lstat(l.target + ".lock")
	return err == nil && os.SameFile(l.fi, now)
}

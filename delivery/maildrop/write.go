package maildrop

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tmpPrefix starts the name of a file being written; the server reads
// only final names (validName) and removes a temporary one left by a
// writer that died (StaleAfter).
const tmpPrefix = ".tmp-"

// ErrUnsafeDir is wrapped by Write's refusal of a directory that would
// not keep the file to its writer and the server (see checkDir).
var ErrUnsafeDir = errors.New("maildrop: unsafe directory")

// newName is a final file name: the time (so that a listing sorts in
// arrival order), the writer's pid and 64 random bits (so that two
// writers never pick the same one).
func newName(now time.Time) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	return strconv.FormatInt(now.UnixNano(), 10) + "." + strconv.Itoa(os.Getpid()) + "." + hex.EncodeToString(r[:]), nil
}

// validName says whether name is one newName could have made: digits, a
// dot, digits, a dot and 16 lower-case hex digits. Nothing else in the
// directory is read.
func validName(name string) bool {
	parts := strings.Split(name, ".")
	if len(parts) != 3 || len(parts[0]) == 0 || len(parts[0]) > 20 || len(parts[1]) == 0 || len(parts[1]) > 10 || len(parts[2]) != 16 {
		return false
	}
	for _, p := range parts[:2] {
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	for i := 0; i < len(parts[2]); i++ {
		if c := parts[2][i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ErrFull is wrapped by Write's refusal when the writer's subdirectory
// already holds MaxPerUser entries.
var ErrFull = errors.New("maildrop: the user's subdirectory is full")

// Write leaves msg (CRLF lines, as the server would read it) with env in
// the writer's own subdirectory of the maildrop directory dir,
// dir/<euid>, and returns the file's name once the file and its name are
// durable: the file is fsynced before its rename and the subdirectory
// after it; when that last fsync fails the file is removed again and the
// error returned (the caller says the mail was not sent). dir must be
// the server's: a real directory (not a symlink), sticky, that others
// cannot list, owned by root or by the owner of the spool above it;
// anything else is ErrUnsafeDir and nothing is written. The subdirectory
// is made (UserMode) or reused when it is the writer's own (made UserMode
// again); another's, or anything but a directory, is ErrUnsafeDir too.
func Write(dir string, env *Envelope, msg []byte) (string, error) {
	head, err := env.marshal(len(msg))
	if err != nil {
		return "", err
	}
	if err := checkDir(dir); err != nil {
		return "", err
	}
	uid := os.Geteuid()
	sub := filepath.Join(dir, strconv.Itoa(uid))
	if err := os.Mkdir(sub, UserMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	d, err := os.OpenFile(sub, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrUnsafeDir, sub, err)
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != uid {
		return "", fmt.Errorf("%w: %s belongs to another user (the server removes it when it runs)", ErrUnsafeDir, sub)
	}
	if fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid|fs.ModeSetuid) != UserMode {
		if err := d.Chmod(UserMode); err != nil {
			return "", fmt.Errorf("maildrop: %w", err)
		}
	}
	if names, err := readNames(d, sub, MaxPerUser); err != nil {
		return "", err
	} else if len(names) >= MaxPerUser {
		return "", fmt.Errorf("%w: %s holds %d files waiting for the server", ErrFull, sub, len(names))
	}
	return writeIn(d, env, head, msg, -1, -1, time.Time{})
}

// writeIn writes the file in the open directory d: under a temporary
// name, fsynced, given to uid:gid and mtime when they are set (the
// server's Rewrite), renamed, and the directory fsynced.
func writeIn(d *os.File, env *Envelope, head, msg []byte, uid, gid int, mtime time.Time) (string, error) {
	var fd int
	var name, tmp string
	for try := 0; ; try++ {
		var err error
		if name, err = newName(time.Now()); err != nil {
			return "", fmt.Errorf("maildrop: file name: %w", err)
		}
		tmp = tmpPrefix + name
		err = withFd(d, func(dfd int) error {
			var err error
			fd, err = unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			return err
		})
		if errors.Is(err, unix.EEXIST) && try < 10 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("maildrop: %s: %w", d.Name(), err)
		}
		break
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.Name(), tmp))
	done := false
	defer func() {
		f.Close()
		if !done {
			withFd(d, func(dfd int) error { return unix.Unlinkat(dfd, tmp, 0) })
		}
	}()
	// The umask may only narrow 0600; a chmod makes sure of it, as the
	// file holds someone's mail.
	if err := f.Chmod(0o600); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	if _, err := f.Write(head); err != nil {
		return "", fmt.Errorf("maildrop: writing %s: %w", f.Name(), err)
	}
	if _, err := f.Write(msg); err != nil {
		return "", fmt.Errorf("maildrop: writing %s: %w", f.Name(), err)
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return "", fmt.Errorf("maildrop: %w", err)
		}
	}
	if !mtime.IsZero() {
		// Through the descriptor: the name is in the user's directory.
		tv := unix.NsecToTimeval(mtime.UnixNano())
		if err := unix.Futimes(fd, []unix.Timeval{tv, tv}); err != nil {
			return "", fmt.Errorf("maildrop: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("maildrop: fsync %s: %w", f.Name(), err)
	}
	// RENAME_NOREPLACE: a final name is never replaced (names are
	// unique; this makes sure).
	err := withFd(d, func(dfd int) error { return unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_NOREPLACE) })
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		err = withFd(d, func(dfd int) error { return unix.Renameat(dfd, tmp, dfd, name) })
	}
	if err != nil {
		return "", fmt.Errorf("maildrop: rename %s: %w", f.Name(), err)
	}
	done = true
	if err := syncDir(d); err != nil {
		// Not known to be durable: taken back, so that the caller's
		// "not sent" holds (the server may have read it meanwhile: at
		// least once, as ever).
		withFd(d, func(dfd int) error { return unix.Unlinkat(dfd, name, 0) })
		return "", fmt.Errorf("maildrop: fsync %s after the rename: %w", d.Name(), err)
	}
	return name, nil
}

// syncDir is d.Sync, replaceable by tests.
var syncDir = func(d *os.File) error { return d.Sync() }

// Rewrite replaces the file name of the subdirectory with one of the same
// owner and modification time holding env and msg (the pickup's rest of
// a message sent to part of its recipients), and returns the new name.
// The new file is durable before the old one is removed.
func (u *UserDir) Rewrite(old *File, env *Envelope, msg []byte) (string, error) {
	if u.d.corrupt == nil {
		return "", errors.New("maildrop: opened to read only")
	}
	head, err := env.marshal(len(msg))
	if err != nil {
		return "", err
	}
	name, err := writeIn(u.f, env, head, msg, int(old.UID), int(old.GID), old.Written)
	if err != nil {
		return "", err
	}
	return name, u.Remove(old.Name)
}

// checkDir refuses a maildrop directory that would not keep a file to its
// writer and the server: a symlink (the spool's entry would lead
// anywhere), a directory others may list (r for group or others) or may
// write without the sticky bit (they could remove or replace the file),
// or one owned by another user than root and the owner of the spool
// directory above it (its owner reads every file).
func checkDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("maildrop: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrUnsafeDir, dir)
	}
	perm := fi.Mode().Perm()
	if perm&0o044 != 0 {
		return fmt.Errorf("%w: %s may be listed by others (mode %v)", ErrUnsafeDir, dir, perm)
	}
	if perm&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%w: %s is writable by others without the sticky bit (mode %v)", ErrUnsafeDir, dir, perm)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%w: %s: no owner", ErrUnsafeDir, dir)
	}
	if st.Uid != 0 {
		pi, err := os.Stat(filepath.Dir(dir))
		if err != nil {
			return fmt.Errorf("maildrop: %w", err)
		}
		if pst, ok := pi.Sys().(*syscall.Stat_t); !ok || pst.Uid != st.Uid {
			return fmt.Errorf("%w: %s belongs to uid %d, neither root nor the spool's owner", ErrUnsafeDir, dir, st.Uid)
		}
	}
	return nil
}

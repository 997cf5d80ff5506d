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

// Write leaves msg (CRLF lines, as the server would read it) with env in
// the maildrop directory dir and returns the file's name once the file
// and its name are durable (see the package comment). dir must be the
// server's: a real directory (not a symlink), sticky, that others cannot
// list, owned by root or by the owner of the spool above it; anything
// else is ErrUnsafeDir and nothing is written.
func Write(dir string, env *Envelope, msg []byte) (string, error) {
	head, err := env.marshal(len(msg))
	if err != nil {
		return "", err
	}
	if err := checkDir(dir); err != nil {
		return "", err
	}
	var f *os.File
	var name, tmp string
	for try := 0; ; try++ {
		if name, err = newName(time.Now()); err != nil {
			return "", fmt.Errorf("maildrop: file name: %w", err)
		}
		tmp = filepath.Join(dir, tmpPrefix+name)
		// O_EXCL and O_NOFOLLOW: in a directory anyone writes, a name
		// someone made first (a symlink to a file of ours) is never
		// opened; another name is tried.
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, fs.ErrExist) && try < 10 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("maildrop: %w", err)
		}
		break
	}
	done := false
	defer func() {
		f.Close()
		if !done {
			os.Remove(tmp)
		}
	}()
	// The umask may only narrow 0600; a chmod makes sure of it, as the
	// file holds someone's mail.
	if err := f.Chmod(0o600); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	if _, err := f.Write(head); err != nil {
		return "", fmt.Errorf("maildrop: writing %s: %w", tmp, err)
	}
	if _, err := f.Write(msg); err != nil {
		return "", fmt.Errorf("maildrop: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("maildrop: fsync %s: %w", tmp, err)
	}
	final := filepath.Join(dir, name)
	// RENAME_NOREPLACE: a final name is never replaced, not even one of
	// our own (names are unique; this makes sure).
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without the flag: the name is random, and a
		// file of someone else's could not be replaced (sticky).
		err = os.Rename(tmp, final)
	}
	if err != nil {
		return "", fmt.Errorf("maildrop: rename %s: %w", tmp, err)
	}
	done = true
	if err := syncName(dir, f); err != nil {
		// The file is complete and named: the server may take it even
		// if this failed. Saying so is better than a second copy by a
		// caller that tries again.
		return name, fmt.Errorf("maildrop: %s written, its name not known to be durable: %w", name, err)
	}
	return name, nil
}

// syncName makes the rename durable: an fsync of the directory when the
// writer may open it (the server's user, root), else a syncfs of the file
// system through the file, since a 1733 directory cannot be opened by
// others and an fsync needs a descriptor.
func syncName(dir string, f *os.File) error {
	d, err := os.Open(dir)
	if err == nil {
		defer d.Close()
		return d.Sync()
	}
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	return serr
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

package mailstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"courriel/internal/unixperm"
)

// ErrSymlink refuses a maildir whose path below the configured base has a
// symbolic link: a user who may write their home could otherwise point
// ~/mailbox at another user's maildir, and the server (root) would follow.
var ErrSymlink = errors.New("mailstore: symbolic link in the maildir path")

// OpenStoreUnder opens the maildir at base/rel, base being the directory the
// administrator configured for maildirs (trusted, symlinks and all) and rel
// the user's part below it ("example.org/alice/Maildir"). No component of
// rel may be a symbolic link: the walk opens each with O_NOFOLLOW from the
// one before, and the os.Root the store then uses is checked to be the very
// directory the walk reached. Missing components are created, mode 0700 and
// owned by the user (with owner.Chown), as delivery creates them, and made
// durable in their parents.
func OpenStoreUnder(base, rel string, owner Owner) (*Store, error) {
	if !filepath.IsAbs(base) {
		return nil, fmt.Errorf("mailstore: maildir base %q is not absolute", base)
	}
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return nil, fmt.Errorf("mailstore: empty maildir path below %s", base)
	}
	comps := strings.Split(rel, "/")
	for _, c := range comps {
		if c == "" || c == "." || c == ".." || strings.IndexByte(c, 0) >= 0 {
			return nil, fmt.Errorf("mailstore: maildir path %q is not clean", rel)
		}
	}
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mailstore: open maildir base %s: %w", base, err)
	}
	for i, c := range comps {
		next, err := openOrMakeDir(fd, c, owner, i == len(comps)-1)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("mailstore: %s: %w", filepath.Join(base, strings.Join(comps[:i+1], "/")), err)
		}
		fd = next
	}
	defer unix.Close(fd)
	path := filepath.Join(base, rel)
	return openStoreAt(path, fd, owner)
}

// ErrNotUsable refuses a maildir path with a directory of another user
// that the owner's uid could not use (usableBy).
var ErrNotUsable = errors.New("mailstore: a directory of another user on the maildir path")

// openOrMakeDir opens the directory name in the directory dirfd, creating it
// when missing; a symbolic link or anything but a directory is refused, and
// so is one the owner may not use (leaf: the maildir itself).
func openOrMakeDir(dirfd int, name string, owner Owner, leaf bool) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	for range 2 {
		var fd int
		err := ignoringEINTR(func() (err error) { fd, err = unix.Openat(dirfd, name, flags, 0); return err })
		switch {
		case err == nil:
			if err := usableBy(fd, owner, leaf); err != nil {
				unix.Close(fd)
				return -1, err
			}
			return fd, nil
		case err == unix.ELOOP || err == unix.ENOTDIR:
			var st unix.Stat_t
			if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return -1, ErrSymlink
			}
			return -1, fmt.Errorf("not a directory: %w", err)
		case err != unix.ENOENT:
			return -1, err
		}
		err = unix.Mkdirat(dirfd, name, 0o700)
		if err == unix.EEXIST {
			continue // made meanwhile (by delivery): open what is there
		}
		if err != nil {
			return -1, fmt.Errorf("mkdir: %w", err)
		}
		if owner.Chown {
			if err := unix.Fchownat(dirfd, name, owner.UID, owner.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return -1, fmt.Errorf("chown: %w", err)
			}
		}
		// The umask must not narrow (or widen) the mode.
		if err := unix.Fchmodat(dirfd, name, 0o700, 0); err != nil {
			return -1, fmt.Errorf("chmod: %w", err)
		}
		if err := unix.Fsync(dirfd); err != nil {
			return -1, fmt.Errorf("fsync parent: %w", err)
		}
	}
	return -1, errors.New("directory keeps changing")
}

// usableBy refuses a directory of the maildir path that the owner's uid
// and gid could not use: searched, and the maildir itself written. Dovecot
// worked as the user and the kernel refused it there; courriel works as
// root, so it asks the same question, or an entry whose homeDirectory
// points into another user's home would read and rewrite that user's
// mail. Root's directories are the administrator's layout and trusted.
// Only with Chown: otherwise the kernel decides.
func usableBy(fd int, owner Owner, leaf bool) error {
	if !owner.Chown {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	access := uint32(unixperm.Execute)
	if leaf {
		access |= unixperm.Write
	}
	if !unixperm.UserMayUse(st.Uid, st.Gid, st.Mode, owner.UID, owner.GID, access) {
		return fmt.Errorf("%w: uid %d may not use it", ErrNotUsable, owner.UID)
	}
	return nil
}

// openStoreAt opens the os.Root of path and checks that it is the directory
// fd (reached without symlinks): a component swapped for a symlink between
// the walk and this open is caught here.
func openStoreAt(path string, fd int, owner Owner) (*Store, error) {
	if err := usableBy(fd, owner, true); err != nil {
		return nil, fmt.Errorf("mailstore: %s: %w", path, err)
	}
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, fmt.Errorf("mailstore: open maildir: %w", err)
	}
	var want, got unix.Stat_t
	f, err := root.Open(".")
	if err == nil {
		err = unix.Fstat(int(f.Fd()), &got)
		f.Close()
	}
	if err == nil {
		err = unix.Fstat(fd, &want)
	}
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("mailstore: open maildir: %w", err)
	}
	if want.Dev != got.Dev || want.Ino != got.Ino {
		root.Close()
		return nil, fmt.Errorf("%w: %s changed while it was opened", ErrSymlink, path)
	}
	s := &Store{path: path, root: root, owner: owner}
	if err := s.makeMaildir("."); err != nil {
		root.Close()
		return nil, err
	}
	return s, nil
}

package delivery

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// noSymlinkBelowBase refuses a maildir reached through a symlink anywhere
// below the allowed base, even one that stays inside it: the directory
// entry is the user's, and `~/mailbox -> ../victim/mailbox` would let one
// user have mail stored, as root, in another's maildir. mroot is the
// maildir as os.Root opened it (following such links); it is accepted only
// if it is the very directory a walk that follows no symlink reaches. The
// walk is one openat2 with RESOLVE_NO_SYMLINKS from the base (kernel ≥ 5.6),
// or, where that is missing, an lstat of each component.
func (s *Store) noSymlinkBelowBase(rel string, mroot *os.Root) *Error {
	var want unix.Stat_t
	switch err := s.statNoFollow(rel, &want); {
	case errors.Is(err, errSymlinkBelowBase):
		return badMaildir("maildir path has a symlink below the allowed base", nil)
	case err != nil:
		return openError("cannot open maildir", err)
	}
	fi, err := mroot.Stat(".")
	if err != nil {
		return openError("cannot open maildir", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || uint64(st.Dev) != uint64(want.Dev) || st.Ino != want.Ino {
		return badMaildir("maildir path has a symlink below the allowed base", nil)
	}
	return nil
}

var errSymlinkBelowBase = errors.New("symlink below the allowed base")

// statNoFollow stats base/rel without following any symlink on the way.
func (s *Store) statNoFollow(rel string, st *unix.Stat_t) error {
	base, err := os.OpenFile(s.base, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer base.Close()
	var fd int
	err = withFd(base, func(dfd int) error {
		var err error
		fd, err = ignoringEINTR(func() (int, error) {
			return unix.Openat2(dfd, rel, &unix.OpenHow{
				Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
			})
		})
		return err
	})
	switch {
	case err == nil:
		defer unix.Close(fd)
		return unix.Fstat(fd, st)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return errSymlinkBelowBase
	case !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM):
		return err
	}
	// No openat2 (old kernel, or a seccomp filter refusing it): lstat each
	// component. A race with a symlink planted in between is caught by the
	// identity check of the caller only for the last component; this is
	// the best the old interface allows.
	p := s.base
	for _, c := range strings.Split(rel, "/") {
		p = filepath.Join(p, c)
		if err := unix.Lstat(p, st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return errSymlinkBelowBase
		}
	}
	return nil
}

package filter

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// errSymlink is a file of the home that courriel will not reach through
// a symlink.
var errSymlink = errors.New("is a symlink")

// openNoFollow opens rel ("name" or "dir/name", never "..") in root
// without following a symlink at any of its components, flag (os.O_*
// flags) and perm as os.OpenFile takes them.
//
// os.Root's own OpenFile will not do: it follows a symlink that stays
// inside the root, at the last component as at the others, O_NOFOLLOW or
// not. The home is the user's and the server writes as root: a user's
// ~/.dovecot.sieve.log pointing at a file the admin placed in the home
// (or at the maildirsize courriel trusts) would have it appended to and
// given to the user. So each component is opened here with openat(2) and
// O_NOFOLLOW, from the root's own descriptor: a symlink is ELOOP (or
// ENOTDIR for a directory component), reported as errSymlink.
func openNoFollow(root *os.Root, rel string, flag int, perm os.FileMode) (*os.File, error) {
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, fmt.Errorf("openNoFollow %q: not a plain relative name", rel)
		}
	}
	dir, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	dfd := -1
	conn, err := dir.SyscallConn()
	if err != nil {
		return nil, err
	}
	// The root's descriptor, duplicated: it outlives Control's callback.
	var dupErr error
	if err := conn.Control(func(fd uintptr) { dfd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, dupErr
	}
	for i, p := range parts {
		last := i == len(parts)-1
		fl := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		mode := uint32(0)
		if last {
			fl = flag | unix.O_NOFOLLOW | unix.O_CLOEXEC
			mode = uint32(perm.Perm())
		}
		var fd int
		for {
			fd, err = unix.Openat(dfd, p, fl, mode)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			err = symlinkError(dfd, p, err)
		}
		unix.Close(dfd)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: strings.Join(parts[:i+1], "/"), Err: err}
		}
		dfd = fd
	}
	return os.NewFile(uintptr(dfd), rel), nil
}

// symlinkError is err, the failure of openat(dfd, name), as errSymlink
// when name is a symlink.
func symlinkError(dfd int, name string, err error) error {
	if !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return errSymlink
	}
	return err
}

// oneLink refuses a file with more than one name: a hard link the user
// made to a file they may not write (where protected_hardlinks is off)
// would have the server write it, and give it to them.
func oneLink(f *os.File, name string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return fmt.Errorf("%s has %d hard links", name, st.Nlink)
	}
	return nil
}

package delivery

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Every call below works on a descriptor of tmp/ or new/ opened through the
// maildir's os.Root (O_NOFOLLOW, O_DIRECTORY) and held for the whole copy,
// with a name we generated: one path component, no slash, no "..". The
// kernel resolves nothing but that last component, and it never follows it
// (O_EXCL|O_NOFOLLOW, linkat and renameat do not follow a final symlink), so
// nothing can lead a write out of the maildir, as with os.Root, without
// walking tmp/ and new/ again for every call.

// createTmp creates tmp/<name> (exclusively, mode 0600 before the umask) and
// returns it open for writing. A name already there is fs.ErrExist.
//
// Why not a plain openat(O_CREAT|O_EXCL): the kernel allocates the inode
// while holding tmp/'s directory lock. On ext4 that allocation can be slow
// (without a journal it skips, one by one, every inode freed in the last
// minutes: recently_deleted() in fs/ext4/ialloc.c), and every other
// delivery into the maildir spins on the lock meanwhile. An O_TMPFILE inode
// is allocated without the directory lock; linking it under its name then
// holds the lock only to add the entry. Where O_TMPFILE or linking it is
// refused (old kernels, file systems without it), the plain create is used.
// Either way the file is in tmp/ under its name when createTmp returns, so
// a crash leaves the same states as before (doc.go).
//
// plain forces the plain create (tests of the fallback).
func createTmp(tmpDir *os.File, name string, plain bool) (*os.File, error) {
	if !plain {
		f, err := createLinked(tmpDir, name)
		if err == nil || !errors.Is(err, errNoTmpfile) {
			return f, err
		}
	}
	var fd int
	err := withFd(tmpDir, func(dfd int) error {
		var err error
		fd, err = ignoringEINTR(func() (int, error) {
			return unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		})
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: "tmp/" + name, Err: err}
	}
	return os.NewFile(uintptr(fd), tmpDir.Name()+"/"+name), nil
}

// errNoTmpfile: O_TMPFILE, or giving the file a name, is not available
// here; use the plain create.
var errNoTmpfile = errors.New("O_TMPFILE not usable")

// createLinked is createTmp with O_TMPFILE; errNoTmpfile when the kernel or
// the file system cannot do it.
func createLinked(tmpDir *os.File, name string) (*os.File, error) {
	var fd int
	var linkErr error
	err := withFd(tmpDir, func(dfd int) error {
		var err error
		fd, err = ignoringEINTR(func() (int, error) {
			return unix.Openat(dfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		})
		if err != nil {
			return err
		}
		linkErr = link(fd, dfd, name)
		return nil
	})
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EISDIR), errors.Is(err, unix.EINVAL):
		// No tmpfile in this file system; EISDIR: a kernel before 3.11
		// saw O_DIRECTORY in the flag bits.
		return nil, errNoTmpfile
	case err != nil:
		return nil, &os.PathError{Op: "openat", Path: "tmp/" + name, Err: err}
	}
	if linkErr != nil {
		_ = unix.Close(fd) // unnamed: the inode goes away with it
		if errors.Is(linkErr, unix.EEXIST) {
			return nil, &os.PathError{Op: "linkat", Path: "tmp/" + name, Err: linkErr}
		}
		return nil, errNoTmpfile
	}
	return os.NewFile(uintptr(fd), tmpDir.Name()+"/"+name), nil
}

// openUnnamed opens an unnamed regular file in dir's file system
// (O_TMPFILE); errNoTmpfile when the kernel or file system cannot.
func openUnnamed(dir *os.File) (*os.File, error) {
	var fd int
	err := withFd(dir, func(dfd int) error {
		var err error
		fd, err = ignoringEINTR(func() (int, error) {
			return unix.Openat(dfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, copyMode)
		})
		return err
	})
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EISDIR), errors.Is(err, unix.EINVAL):
		return nil, errNoTmpfile
	case err != nil:
		return nil, &os.PathError{Op: "openat", Path: "O_TMPFILE", Err: err}
	}
	return os.NewFile(uintptr(fd), dir.Name()+"/(unnamed)"), nil
}

// linkUnnamed names the unnamed file f dir/name. unix.EEXIST when the name
// is taken, errNoTmpfile when linking is refused here.
func linkUnnamed(f *os.File, dir *os.File, name string) error {
	var lerr error
	err := withFd(f, func(fd int) error {
		return withFd(dir, func(dfd int) error {
			lerr = link(fd, dfd, name)
			return nil
		})
	})
	if err != nil {
		return err
	}
	switch {
	case lerr == nil, errors.Is(lerr, unix.EEXIST):
		return lerr
	case errors.Is(lerr, unix.ENOSPC), errors.Is(lerr, unix.EDQUOT), errors.Is(lerr, unix.EIO), errors.Is(lerr, unix.EROFS):
		// The file system's state, not a lack of support: the tmp/ path
		// would fail the same way, and must stay for file systems that
		// really cannot link an unnamed file.
		return &os.PathError{Op: "linkat", Path: name, Err: lerr}
	}
	return errNoTmpfile
}

// link gives the unnamed file fd the name dfd/name. AT_EMPTY_PATH needs
// CAP_DAC_READ_SEARCH before Linux 6.10 (ENOENT without it); the
// /proc/self/fd link is the documented way around that (open(2), O_TMPFILE).
// EEXIST means the name is taken; any other error means "cannot link here".
func link(fd, dfd int, name string) error {
	_, err := ignoringEINTR(func() (int, error) {
		return 0, unix.Linkat(fd, "", dfd, name, unix.AT_EMPTY_PATH)
	})
	if err == nil || errors.Is(err, unix.EEXIST) {
		return err
	}
	_, err = ignoringEINTR(func() (int, error) {
		return 0, unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dfd, name, unix.AT_SYMLINK_FOLLOW)
	})
	return err
}

// renameAt moves tmp/<name> to new/<name> on the held descriptors.
func renameAt(tmpDir, newDir *os.File, name string) error {
	err := withFd(tmpDir, func(tfd int) error {
		return withFd(newDir, func(nfd int) error {
			_, err := ignoringEINTR(func() (int, error) {
				return 0, unix.Renameat(tfd, name, nfd, name)
			})
			return err
		})
	})
	if err != nil {
		return &os.LinkError{Op: "renameat", Old: "tmp/" + name, New: "new/" + name, Err: err}
	}
	return nil
}

// removeAt unlinks dir/<name> (a regular file; never follows it).
func removeAt(dir *os.File, name string) error {
	err := withFd(dir, func(dfd int) error {
		_, err := ignoringEINTR(func() (int, error) {
			return 0, unix.Unlinkat(dfd, name, 0)
		})
		return err
	})
	if err != nil {
		return &os.PathError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}

// withFd runs fn with d's descriptor, which stays open meanwhile.
func withFd(d *os.File, fn func(fd int) error) error {
	rc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func ignoringEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

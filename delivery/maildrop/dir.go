package maildrop

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is the maildrop directory's mode: anyone may create a file, nobody
// but the owner list the directory, and nobody remove another's file.
const Mode = 0o1733 // as an fs.FileMode: fs.ModeSticky | 0o733

// corruptDir holds what was set aside, where only the server can reach it.
const corruptDir = "corrupt"

// StaleAfter is how long a temporary file (a writer that died before its
// rename) stays before the server removes it; a writer takes seconds.
const StaleAfter = 24 * time.Hour

// Dir is the maildrop directory as the server reads it.
type Dir struct {
	path string
	// f is the directory, opened once without following a symlink: every
	// file is opened relative to it.
	f       *os.File
	corrupt *os.File
}

// Setup makes the maildrop directory at path if needed (its parent must
// exist: the spool), with Mode, and its corrupt/ subdirectory (0700), and
// opens it. An existing one is given Mode again, since the server owns
// it; one that is a symlink or belongs to another user is refused.
func Setup(path string) (*Dir, error) {
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("maildrop: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("maildrop: opening %s (a real directory, not a symlink): %w", path, err)
	}
	fail := func(err error) (*Dir, error) {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("maildrop: %w", err))
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return fail(fmt.Errorf("maildrop: %s belongs to another user than the server's (uid %d)", path, os.Geteuid()))
	}
	// Through the descriptor: past the umask, and on the very directory
	// checked above.
	if err := f.Chmod(fs.ModeSticky | 0o733); err != nil {
		return fail(fmt.Errorf("maildrop: %w", err))
	}
	cpath := filepath.Join(path, corruptDir)
	if err := os.Mkdir(cpath, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fail(fmt.Errorf("maildrop: %w", err))
	}
	// corrupt/ was made by the server in a directory others write: a
	// user may have made a corrupt of their own first. Opened without
	// following a symlink, and refused unless it is the server's.
	c, err := os.OpenFile(cpath, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fail(fmt.Errorf("maildrop: %w", err))
	}
	ci, err := c.Stat()
	if err == nil {
		if st, ok := ci.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			err = fmt.Errorf("%s belongs to another user (remove it)", cpath)
		} else {
			err = c.Chmod(0o700)
		}
	}
	if err != nil {
		c.Close()
		return fail(fmt.Errorf("maildrop: %w", err))
	}
	return &Dir{path: path, f: f, corrupt: c}, nil
}

// Open opens an existing maildrop directory to read it, changing nothing
// (`courriel queue list`); SetAside is refused on it.
func Open(path string) (*Dir, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("maildrop: %w", err)
	}
	return &Dir{path: path, f: f}, nil
}

// Close closes the directory.
func (d *Dir) Close() error {
	if d.corrupt == nil {
		return d.f.Close()
	}
	return errors.Join(d.f.Close(), d.corrupt.Close())
}

// Path is the directory's path.
func (d *Dir) Path() string { return d.path }

// Listing is what one look at the directory found.
type Listing struct {
	// Ready are the final names, oldest first.
	Ready []string
	// Temp are files being written (or left by a writer that died).
	Temp []string
	// Other are entries that are neither (set them aside).
	Other []string
}

// List looks at the directory, reading at most max entries: a user making
// files faster than they are taken cannot make one look unbounded; the
// rest are found by the next.
func (d *Dir) List(max int) (Listing, error) {
	f, err := os.Open(d.path)
	if err != nil {
		return Listing{}, fmt.Errorf("maildrop: %w", err)
	}
	defer f.Close()
	var l Listing
	for n := 0; n < max; {
		names, err := f.Readdirnames(min(1024, max-n))
		n += len(names)
		for _, name := range names {
			switch {
			case name == corruptDir:
			case validName(name):
				l.Ready = append(l.Ready, name)
			case strings.HasPrefix(name, tmpPrefix) && validName(name[len(tmpPrefix):]):
				l.Temp = append(l.Temp, name)
			default:
				l.Other = append(l.Other, name)
			}
		}
		if errors.Is(err, io.EOF) || len(names) == 0 {
			break
		}
		if err != nil {
			return Listing{}, fmt.Errorf("maildrop: listing %s: %w", d.path, err)
		}
	}
	// The names start with the time in nanoseconds: as numbers, they
	// sort in the order they were written.
	slices.SortFunc(l.Ready, func(a, b string) int {
		if c := len(strings.SplitN(a, ".", 2)[0]) - len(strings.SplitN(b, ".", 2)[0]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return l, nil
}

// File is one message read from the directory.
type File struct {
	Name string
	// UID and GID are the file's owner as the kernel recorded it: the
	// submitter.
	UID, GID uint32
	// Written is the file's modification time, when its writer wrote it.
	Written  time.Time
	Envelope *Envelope
	Message  []byte
}

// Read opens and reads the file name, whose message may have at most
// maxMessage octets. A file that is not a well-formed maildrop file of
// its owner's (see the package comment) is an error wrapping
// ErrMalformed; one gone meanwhile wraps fs.ErrNotExist; any other error
// (EIO, ENOMEM) is worth another try later.
func (d *Dir) Read(name string, maxMessage int64) (*File, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, name, fmt.Sprintf(format, a...))
	}
	if !validName(name) {
		return nil, bad("not a maildrop file name")
	}
	var fd int
	err := withFd(d.f, func(dfd int) error {
		var err error
		// O_NONBLOCK: a FIFO put here must not hang the open; O_NOCTTY:
		// nor a terminal become ours.
		fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		return err
	})
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("maildrop: %s: %w", name, fs.ErrNotExist)
	case errors.Is(err, unix.ELOOP):
		return nil, bad("a symlink")
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
		// Not readable by the server (it is not root and the file is
		// another user's), or a socket or device: never readable.
		return nil, bad("cannot be opened: %v", err)
	case err != nil:
		return nil, fmt.Errorf("maildrop: opening %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.path, name))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("maildrop: fstat %s: %w", name, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, bad("not a regular file (mode %#o)", st.Mode)
	case st.Nlink != 1:
		// A hard link to another user's file would be submitted under
		// that user's uid.
		return nil, bad("%d links, want 1", st.Nlink)
	}
	limit := MaxEnvelope + maxMessage
	if st.Size > limit {
		return nil, bad("%d octets, at most %d", st.Size, limit)
	}
	// Bounded again while read: the owner may still be writing to it.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("maildrop: reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, bad("more than %d octets", limit)
	}
	env, msg, err := parse(data, maxMessage)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &File{Name: name, UID: st.Uid, GID: st.Gid, Written: time.Unix(st.Mtim.Unix()), Envelope: env, Message: msg}, nil
}

// Remove removes the file name once its message is stored or queued, and
// makes that durable, so that a restart does not submit it again.
func (d *Dir) Remove(name string) error {
	if !validName(name) && !(strings.HasPrefix(name, tmpPrefix) && validName(name[len(tmpPrefix):])) {
		return fmt.Errorf("maildrop: remove %q: not a maildrop file name", printable(name))
	}
	err := withFd(d.f, func(dfd int) error { return unix.Unlinkat(dfd, name, 0) })
	if err != nil {
		return fmt.Errorf("maildrop: removing %s: %w", name, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("maildrop: fsync %s: %w", d.path, err)
	}
	return nil
}

// RemoveStale removes the temporary file name when it was last written
// StaleAfter before now; removed says whether it did.
func (d *Dir) RemoveStale(name string, now time.Time) (removed bool, err error) {
	if !strings.HasPrefix(name, tmpPrefix) || !validName(name[len(tmpPrefix):]) {
		return false, fmt.Errorf("maildrop: %q is not a temporary file", printable(name))
	}
	var st unix.Stat_t
	err = withFd(d.f, func(dfd int) error { return unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("maildrop: %s: %w", name, err)
	}
	if now.Sub(time.Unix(st.Mtim.Unix())) < StaleAfter {
		return false, nil
	}
	if err := d.Remove(name); err != nil {
		return false, err
	}
	return true, nil
}

// SetAside moves the entry name (whatever it is: a file, a symlink, a
// directory) into corrupt/, where it is never read again, and returns its
// name there. name must be a single path component.
func (d *Dir) SetAside(name string) (string, error) {
	if d.corrupt == nil {
		return "", errors.New("maildrop: opened to read only")
	}
	if name == "" || name == "." || name == ".." || name == corruptDir || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("maildrop: set aside %q: not an entry of the directory", printable(name))
	}
	// The name there: printable, bounded, and unique (a user may use the
	// same hostile name again and again).
	base := sanitizeName(name)
	for try := 0; try < 100; try++ {
		to := base
		if try > 0 {
			to = base + "." + strconv.Itoa(try)
		}
		err := withFd(d.f, func(dfd int) error {
			return withFd(d.corrupt, func(cfd int) error {
				return unix.Renameat2(dfd, name, cfd, to, unix.RENAME_NOREPLACE)
			})
		})
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("maildrop: setting %s aside: %w", printable(name), err)
		}
		if err := errors.Join(d.f.Sync(), d.corrupt.Sync()); err != nil {
			return to, fmt.Errorf("maildrop: fsync after setting %s aside: %w", to, err)
		}
		return to, nil
	}
	return "", fmt.Errorf("maildrop: setting %s aside: too many of that name in %s", printable(name), corruptDir)
}

// sanitizeName is an entry's name for corrupt/: printable ASCII without
// '/', at most 100 octets, never hidden; a maildrop file keeps its name,
// which the log gave.
func sanitizeName(name string) string {
	var b strings.Builder
	if strings.HasPrefix(name, ".") {
		b.WriteByte('_')
	}
	for i := 0; i < len(name) && i < 100; i++ {
		if c := name[i]; c > ' ' && c < 0x7f && c != '/' {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func withFd(d *os.File, fn func(fd int) error) error {
	rc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if ferr = fn(int(fd)); !errors.Is(ferr, unix.EINTR) {
				return
			}
		}
	}); err != nil {
		return err
	}
	return ferr
}

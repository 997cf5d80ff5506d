package maildrop

import (
	"crypto/rand"
	"encoding/hex"
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

// Mode is the maildrop directory's mode: anyone may create an entry (their
// own subdirectory), nobody but the owner list the directory, and nobody
// remove another's entry.
const Mode = 0o1733 // as an fs.FileMode: fs.ModeSticky | 0o733

// UserMode is the mode of a user's subdirectory, maildrop/<uid>: its
// owner's alone.
const UserMode = 0o700

// MaxPerUser bounds the entries of one user's subdirectory: sendmail
// writes no file past it (exit 75), and the server removes what is found
// past it (see the package comment: the inodes one user can take).
const MaxPerUser = 1000

// MaxSetAsidePerUser bounds what is kept of one user's files in the
// corrupt directory; past it, a file that would be set aside is removed
// (and logged) instead.
const MaxSetAsidePerUser = 100

// StaleAfter is how long after the server first saw it a temporary file
// (a writer that died before its rename) stays before the server removes
// it; a writer takes seconds.
const StaleAfter = 24 * time.Hour

// CorruptPath is where Setup keeps what it sets aside for the maildrop at
// path: beside it in the spool, which users cannot write, so that nobody
// can make it first.
func CorruptPath(path string) string { return path + "-corrupt" }

// Dir is the maildrop directory as the server reads it.
type Dir struct {
	path string
	// f is the directory, opened once without following a symlink: every
	// entry is opened relative to it.
	f *os.File
	// corrupt is CorruptPath's directory; nil when opened to read only.
	corrupt *os.File
	// trash is corrupt's TrashName: what is being removed.
	trash *os.File
	// dev is the maildrop's device: a subdirectory or a file on another
	// (a mount, a user's FUSE) is never read nor removed.
	dev uint64
}

// TrashName is the corrupt directory's subdirectory where a directory to
// be removed (a foreign entry at the top, a user's own) is moved first,
// which frees its name at once, and then removed a bounded part at each
// look (Sweep), however deep it is.
const TrashName = "removing"

// layoutMarker, in the corrupt directory, says that the layout before the
// per-user subdirectories was set aside (or never was): Setup does it
// once. A set-aside name never starts with a dot.
const layoutMarker = ".per-user-layout"

// fstatat is unix.Fstatat; tests make it fail.
var fstatat = unix.Fstatat

// openDir opens path, a real directory (not a symlink), of the server's
// own uid.
func openDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("maildrop: opening %s (a real directory, not a symlink): %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			err = fmt.Errorf("maildrop: %s belongs to another user than the server's (uid %d)", path, os.Geteuid())
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Setup makes the maildrop directory at path if needed (its parent must
// exist: the spool, which users may search but not write) and opens it.
// Its corrupt directory (CorruptPath, 0700) is made and checked first,
// while nobody else can write there, and the maildrop is given Mode last,
// through its descriptor; an existing one is given Mode again, since the
// server owns it; one that is a symlink or another user's is refused.
// What the layout before the per-user subdirectories left at the top (a
// file of its own, corrupt/) is set aside, never read, once (the first
// Setup of this layout: layoutMarker): who wrote such a file cannot be
// known (see the package comment). moved lists the names set aside so.
func Setup(path string) (d *Dir, moved []string, err error) {
	cpath := CorruptPath(path)
	if err := os.Mkdir(cpath, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, nil, fmt.Errorf("maildrop: %w", err)
	}
	c, err := openDir(cpath)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Chmod(0o700); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("maildrop: %w", err)
	}
	existed := false
	if err := os.Mkdir(path, 0o700); errors.Is(err, fs.ErrExist) {
		existed = true
	} else if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("maildrop: %w", err)
	}
	f, err := openDir(path)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	d = &Dir{path: path, f: f, corrupt: c}
	fail := func(err error) (*Dir, []string, error) {
		d.Close()
		return nil, nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fail(fmt.Errorf("maildrop: %w", err))
	}
	d.dev = st.Dev
	if err := withFd(c, func(cfd int) error { return unix.Mkdirat(cfd, TrashName, 0o700) }); err != nil && !errors.Is(err, unix.EEXIST) {
		return fail(fmt.Errorf("maildrop: %w", err))
	}
	if d.trash, err = openDir(filepath.Join(cpath, TrashName)); err != nil {
		return fail(err)
	}
	// The old layout's entries (plain files of any owner, and corrupt/),
	// once: afterwards a file at the top is just a foreign entry, removed
	// at the next look, which costs no start anything.
	if err := withFd(c, func(cfd int) error { return fstatat(cfd, layoutMarker, &st, unix.AT_SYMLINK_NOFOLLOW) }); errors.Is(err, unix.ENOENT) {
		if existed {
			if moved, err = d.setAsideLegacy(); err != nil {
				return fail(err)
			}
		}
		if err := withFd(c, func(cfd int) error {
			fd, err := unix.Openat(cfd, layoutMarker, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}); err != nil {
			return fail(fmt.Errorf("maildrop: %s: %w", layoutMarker, err))
		}
		if err := c.Sync(); err != nil {
			return fail(fmt.Errorf("maildrop: %w", err))
		}
	} else if err != nil {
		return fail(fmt.Errorf("maildrop: %s: %w", layoutMarker, err))
	}
	// Past the umask, and on the very directory checked above.
	if err := f.Chmod(fs.ModeSticky | 0o733); err != nil {
		d.Close()
		return nil, nil, fmt.Errorf("maildrop: %w", err)
	}
	return d, moved, nil
}

// setAsideLegacy moves what the single-directory layout left at the top
// into the corrupt directory (legacy-NAME.RANDOM): its files were
// accepted as their owner's, which a rename could forge.
func (d *Dir) setAsideLegacy() ([]string, error) {
	names, err := d.topNames(100000)
	if err != nil {
		return nil, err
	}
	var moved []string
	for _, name := range names {
		var st unix.Stat_t
		if err := withFd(d.f, func(dfd int) error { return fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
			continue
		}
		legacy := (name == "corrupt" && st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) == os.Geteuid()) ||
			(validName(name) && st.Mode&unix.S_IFMT == unix.S_IFREG)
		if !legacy {
			continue
		}
		to, err := d.moveToCorrupt(d.f, name, d.corrupt, "legacy-"+name, false)
		if err != nil {
			return moved, err
		}
		moved = append(moved, to)
	}
	if len(moved) > 0 {
		if err := errors.Join(d.f.Sync(), d.corrupt.Sync()); err != nil {
			return moved, fmt.Errorf("maildrop: fsync after setting the old layout aside: %w", err)
		}
	}
	return moved, nil
}

// Open opens an existing maildrop directory to read it, changing nothing
// (`courriel queue list`); SetAside and removals are refused on it.
func Open(path string) (*Dir, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("maildrop: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("maildrop: %w", err)
	}
	return &Dir{path: path, f: f, dev: st.Dev}, nil
}

// Close closes the directory.
func (d *Dir) Close() error {
	if d.corrupt == nil {
		return d.f.Close()
	}
	err := errors.Join(d.f.Close(), d.corrupt.Close())
	if d.trash != nil {
		err = errors.Join(err, d.trash.Close())
	}
	return err
}

// Path is the directory's path.
func (d *Dir) Path() string { return d.path }

// topNames reads at most max names of the top directory.
func (d *Dir) topNames(max int) ([]string, error) {
	return readNames(d.f, d.path, max)
}

// readNames reads at most max names of the directory dir (opened anew
// through its descriptor, so that each look starts at the beginning).
func readNames(dir *os.File, path string, max int) ([]string, error) {
	var fd int
	if err := withFd(dir, func(dfd int) error {
		var err error
		fd, err = unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	}); err != nil {
		return nil, fmt.Errorf("maildrop: %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var out []string
	for len(out) < max {
		names, err := f.Readdirnames(min(1024, max-len(out)))
		out = append(out, names...)
		if errors.Is(err, io.EOF) || len(names) == 0 {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("maildrop: listing %s: %w", path, err)
		}
	}
	return out, nil
}

// Top is one look at the top of the maildrop.
type Top struct {
	// Users are the subdirectories to read: named by their owner's uid
	// (decimal, as sendmail names it), a real directory that nobody
	// else may write. In uid order.
	Users []uint32
	// Unsafe are subdirectories named by their owner's uid that others
	// may write (a chmod of the owner's): not read until the owner (or
	// sendmail, which makes it 0700 again) fixes it; nothing removed.
	Unsafe []uint32
	// Foreign are the other entries: anything but a directory, a name
	// that is no uid, a directory whose owner is not the uid it is named
	// by (someone made it before its user, to block or to forge). The
	// server removes them (RemoveForeign).
	Foreign []Entry
	// Skipped are entries that could not be looked at (a stat failing:
	// a user's FUSE mount that root may not enter) or that are on
	// another device than the maildrop (a mount): neither read nor
	// removed, and no stop to the others.
	Skipped []Entry
}

// Entry is an entry of the top directory and its owner.
type Entry struct {
	Name string
	UID  uint32
	Why  string
}

// parseUID is a canonical decimal uid (no sign, no leading zero).
func parseUID(name string) (uint32, bool) {
	if name == "" || len(name) > 10 || (len(name) > 1 && name[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(name, 10, 32)
	return uint32(n), err == nil
}

// List looks at the top of the directory, reading at most max entries.
func (d *Dir) List(max int) (Top, error) {
	names, err := d.topNames(max)
	if err != nil {
		return Top{}, err
	}
	var t Top
	for _, name := range names {
		var st unix.Stat_t
		err := withFd(d.f, func(dfd int) error { return fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		uid, ok := parseUID(name)
		switch {
		case err != nil:
			t.Skipped = append(t.Skipped, Entry{name, 0, "cannot be looked at: " + err.Error()})
		case st.Dev != d.dev:
			t.Skipped = append(t.Skipped, Entry{name, st.Uid, "on another file system than the maildrop (a mount)"})
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			t.Foreign = append(t.Foreign, Entry{name, st.Uid, "not a directory"})
		case !ok:
			t.Foreign = append(t.Foreign, Entry{name, st.Uid, "not named by a uid"})
		case st.Uid != uid:
			t.Foreign = append(t.Foreign, Entry{name, st.Uid, "named by another uid than its owner's"})
		case st.Mode&0o022 != 0:
			t.Unsafe = append(t.Unsafe, uid)
		default:
			t.Users = append(t.Users, uid)
		}
	}
	slices.Sort(t.Users)
	slices.Sort(t.Unsafe)
	return t, nil
}

// RemoveForeign removes the top entry name: a file at once; a directory
// is moved into the trash (freeing its name at once, never following a
// symlink), where Sweep removes it.
func (d *Dir) RemoveForeign(name string) error {
	if d.corrupt == nil {
		return errors.New("maildrop: opened to read only")
	}
	if !oneComponent(name) {
		return fmt.Errorf("maildrop: remove %q: not an entry of the directory", printable(name))
	}
	if err := d.discard(d.f, name); err != nil {
		return fmt.Errorf("maildrop: removing %s: %w", printable(name), err)
	}
	return nil
}

// discard removes name in dir, or moves it into the trash when it is a
// directory.
func (d *Dir) discard(dir *os.File, name string) error {
	err := withFd(dir, func(dfd int) error { return unix.Unlinkat(dfd, name, 0) })
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	_, err = d.moveToCorrupt(dir, name, d.trash, "d", false)
	return err
}

// Sweep removes what is in the trash, at most budget operations (an
// unlink, a rename, a name read) in one call, the rest at the next. It
// needs no recursion, and so knows no depth limit: a directory's
// subdirectories are moved up into the trash itself, each then a
// directory of its own to empty. Nothing on another device (a mount) is
// entered. removed counts the entries removed; problems are the trash
// entries that could not be removed, with why.
func (d *Dir) Sweep(budget int) (removed int, problems []Entry, err error) {
	if d.trash == nil {
		return 0, nil, errors.New("maildrop: opened to read only")
	}
	ops := 0
	work, err := readNames(d.trash, d.trash.Name(), budget)
	if err != nil {
		return 0, nil, err
	}
	ops += len(work)
	for len(work) > 0 && ops < budget {
		name := work[0]
		work = work[1:]
		ops++
		err := withFd(d.trash, func(tfd int) error { return unix.Unlinkat(tfd, name, 0) })
		if err == nil || errors.Is(err, unix.ENOENT) {
			removed++
			continue
		}
		if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
			problems = append(problems, Entry{Name: name, Why: err.Error()})
			continue
		}
		var fd int
		err = withFd(d.trash, func(tfd int) error {
			var err error
			fd, err = unix.Openat(tfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			return err
		})
		if err != nil {
			problems = append(problems, Entry{Name: name, Why: err.Error()})
			continue
		}
		sub := os.NewFile(uintptr(fd), filepath.Join(d.trash.Name(), name))
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Dev != d.dev {
			sub.Close()
			problems = append(problems, Entry{Name: name, Why: "on another file system (a mount)"})
			continue
		}
		for ops < budget {
			names, rerr := sub.Readdirnames(min(1024, budget-ops))
			ops += len(names)
			for _, n := range names {
				ops++
				err := withFd(sub, func(sfd int) error { return unix.Unlinkat(sfd, n, 0) })
				if err == nil || errors.Is(err, unix.ENOENT) {
					removed++
					continue
				}
				if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EPERM) {
					// Up into the trash: a directory of its own to empty.
					if to, err := d.moveToCorrupt(sub, n, d.trash, "d", false); err == nil {
						work = append(work, to)
						continue
					}
				}
				problems = append(problems, Entry{Name: name, Why: n + ": " + err.Error()})
			}
			if rerr != nil || len(names) == 0 {
				break
			}
		}
		sub.Close()
		ops++
		err = withFd(d.trash, func(tfd int) error { return unix.Unlinkat(tfd, name, unix.AT_REMOVEDIR) })
		if err == nil {
			removed++
		} else if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			problems = append(problems, Entry{Name: name, Why: err.Error()})
		}
	}
	return removed, problems, nil
}

// UserDir is one user's subdirectory, opened and checked.
type UserDir struct {
	d   *Dir
	UID uint32
	f   *os.File
}

// ErrNotUsers is wrapped by OpenUser's refusal of a subdirectory that is
// no longer its user's (replaced since List).
var ErrNotUsers = errors.New("maildrop: not the user's subdirectory")

// OpenUser opens maildrop/<uid> and checks it again on its descriptor:
// a real directory, owned by uid, that nobody else may write.
func (d *Dir) OpenUser(uid uint32) (*UserDir, error) {
	name := strconv.FormatUint(uint64(uid), 10)
	var fd int
	err := withFd(d.f, func(dfd int) error {
		var err error
		fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("maildrop: %s: %w", name, fs.ErrNotExist)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotUsers, name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("maildrop: %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.path, name))
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("maildrop: %s: %w", name, err)
	}
	if st.Uid != uid || st.Mode&0o022 != 0 || st.Dev != d.dev {
		f.Close()
		return nil, fmt.Errorf("%w: %s: owner %d, mode %#o, device %d (the maildrop's %d)", ErrNotUsers, name, st.Uid, st.Mode&0o7777, st.Dev, d.dev)
	}
	return &UserDir{d: d, UID: uid, f: f}, nil
}

// Close closes the subdirectory.
func (u *UserDir) Close() error { return u.f.Close() }

// Listing is what one look at a user's subdirectory found.
type Listing struct {
	// Ready are the final names, oldest first (by name: sendmail's
	// names start with the time).
	Ready []string
	// Temp are files being written (or left by a writer that died).
	Temp []string
	// Other are entries that are neither: the user's own making.
	Other []string
	// Over is the number of entries past max that the look found and
	// removed (at most budget): what a user made beyond MaxPerUser.
	Over int
}

// List looks at the subdirectory: the first max entries it finds are
// listed; those past them are removed, at most budget in one look (the
// rest at the next), never read. So one user's files cost the server a
// bounded look, and their inodes are bounded (MaxPerUser).
func (u *UserDir) List(max, budget int) (Listing, error) {
	var fd int
	if err := withFd(u.f, func(dfd int) error {
		var err error
		fd, err = unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	}); err != nil {
		return Listing{}, fmt.Errorf("maildrop: %s: %w", u.f.Name(), err)
	}
	f := os.NewFile(uintptr(fd), u.f.Name())
	defer f.Close()
	var l Listing
	n := 0
	for {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			n++
			if n > max {
				if l.Over >= budget {
					break
				}
				if u.d.corrupt != nil && u.d.discard(u.f, name) == nil {
					l.Over++
				}
				continue
			}
			switch {
			case validName(name):
				l.Ready = append(l.Ready, name)
			case strings.HasPrefix(name, tmpPrefix) && validName(name[len(tmpPrefix):]):
				l.Temp = append(l.Temp, name)
			default:
				l.Other = append(l.Other, name)
			}
		}
		if errors.Is(err, io.EOF) || len(names) == 0 || l.Over >= budget && n > max {
			break
		}
		if err != nil {
			return Listing{}, fmt.Errorf("maildrop: listing %s: %w", u.f.Name(), err)
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
	// submitter, the uid of the subdirectory.
	UID, GID uint32
	// Written is the file's modification time (its owner may set it).
	Written  time.Time
	Envelope *Envelope
	Message  []byte
}

// Read opens and reads the file name, whose message may have at most
// maxMessage octets. A file that is not a well-formed maildrop file of
// the subdirectory's user (see the package comment) is an error wrapping
// ErrMalformed; one gone meanwhile wraps fs.ErrNotExist; any other error
// (EAGAIN of a lease, EIO) is worth another try later.
func (u *UserDir) Read(name string, maxMessage int64) (*File, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMalformed, name, fmt.Sprintf(format, a...))
	}
	if !validName(name) {
		return nil, bad("not a maildrop file name")
	}
	var fd int
	err := withFd(u.f, func(dfd int) error {
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
	f := os.NewFile(uintptr(fd), filepath.Join(u.f.Name(), name))
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("maildrop: fstat %s: %w", name, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, bad("not a regular file (mode %#o)", st.Mode)
	case st.Uid != u.UID:
		// Renamed in by the subdirectory's user: another's file (root's
		// too) is never submitted as theirs, nor as its owner.
		return nil, bad("owned by uid %d, not by the subdirectory's uid %d", st.Uid, u.UID)
	case st.Nlink != 1:
		return nil, bad("%d links, want 1", st.Nlink)
	case st.Dev != u.d.dev:
		return nil, bad("on another file system than the maildrop (a mount)")
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

// Remove removes the entry name once its message is stored or queued (or
// a temporary file left too long, or the user's own junk), and makes that
// durable, so that a restart does not submit it again.
func (u *UserDir) Remove(name string) error {
	if u.d.corrupt == nil {
		return errors.New("maildrop: opened to read only")
	}
	if !oneComponent(name) {
		return fmt.Errorf("maildrop: remove %q: not an entry of the directory", printable(name))
	}
	if err := u.d.discard(u.f, name); err != nil {
		return fmt.Errorf("maildrop: removing %s: %w", printable(name), err)
	}
	if err := u.f.Sync(); err != nil {
		return fmt.Errorf("maildrop: fsync %s: %w", u.f.Name(), err)
	}
	return nil
}

// SetAside moves the entry name into the corrupt directory's
// subdirectory of the user (<uid>/NAME.RANDOM: unique, whatever names the
// user chooses), where it is never read again, and returns its path
// there. Past MaxSetAsidePerUser entries there, the entry is removed
// instead (removed true): what one user can make the server keep is
// bounded too.
func (u *UserDir) SetAside(name string) (to string, removed bool, err error) {
	if u.d.corrupt == nil {
		return "", false, errors.New("maildrop: opened to read only")
	}
	if !oneComponent(name) {
		return "", false, fmt.Errorf("maildrop: set aside %q: not an entry of the directory", printable(name))
	}
	uname := strconv.FormatUint(uint64(u.UID), 10)
	err = withFd(u.d.corrupt, func(cfd int) error { return unix.Mkdirat(cfd, uname, 0o700) })
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return "", false, fmt.Errorf("maildrop: %w", err)
	}
	var cfd int
	err = withFd(u.d.corrupt, func(dfd int) error {
		var err error
		cfd, err = unix.Openat(dfd, uname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("maildrop: %w", err)
	}
	c := os.NewFile(uintptr(cfd), filepath.Join(u.d.corrupt.Name(), uname))
	defer c.Close()
	if kept, err := readNames(c, c.Name(), MaxSetAsidePerUser); err != nil {
		return "", false, err
	} else if len(kept) >= MaxSetAsidePerUser {
		return "", true, u.Remove(name)
	}
	to, err = u.d.moveToCorrupt(u.f, name, c, name, true)
	if err != nil {
		return "", false, err
	}
	return filepath.Join(uname, to), false, u.f.Sync()
}

// moveToCorrupt renames name in from to base (made printable) and a
// random suffix in to, and makes it durable there when sync.
func (d *Dir) moveToCorrupt(from *os.File, name string, to *os.File, base string, sync bool) (string, error) {
	base = sanitizeName(base)
	for try := 0; ; try++ {
		var r [6]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", err
		}
		dst := base + "." + hex.EncodeToString(r[:])
		err := withFd(from, func(ffd int) error {
			return withFd(to, func(tfd int) error {
				return unix.Renameat2(ffd, name, tfd, dst, unix.RENAME_NOREPLACE)
			})
		})
		if errors.Is(err, unix.EEXIST) && try < 5 {
			continue // 48 random bits: never in practice
		}
		if err != nil {
			return "", fmt.Errorf("maildrop: setting %s aside: %w", printable(name), err)
		}
		if !sync {
			return dst, nil
		}
		if err := errors.Join(from.Sync(), to.Sync()); err != nil {
			return dst, fmt.Errorf("maildrop: fsync after setting %s aside: %w", dst, err)
		}
		return dst, nil
	}
}

func oneComponent(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsRune(name, '/') && !strings.ContainsRune(name, 0)
}

// sanitizeName is an entry's name for the corrupt directory: printable
// ASCII without '/', at most 100 octets, never hidden; a maildrop file
// keeps its name, which the log gave.
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

package delivery

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"courriel/internal/unixperm"
)

// parentFS is where maildir paths are resolved and created: an os.Root at
// Options.AllowedBase (symlinks may not lead out of it, nor be absolute), or
// the host's file system when no base is configured (names relative to "/";
// symlinks above the maildir are followed, as Postfix and Dovecot do).
type parentFS interface {
	Mkdir(name string, perm os.FileMode) error
	Lchown(name string, uid, gid int) error
	Chmod(name string, mode os.FileMode) error
	Open(name string) (*os.File, error)
	OpenRoot(name string) (*os.Root, error)
	Lstat(name string) (fs.FileInfo, error)
}

// hostFS is parentFS on "/"; names are relative to "/" and clean.
type hostFS struct{}

func (hostFS) abs(name string) string {
	if name == "." {
		return "/"
	}
	return "/" + name
}
func (h hostFS) Mkdir(n string, p os.FileMode) error { return os.Mkdir(h.abs(n), p) }
func (h hostFS) Lchown(n string, uid, gid int) error { return os.Lchown(h.abs(n), uid, gid) }
func (h hostFS) Chmod(n string, m os.FileMode) error { return os.Chmod(h.abs(n), m) }
func (h hostFS) Open(n string) (*os.File, error)     { return os.Open(h.abs(n)) }
func (h hostFS) OpenRoot(n string) (*os.Root, error) { return os.OpenRoot(h.abs(n)) }
func (h hostFS) Lstat(n string) (fs.FileInfo, error) { return os.Lstat(h.abs(n)) }

// maildirRel checks a maildir path from the directory and returns it
// relative to the parent file system (AllowedBase, or "/"). The path is
// hostile: it must be absolute, clean (filepath.Clean gives it back, apart
// from one trailing slash), free of control bytes, not a base itself, and
// strictly under the base when one is set. Lexical checks only: symlinks are
// handled by os.Root when the path is opened.
func (s *Store) maildirRel(maildir string) (string, *Error) {
	if !filepath.IsAbs(maildir) {
		return "", badMaildir("maildir path is not absolute", nil)
	}
	for i := 0; i < len(maildir); i++ {
		if c := maildir[i]; c < ' ' || c == 0x7f {
			return "", badMaildir("maildir path contains control characters", nil)
		}
	}
	p := strings.TrimSuffix(maildir, "/")
	if p == "" {
		return "", badMaildir("maildir path is the root directory", nil)
	}
	if filepath.Clean(p) != p {
		return "", badMaildir("maildir path is not clean", nil)
	}
	for c := range strings.SplitSeq(p[1:], "/") {
		if c == ".." || c == "." || c == "" { // Clean already removed them; belt and braces
			return "", badMaildir("maildir path is not clean", nil)
		}
	}
	if s.base == "" {
		return p[1:], nil
	}
	prefix := s.base + "/"
	if s.base == "/" {
		prefix = "/"
	}
	rel, ok := strings.CutPrefix(p, prefix)
	if !ok || rel == "" {
		return "", badMaildir("maildir path is outside the allowed base", nil)
	}
	return rel, nil
}

// absolute is the inverse of maildirRel: the clean absolute path of rel.
func (s *Store) absolute(rel string) string {
	return filepath.Join("/", s.base, rel)
}

// openMaildir returns an os.Root on the recipient's maildir (rel, from
// maildirRel), creating it (and missing parents) on first delivery. Every
// later operation on tmp/, new/ and cur/ goes through that Root, so a symlink inside the maildir cannot lead a
// write out of it; with AllowedBase, the maildir is itself opened through a
// Root on the base, so neither the home nor the maildir may be a symlink
// leading out of the base.
func (s *Store) openMaildir(rel, key string, r *Recipient) (*os.Root, *Error) {
	var pfs parentFS = hostFS{}
	if s.base != "" {
		br, err := os.OpenRoot(s.base)
		if err != nil {
			return nil, openError("cannot open the allowed base", err)
		}
		defer br.Close()
		pfs = br
	}
	if s.isKnown(key) {
		// Fast path: created (or found) and made durable earlier by this
		// process; a few openat/fstatat calls, no directory listing.
		mroot, err := pfs.OpenRoot(rel)
		if err == nil {
			e := checkSubdirs(mroot)
			if e == nil && s.base != "" {
				e = s.noSymlinkBelowBase(rel, mroot)
			}
			if e == nil {
				return mroot, nil
			}
			mroot.Close()
			if !errors.Is(e, fs.ErrNotExist) {
				return nil, e
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, openError("cannot open maildir", err)
		}
		s.forget(key) // removed behind our back: create it again
	}
	return s.createMaildir(pfs, rel, key, r)
}

// checkSubdirs refuses a maildir whose tmp/ or new/ is missing, a symlink
// (even one staying inside: tmp → new would expose half-written files) or
// not a directory. cur/ is not used by delivery and is checked on creation.
func checkSubdirs(mroot *os.Root) *Error {
	for _, sub := range []string{"tmp", "new"} {
		fi, err := mroot.Lstat(sub)
		if err != nil {
			return openError("cannot open maildir", err)
		}
		if !fi.IsDir() {
			return badMaildir("maildir subdirectory is not a directory", nil)
		}
	}
	return nil
}

// createMaildir is the slow path, taken once per maildir per process: it
// creates whatever is missing of the path with mode 0700 (owned by the
// recipient when Chown is set, as Postfix virtual(8) does for the parents it
// creates), then fsyncs the parent of every component and the maildir, so
// that no acknowledged message can vanish with a directory entry that was
// never written, even one another delivery created a moment ago.
func (s *Store) createMaildir(pfs parentFS, rel, key string, r *Recipient) (*os.Root, *Error) {
	mu := &s.creating[maphash.String(s.seed, key)%uint64(len(s.creating))]
	mu.Lock()
	defer mu.Unlock()

	comps := strings.Split(rel, "/")
	createdLast := false // the maildir (or folder) itself is new
	for i := range comps {
		p := strings.Join(comps[:i+1], "/")
		err := pfs.Mkdir(p, 0o700)
		switch {
		case err == nil:
			createdLast = i == len(comps)-1
			if e := s.own(pfs, p, r); e != nil {
				return nil, e
			}
		case errors.Is(err, fs.ErrExist):
			// Exists, maybe as a symlink or a file: the next Mkdir or the
			// OpenRoot below resolves it (confined to the base, if any).
			// Nothing is created in it before it is known to be the
			// recipient's to use.
			if e := s.usableBy(pfs, p, r, i == len(comps)-1); e != nil {
				return nil, e
			}
		default:
			return nil, openError("cannot create maildir", err)
		}
	}
	mroot, err := pfs.OpenRoot(rel)
	if err != nil {
		return nil, openError("cannot open maildir", err)
	}
	ok := false
	defer func() {
		if !ok {
			mroot.Close()
		}
	}()
	if s.base != "" {
		if e := s.noSymlinkBelowBase(rel, mroot); e != nil {
			return nil, e
		}
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		err := mroot.Mkdir(sub, 0o700)
		switch {
		case err == nil:
			if e := s.own(mroot, sub, r); e != nil {
				return nil, e
			}
		case errors.Is(err, fs.ErrExist):
			fi, err := mroot.Lstat(sub)
			if err != nil {
				return nil, openError("cannot open maildir", err)
			}
			if !fi.IsDir() {
				return nil, badMaildir("maildir subdirectory is not a directory", nil)
			}
		default:
			return nil, openError("cannot create maildir", err)
		}
	}
	if r.Folder != "" {
		// Maildir++: the marker says this is a folder, not a user's maildir
		// (Dovecot and courriel's IMAP create it with the folder).
		f, err := mroot.OpenFile("maildirfolder", os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, openError("cannot create maildirfolder", err)
		}
		f.Close()
		if s.chown {
			if err := mroot.Lchown("maildirfolder", r.UID, r.GID); err != nil {
				return nil, openError("cannot chown maildirfolder", err)
			}
		}
	}
	// Durability of the directory entries, bottom-up: cur/new/tmp in the
	// maildir, then each component in its parent.
	if err := syncDir(mroot.Open, "."); err != nil {
		return nil, ioError("cannot sync maildir", err)
	}
	for i := len(comps) - 1; i >= 0; i-- {
		parent := "."
		if i > 0 {
			parent = strings.Join(comps[:i], "/")
		}
		if err := syncDir(pfs.Open, parent); err != nil {
			return nil, ioError("cannot sync maildir parent", err)
		}
	}
	s.remember(key)
	ok = true
	if r.Folder != "" && createdLast && s.onFolderCreated != nil {
		s.onFolderCreated(*r)
	}
	return mroot, nil
}

// usableBy refuses an existing directory on the maildir's path (the
// maildir itself when leaf) that the recipient's uid and gid could not
// use: searched, and for the maildir written. Postfix's virtual(8) and
// Dovecot worked as the user, and the kernel refused them there; courriel
// works as root, so it asks the same question, or an entry whose
// homeDirectory points into another user's home would have its mail
// stored in, and read from, that user's maildir. Directories owned by
// root are the administrator's layout (the base, a domain's directory)
// and are trusted. Only with Chown: otherwise courriel runs as the one
// user owning every maildir, and the kernel decides.
func (s *Store) usableBy(pfs parentFS, name string, r *Recipient, leaf bool) *Error {
	if !s.chown {
		return nil
	}
	fi, err := pfs.Lstat(name)
	if err != nil {
		return openError("cannot open maildir", err)
	}
	access := uint32(unixperm.Execute)
	if leaf {
		access |= unixperm.Write
	}
	if unixperm.FileUserMayUse(fi, r.UID, r.GID, access) {
		return nil
	}
	return badMaildir(fmt.Sprintf("maildir path has a directory of another user that uid %d may not use", r.UID), nil)
}

// own gives a directory we just created its mode (explicitly: the umask
// must not change it) and, with Chown, its owner. Lchown: never through a
// symlink swapped in since.
func (s *Store) own(pfs interface {
	Lchown(string, int, int) error
	Chmod(string, os.FileMode) error
}, name string, r *Recipient) *Error {
	if s.chown {
		if err := pfs.Lchown(name, r.UID, r.GID); err != nil {
			return openError("cannot chown maildir", err)
		}
	}
	if err := pfs.Chmod(name, 0o700); err != nil {
		return openError("cannot chmod maildir", err)
	}
	return nil
}

func syncDir(open func(string) (*os.File, error), name string) error {
	f, err := open(name)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// maxKnown bounds the set of maildirs known to exist durably; past it the
// set is dropped and each maildir pays the slow path once more.
const maxKnown = 1 << 16

func (s *Store) isKnown(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.known[key]
	return ok
}

func (s *Store) remember(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.known) >= maxKnown {
		clear(s.known)
	}
	s.known[key] = struct{}{}
}

func (s *Store) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.known, key)
}

// maxFolderLen bounds Recipient.Folder: its directory name, with the
// leading dot, must fit a file name (255 bytes).
const maxFolderLen = 250

// validFolder accepts a Maildir++ folder as Recipient.Folder names it:
// components separated by '.', none empty (so no "..", no leading or
// trailing dot), printable ASCII (names are already in modified UTF-7),
// never '/' or '\\' (a path), nor IMAP's wildcards '*' and '%', nor a
// component with leading or trailing spaces.
func validFolder(name string) bool {
	if name == "" || len(name) > maxFolderLen {
		return false
	}
	for _, c := range strings.Split(name, ".") {
		if c == "" || c[0] == ' ' || c[len(c)-1] == ' ' {
			return false
		}
		for i := 0; i < len(c); i++ {
			switch b := c[i]; {
			case b < 0x20 || b > 0x7e, b == '/', b == '\\', b == '*', b == '%':
				return false
			}
		}
	}
	return true
}

package scripts

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"courriel/internal/unixperm"
)

// Names in the home directory: Pigeonhole's defaults.
const (
	// Dir is the storage directory, relative to the home directory.
	Dir = "sieve"
	// ActiveLink is the active script's symbolic link, relative to the home.
	ActiveLink = ".dovecot.sieve"
	// Ext is the extension of a script file.
	Ext = ".sieve"
	// binExt is the extension of Pigeonhole's compiled scripts.
	binExt = ".svbin"
	// origName is where Pigeonhole rescues a regular ~/.dovecot.sieve.
	origName = "dovecot.orig"
	tmpDir   = "tmp"
)

// Limits of one user's storage; zero values take the defaults named.
type Limits struct {
	// MaxScripts bounds the number of scripts (Pigeonhole's
	// sieve_quota_max_scripts); 0: no limit.
	MaxScripts int
	// MaxStorage bounds the bytes of all scripts together
	// (sieve_quota_max_storage); 0: no limit.
	MaxStorage int64
	// MaxScriptSize bounds one script (sieve_max_script_size);
	// default DefaultMaxScriptSize.
	MaxScriptSize int64
}

// DefaultMaxScriptSize is Pigeonhole's sieve_max_script_size default.
const DefaultMaxScriptSize = 1 << 20

// maxListed bounds the directory entries one listing reads: a home
// holding millions of files must not cost a session its memory.
const maxListed = 10000

// MaxNameLen bounds a script name in characters (Pigeonhole's
// SIEVE_MAX_SCRIPT_NAME_LEN); maxNameBytes keeps NAME.sieve within a
// file name's 255 bytes, which Pigeonhole leaves to open(2) to refuse.
const (
	MaxNameLen   = 256
	maxNameBytes = 255 - len(Ext)
)

// Owner says who owns what a Store creates.
type Owner struct {
	UID, GID int
	// Chown: give created files and directories UID and GID (when the
	// process runs as root, as delivery does).
	Chown bool
}

// Options configures Open.
type Options struct {
	Owner  Owner
	Limits Limits
	// Base, when set, is a directory the home must be under; the home is
	// then opened from it, so that no symbolic link between the two is
	// followed out of Base.
	Base string
	// CreateHome makes the home directory (mode 0700, owned by Owner)
	// when it does not exist; its parent must.
	CreateHome bool
}

// Errors of Store's methods, to test with errors.Is.
var (
	ErrNotFound    = errors.New("sieve script does not exist")
	ErrExists      = errors.New("sieve script already exists")
	ErrActive      = errors.New("sieve script is active")
	ErrInvalidName = errors.New("invalid sieve script name")
	ErrTooBig      = errors.New("sieve script too big")
)

// QuotaKind says which limit a script would exceed.
type QuotaKind int

const (
	QuotaMaxScripts QuotaKind = iota + 1 // too many scripts
	QuotaMaxStorage                      // all scripts together too large
	QuotaMaxSize                         // the one script too large
)

// QuotaError is HaveSpace's refusal (ManageSieve's QUOTA/MAXSCRIPTS and
// QUOTA/MAXSIZE response codes).
type QuotaError struct {
	Kind  QuotaKind
	Limit int64
}

func (e *QuotaError) Error() string {
	switch e.Kind {
	case QuotaMaxScripts:
		return fmt.Sprintf("sieve quota: no more than %d scripts", e.Limit)
	case QuotaMaxStorage:
		return fmt.Sprintf("sieve quota: scripts take no more than %d bytes together", e.Limit)
	default:
		return fmt.Sprintf("sieve quota: a script takes no more than %d bytes", e.Limit)
	}
}

// Script is one entry of List.
type Script struct {
	Name   string
	Active bool
	Size   int64
}

// Store is one user's scripts. It holds an open directory: Close it. Its
// methods may be called from one goroutine at a time; two Stores of one
// home (two ManageSieve sessions, delivery) may work at once: every change
// is a rename or a link, atomic on its own.
type Store struct {
	home  *os.Root
	path  string // the home's path, for messages and absolute active links
	owner Owner
	lim   Limits
}

// Open opens the scripts of the user whose home directory is home
// (absolute). The storage directory is created when a script is stored.
func Open(home string, o Options) (*Store, error) {
	home = filepath.Clean(home)
	if !filepath.IsAbs(home) {
		return nil, fmt.Errorf("sieve scripts: home %q is not absolute", home)
	}
	if o.Limits.MaxScriptSize <= 0 {
		o.Limits.MaxScriptSize = DefaultMaxScriptSize
	}
	open := func() (*os.Root, error) { return os.OpenRoot(home) }
	var base *os.Root
	if o.Base != "" {
		b := filepath.Clean(o.Base)
		rel, err := filepath.Rel(b, home)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("sieve scripts: home %q is not under %q", home, b)
		}
		if base, err = os.OpenRoot(b); err != nil {
			return nil, fmt.Errorf("sieve scripts: %w", err)
		}
		defer base.Close()
		open = func() (*os.Root, error) { return base.OpenRoot(rel) }
	}
	r, err := open()
	if errors.Is(err, fs.ErrNotExist) && o.CreateHome {
		if err = usableBy(os.Lstat, filepath.Dir(home), o.Owner); err == nil {
			err = makeHome(base, home, o.Owner)
		}
		if err == nil {
			r, err = open()
		}
	}
	if err == nil {
		if err = usableBy(r.Lstat, ".", o.Owner); err != nil {
			r.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: open home: %w", err)
	}
	return &Store{home: r, path: home, owner: o.Owner, lim: o.Limits}, nil
}

// ErrNotUsable refuses a home of another user that the owner's uid could
// not use.
var ErrNotUsable = errors.New("a directory of another user")

// usableBy refuses a directory the owner's uid and gid could not search
// and write: Pigeonhole's ManageSieve worked as the user, and the kernel
// refused it another user's home; courriel works as root and asks the
// same question, or an entry whose homeDirectory is another user's would
// read and replace that user's scripts. Root's directories are the
// administrator's and trusted. Only with Chown.
func usableBy(lstat func(string) (fs.FileInfo, error), name string, o Owner) error {
	if !o.Chown {
		return nil
	}
	fi, err := lstat(name)
	if err != nil {
		return err
	}
	if !unixperm.FileUserMayUse(fi, o.UID, o.GID, unixperm.Write|unixperm.Execute) {
		return fmt.Errorf("%w: uid %d may not use it", ErrNotUsable, o.UID)
	}
	return nil
}

func makeHome(base *os.Root, home string, o Owner) error {
	mkdir, lchown := os.Mkdir, os.Lchown
	name := home
	if base != nil {
		mkdir, lchown = base.Mkdir, base.Lchown
		name, _ = filepath.Rel(base.Name(), home)
	}
	if err := mkdir(name, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	if o.Chown {
		return lchown(name, o.UID, o.GID)
	}
	return nil
}

// Close releases the home directory.
func (s *Store) Close() error { return s.home.Close() }

// Limits returns the limits in force.
func (s *Store) Limits() Limits { return s.lim }

// ValidName checks a script name as RFC 5804 §1.6 and Pigeonhole do:
// UTF-8, 1 to 256 characters, no control characters (C0, DEL, C1), no
// U+2028/U+2029, and no "/" (a path separator in this storage). No
// normalization is required, as in Pigeonhole.
func ValidName(name string) error {
	if name == "" || len(name) > maxNameBytes || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameLen {
		return ErrInvalidName
	}
	for _, r := range name {
		switch {
		case r <= 0x1f, r == 0x7f, r >= 0x80 && r <= 0x9f, r == '/', r == 0xff, r == 0x2028, r == 0x2029:
			return ErrInvalidName
		}
	}
	return nil
}

func fileOf(name string) string { return path.Join(Dir, name+Ext) }

// nameOf returns the script name of a file in the storage directory, ""
// when the file is not a script (Pigeonhole: NAME.sieve, NAME not empty).
func nameOf(file string) string {
	name, ok := strings.CutSuffix(file, Ext)
	if !ok || name == "" || ValidName(name) != nil {
		return ""
	}
	return name
}

// List returns the scripts, sorted by name, the active one marked.
func (s *Store) List() ([]Script, error) {
	active, err := s.Active()
	if err != nil {
		return nil, err
	}
	ents, err := s.readDir()
	if err != nil {
		return nil, err
	}
	var out []Script
	for _, e := range ents {
		name := nameOf(e.Name())
		if name == "" || !e.Type().IsRegular() {
			continue
		}
		sc := Script{Name: name, Active: name == active}
		if fi, err := e.Info(); err == nil {
			sc.Size = fi.Size()
		}
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b Script) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// readDir reads the storage directory, at most maxListed entries; a
// missing directory has none.
func (s *Store) readDir() ([]fs.DirEntry, error) {
	d, err := s.home.Open(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: %w", err)
	}
	defer d.Close()
	if fi, err := d.Stat(); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("sieve scripts: %s/%s is not a directory", s.path, Dir)
	}
	ents, err := d.ReadDir(maxListed)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("sieve scripts: list %s/%s: %w", s.path, Dir, err)
	}
	return ents, nil
}

// Get returns a script's content.
func (s *Store) Get(name string) ([]byte, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	return s.readScript(fileOf(name), s.lim.MaxScriptSize)
}

// readScript reads a regular file of the home, refusing a symbolic link
// (even one inside the home: a script is never an alias of another file)
// and anything larger than max.
func (s *Store) readScript(file string, max int64) ([]byte, error) {
	lfi, err := s.home.Lstat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: %w", err)
	}
	if !lfi.Mode().IsRegular() {
		return nil, ErrNotFound
	}
	f, err := s.home.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: %w", err)
	}
	// The file opened must be the one looked at: no swap for a link or a
	// FIFO in between.
	if !fi.Mode().IsRegular() || !os.SameFile(fi, lfi) {
		return nil, ErrNotFound
	}
	if fi.Size() > max {
		return nil, ErrTooBig
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("sieve scripts: read %s: %w", file, err)
	}
	if int64(len(b)) > max {
		return nil, ErrTooBig
	}
	return b, nil
}

// exists reports whether a script exists (as a regular file).
func (s *Store) exists(name string) (bool, error) {
	fi, err := s.home.Lstat(fileOf(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sieve scripts: %w", err)
	}
	return fi.Mode().IsRegular(), nil
}

// HaveSpace says whether a script of size bytes may be stored as name
// (replacing a script of that name): nil, or a *QuotaError. It counts as
// Pigeonhole does: the other scripts, plus this one.
func (s *Store) HaveSpace(name string, size int64) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if size > s.lim.MaxScriptSize {
		return &QuotaError{Kind: QuotaMaxSize, Limit: s.lim.MaxScriptSize}
	}
	if s.lim.MaxScripts <= 0 && s.lim.MaxStorage <= 0 {
		return nil
	}
	ents, err := s.readDir()
	if err != nil {
		return err
	}
	count, total := int64(1), size
	for _, e := range ents {
		n := nameOf(e.Name())
		if n == "" || n == name || !e.Type().IsRegular() {
			continue
		}
		count++
		if s.lim.MaxScripts > 0 && count > int64(s.lim.MaxScripts) {
			return &QuotaError{Kind: QuotaMaxScripts, Limit: int64(s.lim.MaxScripts)}
		}
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
		if s.lim.MaxStorage > 0 && total > s.lim.MaxStorage {
			return &QuotaError{Kind: QuotaMaxStorage, Limit: s.lim.MaxStorage}
		}
	}
	return nil
}

// modes returns the modes of new files and directories: Pigeonhole's
// defaults, or derived from the storage directory's mode when it exists.
func (s *Store) modes() (file, dir fs.FileMode) {
	fi, err := s.home.Stat(Dir)
	if err != nil || !fi.IsDir() {
		return 0o600, 0o700
	}
	m := fi.Mode().Perm()
	return m&0o666 | 0o600, m&0o777 | 0o700
}

// ensureDirs makes ~/sieve and ~/sieve/tmp.
func (s *Store) ensureDirs() (fs.FileMode, error) {
	fileMode, dirMode := s.modes()
	for _, d := range []string{Dir, path.Join(Dir, tmpDir)} {
		err := s.home.Mkdir(d, dirMode)
		if errors.Is(err, fs.ErrExist) {
			fi, err := s.home.Lstat(d)
			if err != nil {
				return 0, fmt.Errorf("sieve scripts: %w", err)
			}
			if !fi.IsDir() {
				return 0, fmt.Errorf("sieve scripts: %s/%s is not a directory", s.path, d)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("sieve scripts: %w", err)
		}
		if err := s.home.Chmod(d, dirMode|fs.ModeDir); err != nil { // the umask does not decide
			return 0, fmt.Errorf("sieve scripts: %w", err)
		}
		if err := s.chown(d); err != nil {
			return 0, err
		}
		if err := s.syncDir(path.Dir(d)); err != nil {
			return 0, err
		}
	}
	return fileMode, nil
}

func (s *Store) chown(name string) error {
	if !s.owner.Chown {
		return nil
	}
	if err := s.home.Lchown(name, s.owner.UID, s.owner.GID); err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	return nil
}

func (s *Store) syncDir(name string) error {
	d, err := s.home.Open(name)
	if err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sieve scripts: fsync %s: %w", name, err)
	}
	return nil
}

func tmpName(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Put stores a script durably (a file in tmp/, fsynced, renamed over
// NAME.sieve, the directory fsynced), replacing one of that name. The
// content is not checked here: ManageSieve compiles it first. The
// limits apply (HaveSpace).
func (s *Store) Put(name string, content []byte) error {
	if err := s.HaveSpace(name, int64(len(content))); err != nil {
		return err
	}
	fileMode, err := s.ensureDirs()
	if err != nil {
		return err
	}
	s.cleanTmp()
	tmp := path.Join(Dir, tmpDir, tmpName("courriel."))
	f, err := s.home.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			_ = s.home.Remove(tmp)
		}
	}()
	if err := f.Chmod(fileMode); err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	if s.owner.Chown {
		if err := f.Chown(s.owner.UID, s.owner.GID); err != nil {
			return fmt.Errorf("sieve scripts: %w", err)
		}
	}
	if _, err := f.Write(content); err != nil {
		return fmt.Errorf("sieve scripts: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sieve scripts: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	if err := s.home.Rename(tmp, fileOf(name)); err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	ok = true
	// A compiled copy of the old version would be stale.
	_ = s.home.Remove(path.Join(Dir, name+binExt))
	return s.syncDir(Dir)
}

// staleTmp is the age after which a file left in tmp/ by a crash is
// removed (Pigeonhole's SIEVE_FILE_STORAGE_TMP_DELETE_SECS, 36 hours).
const staleTmp = 36 * time.Hour

// cleanTmp removes what crashed writers left in tmp/, a bounded number at
// a time (the directory is empty but for them).
func (s *Store) cleanTmp() {
	d, err := s.home.Open(path.Join(Dir, tmpDir))
	if err != nil {
		return
	}
	defer d.Close()
	ents, _ := d.ReadDir(100)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmp && fi.Mode().IsRegular() {
			_ = s.home.Remove(path.Join(Dir, tmpDir, e.Name()))
		}
	}
}

// Delete removes a script and its compiled copy; the active script
// cannot be deleted (ErrActive).
func (s *Store) Delete(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if ok, err := s.exists(name); err != nil {
		return err
	} else if !ok {
		return ErrNotFound
	}
	if active, err := s.Active(); err != nil {
		return err
	} else if active == name {
		return ErrActive
	}
	if err := s.home.Remove(fileOf(name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return fmt.Errorf("sieve scripts: %w", err)
	}
	_ = s.home.Remove(path.Join(Dir, name+binExt))
	return s.syncDir(Dir)
}

// Rename gives a script a new name, which must be free (ErrExists); the
// active script stays active under its new name.
func (s *Store) Rename(oldName, newName string) error {
	if err := ValidName(oldName); err != nil {
		return err
	}
	if err := ValidName(newName); err != nil {
		return err
	}
	if ok, err := s.exists(oldName); err != nil {
		return err
	} else if !ok {
		return ErrNotFound
	}
	if oldName == newName {
		return nil
	}
	active, err := s.Active()
	if err != nil {
		return err
	}
	// A hard link never replaces an existing name, so a script created
	// meanwhile under newName is not lost; the old name goes after the
	// active link has moved, so delivery always finds a script.
	if err := s.home.Link(fileOf(oldName), fileOf(newName)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return fmt.Errorf("sieve scripts: %w", err)
	}
	if active == oldName {
		if err := s.replaceLink(newName); err != nil {
			_ = s.home.Remove(fileOf(newName))
			return err
		}
	}
	if err := s.home.Remove(fileOf(oldName)); err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	_ = s.home.Remove(path.Join(Dir, oldName+binExt))
	return s.syncDir(Dir)
}

// linkTarget is what ~/.dovecot.sieve points to: relative, as Pigeonhole
// writes it when the storage is beside the link, so the home can move.
func linkTarget(name string) string { return Dir + "/" + name + Ext }

// Active returns the active script's name, "" when none is: no link, a
// regular file (see the package comment), or a link that does not point
// into the storage directory (Pigeonhole: "no active script").
func (s *Store) Active() (string, error) {
	target, err := s.home.Readlink(ActiveLink)
	if err != nil {
		var errno syscall.Errno
		if errors.Is(err, fs.ErrNotExist) || errors.As(err, &errno) && errno == syscall.EINVAL {
			return "", nil
		}
		return "", fmt.Errorf("sieve scripts: %w", err)
	}
	return s.parseLink(target), nil
}

// parseLink returns the script a link points to, "" when it points
// elsewhere: "sieve/NAME.sieve", or an absolute path that is the same.
func (s *Store) parseLink(target string) string {
	dir, file := path.Split(target)
	name := nameOf(file)
	if name == "" {
		return ""
	}
	dir = path.Clean(dir)
	if !path.IsAbs(dir) {
		dir = path.Join(filepath.ToSlash(s.path), dir)
	}
	if dir != path.Join(filepath.ToSlash(s.path), Dir) {
		return ""
	}
	return name
}

// SetActive makes name the active script by swapping ~/.dovecot.sieve for
// a new link in one rename; "" deactivates (the link is removed). A
// regular file in the link's place is first copied to dovecot.orig.sieve.
func (s *Store) SetActive(name string) error {
	if name != "" {
		if err := ValidName(name); err != nil {
			return err
		}
		if ok, err := s.exists(name); err != nil {
			return err
		} else if !ok {
			return ErrNotFound
		}
	}
	if err := s.rescueRegular(); err != nil {
		return err
	}
	if name == "" {
		if err := s.home.Remove(ActiveLink); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sieve scripts: %w", err)
		}
		return s.syncDir(".")
	}
	return s.replaceLink(name)
}

func (s *Store) replaceLink(name string) error {
	tmp := tmpName(ActiveLink + "-new.")
	if err := s.home.Symlink(linkTarget(name), tmp); err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	if err := s.chown(tmp); err != nil {
		_ = s.home.Remove(tmp)
		return err
	}
	if err := s.home.Rename(tmp, ActiveLink); err != nil {
		_ = s.home.Remove(tmp)
		return fmt.Errorf("sieve scripts: %w", err)
	}
	return s.syncDir(".")
}

// rescueRegular copies a regular ~/.dovecot.sieve to
// ~/sieve/dovecot.orig.sieve (replacing an earlier copy), as Pigeonhole
// does before the file is replaced; anything else but a link or nothing
// in its place is an error for the admin.
func (s *Store) rescueRegular() error {
	fi, err := s.home.Lstat(ActiveLink)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sieve scripts: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil
	case !fi.Mode().IsRegular():
		return fmt.Errorf("sieve scripts: %s/%s is neither a symbolic link nor a regular file", s.path, ActiveLink)
	}
	b, err := s.readScript(ActiveLink, max(s.lim.MaxScriptSize, 16<<20))
	if err != nil {
		return fmt.Errorf("sieve scripts: rescue %s/%s: %w", s.path, ActiveLink, err)
	}
	// Put, without the quota: the copy must not fail for the user's limit.
	saved := s.lim
	s.lim.MaxScripts, s.lim.MaxStorage, s.lim.MaxScriptSize = 0, 0, int64(len(b))
	err = s.Put(origName, b)
	s.lim = saved
	if err != nil {
		return fmt.Errorf("sieve scripts: rescue %s/%s: %w", s.path, ActiveLink, err)
	}
	return nil
}

// ActiveScript returns what delivery runs: the active script's name and
// content, or a regular ~/.dovecot.sieve (name ""). ok is false when
// there is none (no link, a link pointing outside ~/sieve, a missing
// target). Errors are the file system's, or ErrTooBig.
func (s *Store) ActiveScript() (name string, content []byte, ok bool, err error) {
	fi, err := s.home.Lstat(ActiveLink)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("sieve scripts: %w", err)
	}
	if fi.Mode().IsRegular() {
		b, err := s.readScript(ActiveLink, s.lim.MaxScriptSize)
		if errors.Is(err, ErrNotFound) {
			return "", nil, false, nil
		}
		return "", b, err == nil, err
	}
	name, err = s.Active()
	if err != nil || name == "" {
		return "", nil, false, err
	}
	b, err := s.Get(name)
	if errors.Is(err, ErrNotFound) {
		return "", nil, false, nil
	}
	return name, b, err == nil, err
}

// ReadActive is what delivery calls for each local recipient: the active
// script of the user whose home is home (see ActiveScript), ok false when
// there is none, the home included. It opens and closes the home; of o,
// Base and Limits.MaxScriptSize apply (a larger script is ErrTooBig).
func ReadActive(home string, o Options) (name string, content []byte, ok bool, err error) {
	o.CreateHome = false
	s, err := Open(home, o)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, false, nil
		}
		return "", nil, false, err
	}
	defer s.Close()
	return s.ActiveScript()
}

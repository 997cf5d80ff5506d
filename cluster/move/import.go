package move

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"courriel/directory"
	"courriel/internal/atomicfile"
)

// ErrRefused wraps what an import refuses for good (a hostile or broken
// stream, a home that already holds mail): the SMTP hop answers 5xx. Any
// other error (the directory, the disk) is temporary: 4xx.
var ErrRefused = errors.New("move: import refused")

// ErrHomeExists: the user already has mail on this node; an import never
// merges into it nor duplicates it.
var ErrHomeExists = errors.New("a maildir with mail already exists here")

// UserLookup finds a login user: *directory.Directory.
type UserLookup interface {
	LookupUser(ctx context.Context, login string) (directory.User, error)
}

// ImportOptions configure an Importer.
type ImportOptions struct {
	Directory UserLookup // this node's replica: it must already list the user
	// Base is delivery's AllowedBase: homes must be under it, with no
	// symlink on the way.
	Base   string
	Chown  bool // files belong to the user's uid/gid (cmd: when root)
	Limits Limits
	// Gate, when set, refuses local copies into the home while it is
	// written, and is opened for it afterwards (a user moved back here).
	Gate   *Gate
	Logger *slog.Logger
	Now    func() time.Time // default time.Now
	// PendingTTL bounds how long a pre-copy's staging directory waits for
	// its final delta (default DefaultPendingTTL).
	PendingTTL time.Duration
}

// Importer writes homes sent by other nodes (the SMTP hop's XIMPORT).
type Importer struct {
	o ImportOptions
	// syncFS makes the staging directory durable: syncFS, unless a test
	// that runs thousands of imports (the fuzzer) replaces it.
	syncFS func(*os.Root) error

	mu      sync.Mutex
	pending map[string]*pending // by move id
	busy    map[string]bool     // homes an import is writing
}

// NewImporter returns an Importer.
func NewImporter(o ImportOptions) *Importer {
	o.Limits = o.Limits.withDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PendingTTL <= 0 {
		o.PendingTTL = DefaultPendingTTL
	}
	return &Importer{o: o, syncFS: syncFS, pending: map[string]*pending{}, busy: map[string]bool{}}
}

func refused(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
}

// ImportHome reads the stream a move sends (Archive.WriteTo) for login and
// puts the home in place where this node's directory says it is: written
// into a staging directory beside it (through an os.Root: no name leads
// out; no symlink but ~/.dovecot.sieve into ~/sieve/; regular files and
// directories only, within the Limits), owned by the user, files 0600 and
// directories 0700 as delivery makes them, mtimes kept (IMAP's internal
// dates), made durable (syncfs), then renamed into place. A home holding
// mail already is refused (ErrHomeExists); an existing home without mail
// (created by a login or a ManageSieve connection) is set aside as
// <home>.replaced-<time>. On any error nothing is left but the staging
// directory's removal. It may return before reading all of r.
//
// A pre-copy (format 2) leaves its staging directory in place for its
// move id, until a final delta for that id puts it in place, another
// pre-copy of the same home replaces it, or PendingTTL passes; a delta
// for an id this node has no staging directory of is refused. A delta
// that fails removes the staging directory: the move starts again.
func (im *Importer) ImportHome(ctx context.Context, login string, r io.Reader) error {
	start := im.o.Now()
	tr := tar.NewReader(r)
	k, token, err := readHeader(tr, login)
	if err != nil {
		return err
	}
	im.expire()
	u, err := im.o.Directory.LookupUser(ctx, login)
	if err != nil {
		return fmt.Errorf("move: import %s: look up the user: %w", login, err)
	}
	if u.Maildir != "" && !under(strings.TrimSuffix(u.Maildir, "/"), u.Home) {
		return refused("the maildir of %s is not inside its home", login)
	}
	parent, name, err := openParent(im.o.Base, u.Home)
	if err != nil {
		return fmt.Errorf("move: import %s: %w", login, err)
	}
	defer parent.Close()
	unlock, ok := im.lockHome(u.Home)
	if !ok {
		return fmt.Errorf("move: import %s: another import of %s is running", login, u.Home)
	}
	defer unlock()
	var staging string
	var p *pending
	w := &homeWriter{lim: im.o.Limits, u: u, chown: im.o.Chown, dirs: map[string]bool{".": true}, sum: newDigest()}
	switch k {
	case kindFull, kindPre:
		if k == kindPre {
			im.dropPending(parent, name, u.Home)
		}
		staging = ".courriel-import-" + name + "-" + randomSuffix()
		if len(staging) > maxNameLen {
			staging = ".courriel-import-" + randomSuffix()
		}
		if err := parent.Mkdir(staging, 0o700); err != nil {
			return fmt.Errorf("move: import %s: staging directory: %w", login, err)
		}
	default:
		if p = im.takePending(token, login, u.Home); p == nil {
			return refused("no pre-copy of %s for move %s on this node (it expired, failed, or this node restarted)", login, token)
		}
		staging, w.delta, w.held, w.heldBytes = p.staging, true, p.entries, p.bytes
		if fi, err := parent.Lstat(staging); err != nil || !fi.IsDir() {
			return refused("the staging directory of move %s is gone", token)
		}
	}
	done := false
	defer func() {
		if !done {
			_ = parent.RemoveAll(staging)
		}
	}()
	// A home with mail is refused before anything is written (and again
	// before the rename, for a final or full import).
	if _, err := checkExisting(parent, name); err != nil {
		return fmt.Errorf("move: import %s: %w", login, err)
	}

	// The home's path stays closed to local copies while it is written.
	if k == kindFull || k == kindFinal {
		reopen := func() {}
		if im.o.Gate != nil {
			reopen = im.o.Gate.Close(u.Home)
		}
		defer reopen()
	}
	st, err := parent.OpenRoot(staging)
	if err != nil {
		return fmt.Errorf("move: import %s: staging directory: %w", login, err)
	}
	defer st.Close()
	w.root = st
	if !w.delta {
		if err := w.own(".", 0o700); err != nil {
			return fmt.Errorf("move: import %s: %w", login, err)
		}
	}
	if w.delta {
		err = w.readOps(ctx, tr)
	}
	if err == nil {
		err = w.readHome(ctx, tr)
	}
	w.closeDir()
	if err != nil {
		return fmt.Errorf("move: import %s: %w", login, err)
	}
	if k == kindPre || k == kindDelta {
		// Durable now, while the user works: the final delta's syncfs,
		// held, then has only the changes to write.
		if err := im.syncFS(st); err != nil {
			return fmt.Errorf("move: import %s: sync: %w", login, err)
		}
		im.keepPending(&pending{token: token, login: login, home: u.Home, staging: staging,
			entries: w.held, bytes: w.heldBytes, at: im.o.Now()})
		done = true
		im.o.Logger.Info("home staged", "login", login, "home", u.Home, "kind", kindNames[k], "move", token,
			"entries", w.entries, "bytes", w.total, "renamed", w.renamed, "removed", w.removed,
			"elapsed", im.o.Now().Sub(start).Round(time.Millisecond))
		return nil
	}
	if err := im.syncFS(st); err != nil {
		return fmt.Errorf("move: import %s: sync: %w", login, err)
	}
	// The home may have appeared meanwhile (a ManageSieve login): checked
	// again just before taking its place.
	existing, err := checkExisting(parent, name)
	if err != nil {
		return fmt.Errorf("move: import %s: %w", login, err)
	}
	var aside string
	if existing {
		if aside, err = setAside(parent, name, "replaced", im.o.Now()); err != nil {
			return fmt.Errorf("move: import %s: set the empty home aside: %w", login, err)
		}
	}
	if err := parent.Rename(staging, name); err != nil {
		return fmt.Errorf("move: import %s: rename into place: %w", login, err)
	}
	done = true
	if err := atomicfile.SyncDir(parent, "."); err != nil {
		// Renamed: the next sync (any delivery's) makes it durable; the
		// sender hears of the failure and keeps the user where they were.
		return fmt.Errorf("move: import %s: sync the parent of the home: %w", login, err)
	}
	if im.o.Gate != nil {
		im.o.Gate.Open(u.Home)
	}
	im.o.Logger.Info("home imported", "login", login, "home", u.Home, "entries", w.entries, "bytes", w.total,
		"renamed", w.renamed, "removed", w.removed, "move", token,
		"replaced", aside, "elapsed", im.o.Now().Sub(start).Round(time.Millisecond))
	return nil
}

// readHeader reads the stream's first member and checks it is for login;
// it returns the kind of stream and, for format 2, its move id.
func readHeader(tr *tar.Reader, login string) (kind, string, error) {
	h, err := tr.Next()
	if err != nil {
		return 0, "", refused("no header: %v", err)
	}
	if h.Name != headerName || h.Typeflag != tar.TypeReg || h.Size > maxMetaSize {
		return 0, "", refused("the stream does not start with %s", headerName)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return 0, "", refused("header: %v", err)
	}
	if string(b) == formatLine+"\nlogin "+login+"\n" {
		return kindFull, "", nil
	}
	rest, ok := strings.CutPrefix(string(b), formatLine2+"\nlogin "+login+"\n")
	if line, ok2 := strings.CutSuffix(rest, "\n"); ok && ok2 {
		name, token, _ := strings.Cut(line, " ")
		for k, n := range kindNames {
			if n == name && validToken(token) {
				return k, token, nil
			}
		}
	}
	return 0, "", refused("the header is not %q or %q for login %q", formatLine, formatLine2, login)
}

// checkExisting says whether name exists in parent as a home without mail;
// ErrHomeExists (wrapped in ErrRefused) when it holds mail or Sieve
// scripts, or is not a plain directory.
func checkExisting(parent *os.Root, name string) (bool, error) {
	fi, err := parent.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, refused("the home path exists and is not a directory")
	}
	home, err := parent.OpenRoot(name)
	if err != nil {
		return false, err
	}
	defer home.Close()
	if n, err := countMail(home, ".", 0); err != nil {
		return false, err
	} else if n > 0 {
		return false, fmt.Errorf("%w: %w (%d files)", ErrRefused, ErrHomeExists, n)
	}
	return true, nil
}

// countMail counts the regular files in cur/ and new/ directories and in
// sieve/ below dir (stops at the first it finds).
func countMail(r *os.Root, dir string, depth int) (int, error) {
	if depth > maxDepth {
		return 1, nil // deeper than any import writes: count as content
	}
	f, err := r.Open(dir)
	if err != nil {
		return 0, err
	}
	des, err := f.ReadDir(10000)
	f.Close()
	if err != nil && err != io.EOF {
		return 0, err
	}
	base := path.Base(dir)
	counts := base == "cur" || base == "new" || (dir == scriptDir)
	for _, de := range des {
		rel := path.Join(dir, de.Name())
		switch {
		case de.Type().IsRegular() && counts:
			return 1, nil
		case de.IsDir() && de.Type()&fs.ModeSymlink == 0:
			if n, err := countMail(r, rel, depth+1); err != nil || n > 0 {
				return n, err
			}
		}
	}
	return 0, nil
}

// homeWriter writes the home members of a stream into the staging root.
type homeWriter struct {
	root    *os.Root
	lim     Limits
	u       directory.User
	chown   bool
	dirs    map[string]bool // directories written or found, "." the home
	entries int             // members of this stream (its trailer's count)
	total   int64
	sum     *digest
	cur     *os.File // the directory last written into (dir)
	curRel  string

	// delta: the stream changes a staging directory a pre-copy wrote
	// (its ops first; its members' parents may already be there).
	delta            bool
	held             int   // entries in the staging directory, for the Limits
	heldBytes        int64 // bytes of its files
	renamed, removed int
}

func (w *homeWriter) readHome(ctx context.Context, tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if err != nil {
			return refused("the stream ends before its trailer: %v", err)
		}
		if h.Name == trailerName {
			return w.trailer(tr, h)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.member(tr, h); err != nil {
			return err
		}
	}
}

func (w *homeWriter) member(tr *tar.Reader, h *tar.Header) error {
	rel, ok := strings.CutPrefix(strings.TrimSuffix(h.Name, "/"), homePrefix)
	if !ok {
		return refused("member %q is outside home/", h.Name)
	}
	if err := checkRel(rel); err != nil {
		return refused("member: %v", err)
	}
	w.entries++
	if w.held++; w.held > w.lim.MaxEntries {
		return refused("more than %d entries", w.lim.MaxEntries)
	}
	if !w.hasDir(path.Dir(rel)) {
		return refused("%s comes before its directory", rel)
	}
	w.sum.entry(rel, h.Typeflag, h.Linkname)
	switch h.Typeflag {
	case tar.TypeDir:
		if err := w.root.Mkdir(rel, 0o700); err != nil {
			return refused("directory %s: %v", rel, err)
		}
		w.dirs[rel] = true
		return w.own(rel, 0o700)
	case tar.TypeReg:
		return w.file(tr, h, rel)
	case tar.TypeSymlink:
		if err := checkLink(rel, h.Linkname); err != nil {
			return refused("%v", err)
		}
		if err := w.root.Symlink(h.Linkname, rel); err != nil {
			return refused("link %s: %v", rel, err)
		}
		if w.chown {
			if err := w.root.Lchown(rel, w.u.UID, w.u.GID); err != nil {
				return fmt.Errorf("chown %s: %w", rel, err)
			}
		}
		return nil
	default:
		return refused("%s: type %q is neither a file, a directory nor the Sieve link", rel, h.Typeflag)
	}
}

func (w *homeWriter) file(tr *tar.Reader, h *tar.Header, rel string) error {
	if h.Size < 0 || h.Size > w.lim.MaxFileSize {
		return refused("%s: %d bytes, more than %d", rel, h.Size, w.lim.MaxFileSize)
	}
	w.total += h.Size
	if w.heldBytes += h.Size; w.heldBytes > w.lim.MaxTotal {
		return refused("more than %d bytes", w.lim.MaxTotal)
	}
	d, err := w.dir(path.Dir(rel))
	if err != nil {
		return fmt.Errorf("open the directory of %s: %w", rel, err)
	}
	// One name in a directory opened through the root (and created by
	// this import): O_EXCL|O_NOFOLLOW create it, nothing is followed, as
	// delivery writes into new/ (delivery/nosymlink.go). fchown, fchmod
	// and utimensat on that name: no path walk per file.
	name := path.Base(rel)
	var fd int
	err = withFd(d, func(dfd int) error {
		var err error
		fd, err = unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return refused("file %s: %v", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	n, err := io.Copy(io.MultiWriter(f, w.sum.h), tr)
	if err == nil && w.chown {
		err = f.Chown(w.u.UID, w.u.GID)
	}
	if err == nil {
		err = f.Chmod(0o600) // the umask must not change it
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return refused("%s: the stream ends inside it", rel)
		}
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if n != h.Size {
		return refused("%s: %d bytes of %d", rel, n, h.Size)
	}
	ts := unix.NsecToTimespec(h.ModTime.UnixNano())
	if err := withFd(d, func(dfd int) error {
		return unix.UtimesNanoAt(dfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}); err != nil {
		return fmt.Errorf("mtime of %s: %w", rel, err)
	}
	return nil
}

// dir returns the open directory rel of the staging root, keeping the
// last one open: a stream lists a directory's files together.
func (w *homeWriter) dir(rel string) (*os.File, error) {
	if w.cur != nil && w.curRel == rel {
		return w.cur, nil
	}
	w.closeDir()
	f, err := w.root.OpenFile(rel, os.O_RDONLY|unix.O_DIRECTORY|noFollow, 0)
	if err != nil {
		return nil, err
	}
	w.cur, w.curRel = f, rel
	return f, nil
}

func (w *homeWriter) closeDir() {
	if w.cur != nil {
		w.cur.Close()
		w.cur, w.curRel = nil, ""
	}
}

// withFd runs fn with f's descriptor, kept open meanwhile.
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// own gives rel its mode (the umask must not change it) and, with chown,
// the user as owner.
func (w *homeWriter) own(rel string, mode fs.FileMode) error {
	if w.chown {
		if err := w.root.Lchown(rel, w.u.UID, w.u.GID); err != nil {
			return fmt.Errorf("chown %s: %w", rel, err)
		}
	}
	if err := w.root.Chmod(rel, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", rel, err)
	}
	return nil
}

// trailer checks the stream's last member against what was written, then
// the end of the stream.
func (w *homeWriter) trailer(tr *tar.Reader, h *tar.Header) error {
	if h.Typeflag != tar.TypeReg || h.Size > maxMetaSize {
		return refused("bad trailer")
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return refused("trailer: %v", err)
	}
	entries, total, sum, err := parseTrailer(b)
	if err != nil {
		return refused("%v", err)
	}
	if entries != w.entries || total != w.total || !bytes.Equal([]byte(sum), fmt.Appendf(nil, "%x", w.sum.h.Sum(nil))) {
		return refused("the stream does not match its trailer (%d entries, %d bytes received; %d, %d sent)", w.entries, w.total, entries, total)
	}
	if _, err := tr.Next(); err != io.EOF {
		return refused("data after the trailer")
	}
	return nil
}

// syncFS makes everything written under r durable with one syncfs: one
// call instead of an fsync per message file of a large maildir.
func syncFS(r *os.Root) error {
	f, err := r.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

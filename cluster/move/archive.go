package move

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// statInfo reads the fields a scan needs from a stat.
type statInfo struct{ st *unix.Stat_t }

func (s statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s statInfo) Size() int64        { return s.st.Size }

func (s statInfo) Mode() fs.FileMode {
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFREG:
		return 0
	case unix.S_IFLNK:
		return fs.ModeSymlink
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	}
	return fs.ModeDevice
}

// The stream a move sends (a POSIX tar, PAX format, so that names of any
// length and nanosecond mtimes pass):
//
//	courriel-move/header    "courriel-home 1\nlogin <login>\n" (a whole home,
//	                        put in place), or "courriel-home 2\nlogin
//	                        <login>\n<kind> <move id>\n" (see below)
//	courriel-move/ops       delta and final only: "R\t<from>\t<to>\n" (a
//	                        message renamed: its flags changed) and
//	                        "D\t<rel>\n" (a file, link or directory tree
//	                        removed, or about to be sent again), in order
//	home/<rel>              every directory, regular file and the
//	                        ~/.dovecot.sieve link of the home (of a delta:
//	                        the new and changed ones), parents first
//	courriel-move/trailer   "entries N\nbytes N\nsha256 HEX\n" (fixed width)
//
// Kinds of format 2, all for one move id (32 hex digits the mover draws):
// "pre-copy" writes the home into a new staging directory kept for that
// id, while the user keeps working; "delta" applies the changes since to
// it, still kept; "final" (the user held) applies the last changes and
// puts the staging directory in place, as format 1 does.
//
// The trailer counts the home members and hashes the ops, the members'
// names, types, link targets and contents: a stream cut at a member
// boundary, or changed on the way, is refused. Owners and modes are not
// sent: the receiving node takes them from its directory and from
// delivery's rules.
const (
	headerName  = "courriel-move/header"
	opsName     = "courriel-move/ops"
	trailerName = "courriel-move/trailer"
	homePrefix  = "home/"
	formatLine  = "courriel-home 1"
	formatLine2 = "courriel-home 2"
	maxMetaSize = 1024
)

// kind is what a stream asks of the receiving node.
type kind int

const (
	kindFull  kind = iota // format 1: a whole home, put in place
	kindPre               // a whole home into a staging directory, kept
	kindDelta             // changes applied to that staging directory, kept
	kindFinal             // changes applied, then put in place
)

var kindNames = map[kind]string{kindPre: "pre-copy", kindDelta: "delta", kindFinal: "final"}

// Limits bound what one home may hold, on both ends.
type Limits struct {
	MaxEntries  int   // files and directories; default DefaultMaxEntries
	MaxFileSize int64 // one file; default DefaultMaxFileSize
	MaxTotal    int64 // all file contents; default DefaultMaxTotal
}

const (
	DefaultMaxEntries        = 4 << 20
	DefaultMaxFileSize int64 = 1 << 30
	DefaultMaxTotal    int64 = 1 << 40
	maxDepth                 = 32
	maxPathLen               = 4096
	maxNameLen               = 255
)

func (l Limits) withDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultMaxFileSize
	}
	if l.MaxTotal <= 0 {
		l.MaxTotal = DefaultMaxTotal
	}
	return l
}

// entry is one member of the home part of the stream.
type entry struct {
	rel   string      // relative to the home, slash-separated
	mode  fs.FileMode // fs.ModeDir, 0 (regular) or fs.ModeSymlink
	size  int64
	mtime time.Time
	link  string // symlink target
	// stale: sent with zeros for contents, as the file vanished or
	// changed while a live home was being read (a pre-copy): the next
	// delta removes it on the receiving side, and sends it again if it
	// is still there.
	stale bool
}

// Archive is a scanned home, or the changes to one, ready to be written
// (twice if need be: its size is known before its bytes). The home of a
// Scan must not change until the end of WriteTo: the move holds it. A
// live archive (PreCopy, Changes(false)) is read while the user works.
type Archive struct {
	login   string
	home    string // absolute
	entries []*entry
	files   int
	bytes   int64

	kind  kind
	token string // the move id of format 2
	live  bool   // files may vanish or change while it is read
	// state is what the receiving node's staging directory holds once
	// this archive is applied: the entries of the home scanned for it.
	state   []*entry
	ops     []byte // delta and final: renames, then removals
	renamed int
	removed int
}

// Entries is the number of files, directories and links in the archive.
func (a *Archive) Entries() int { return len(a.entries) }

// Bytes is the total size of the files.
func (a *Archive) Bytes() int64 { return a.bytes }

// Scan lists the home of login at home (absolute, clean; a missing home is
// an empty archive). Refused: a symlink other than ~/.dovecot.sieve
// pointing into ~/sieve/, anything but directories and regular files,
// more than the limits. Skipped: the contents of tmp/ directories (maildir
// and sieve/ writes in progress; the hold ended them) and dotlocks.
func Scan(login, home string, lim Limits) (*Archive, error) {
	return scan(login, home, lim, false)
}

// PreCopy scans the home of login while the user keeps working, for the
// pre-copy of move id token (NewMoveID): a file or directory that
// vanishes meanwhile is skipped, one that vanishes or changes while it is
// sent goes as zeros and is marked stale (Changes sends it again).
func PreCopy(login, home, token string, lim Limits) (*Archive, error) {
	if !validToken(token) {
		return nil, errors.New("move: bad move id")
	}
	a, err := scan(login, home, lim, true)
	if err != nil {
		return nil, err
	}
	a.kind, a.token = kindPre, token
	return a, nil
}

func scan(login, home string, lim Limits, live bool) (*Archive, error) {
	lim = lim.withDefaults()
	a := &Archive{login: login, home: home, live: live}
	root, err := os.OpenRoot(home)
	if errors.Is(err, fs.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("move: open home: %w", err)
	}
	defer root.Close()
	if fi, err := os.Lstat(home); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("move: home %s is not a directory (a symlink?)", home)
	}
	if err := a.scanDir(root, ".", 0, lim); err != nil {
		return nil, err
	}
	a.state = a.entries
	return a, nil
}

func (a *Archive) scanDir(root *os.Root, dir string, depth int, lim Limits) error {
	if depth > maxDepth {
		return fmt.Errorf("move: %s: deeper than %d levels", dir, maxDepth)
	}
	f, err := root.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|noFollow, 0)
	if err != nil {
		if a.live && (gone(err) || errors.Is(err, syscall.ELOOP)) {
			return nil // removed meanwhile (a folder deleted or renamed)
		}
		return fmt.Errorf("move: open %s: %w", dir, err)
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	if err != nil {
		if a.live && gone(err) {
			return nil
		}
		return fmt.Errorf("move: list %s: %w", dir, err)
	}
	// tmp/ keeps only writes that never finished (deliveries and ManageSieve
	// uploads drained by the hold): its directory is sent, not its files.
	skipFiles := path.Base(dir) == "tmp"
	for _, de := range des {
		rel := path.Join(dir, de.Name())
		if err := checkRel(rel); err != nil {
			return fmt.Errorf("move: %w", err)
		}
		// fstatat in the directory opened: no walk from the home's root
		// per file (a third of a held scan's time).
		var st unix.Stat_t
		err := withFd(f, func(fd int) error { return unix.Fstatat(fd, de.Name(), &st, unix.AT_SYMLINK_NOFOLLOW) })
		if err != nil {
			if a.live && gone(err) {
				continue // expunged, or renamed for its flags: seen under its new name or not at all
			}
			return fmt.Errorf("move: stat %s: %w", rel, err)
		}
		fi := statInfo{&st}
		e := &entry{rel: rel, mtime: fi.ModTime()}
		switch t := fi.Mode().Type(); {
		case t == fs.ModeDir:
			e.mode = fs.ModeDir
		case t == 0:
			// courriel-state describes this node's inodes and directory
			// stamps: it never matches on the new node, so it is not sent.
			if skipFiles || strings.HasSuffix(de.Name(), ".lock") || de.Name() == "courriel-state" {
				continue
			}
			if fi.Size() > lim.MaxFileSize {
				return fmt.Errorf("move: %s: %d bytes, more than %d", rel, fi.Size(), lim.MaxFileSize)
			}
			e.size = fi.Size()
			a.files++
			a.bytes += e.size
			if a.bytes > lim.MaxTotal {
				return fmt.Errorf("move: the home holds more than %d bytes", lim.MaxTotal)
			}
		case t == fs.ModeSymlink:
			target, err := root.Readlink(rel)
			if err != nil {
				if a.live && gone(err) {
					continue
				}
				return fmt.Errorf("move: %w", err)
			}
			if err := checkLink(rel, target); err != nil {
				return fmt.Errorf("move: %w; move it away or fix it first", err)
			}
			e.mode, e.link = fs.ModeSymlink, target
		default:
			return fmt.Errorf("move: %s is a %v, not a file or directory", rel, t)
		}
		a.entries = append(a.entries, e)
		if len(a.entries) > lim.MaxEntries {
			return fmt.Errorf("move: the home holds more than %d entries", lim.MaxEntries)
		}
		if e.mode == fs.ModeDir {
			if err := a.scanDir(root, rel, depth+1, lim); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkRel accepts a path inside the home: relative, clean, no empty, "."
// or ".." component, no control byte, bounded lengths and depth.
func checkRel(rel string) error {
	if rel == "" || len(rel) > maxPathLen || !fs.ValidPath(rel) || rel == "." {
		return fmt.Errorf("bad path %q", rel)
	}
	comps := strings.Split(rel, "/")
	if len(comps) > maxDepth+1 {
		return fmt.Errorf("path %q: too deep", rel)
	}
	for _, c := range comps {
		if len(c) > maxNameLen {
			return fmt.Errorf("path %q: a name longer than %d bytes", rel, maxNameLen)
		}
	}
	for i := 0; i < len(rel); i++ {
		if b := rel[i]; b < 0x20 || b == 0x7f || b == '\\' {
			return fmt.Errorf("path %q: control byte or backslash", rel)
		}
	}
	return nil
}

// activeLink and scriptDir are Pigeonhole's layout (sieve/scripts).
const (
	activeLink = ".dovecot.sieve"
	scriptDir  = "sieve"
)

// checkLink accepts the one symlink a home may hold: ~/.dovecot.sieve
// naming a script in ~/sieve/ (relative, one name).
func checkLink(rel, target string) error {
	if rel != activeLink {
		return fmt.Errorf("symlink %s: only %s may be a link", rel, activeLink)
	}
	name, ok := strings.CutPrefix(target, scriptDir+"/")
	if !ok || name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || checkRel(target) != nil {
		return fmt.Errorf("symlink %s -> %q: not a script in %s/", rel, target, scriptDir)
	}
	return nil
}

// Size is the exact length of the stream WriteTo writes.
func (a *Archive) Size() (int64, error) {
	var c countingWriter
	if err := a.write(&c, nil); err != nil {
		return 0, err
	}
	return c.n, nil
}

// WriteTo writes the stream. A file whose size changed since Scan is an
// error (the receiver then refuses the short or long stream).
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	root, err := os.OpenRoot(a.home)
	if err != nil && !(errors.Is(err, fs.ErrNotExist) && len(a.entries) == 0) {
		return 0, fmt.Errorf("move: open home: %w", err)
	}
	if root != nil {
		defer root.Close()
	}
	c := &countingWriter{w: w}
	err = a.write(c, root)
	return c.n, err
}

// write writes the stream to w with the files' contents from root, or
// zeros when root is nil (to count its size).
func (a *Archive) write(w io.Writer, root *os.Root) error {
	tw := tar.NewWriter(w)
	meta := func(name, body string) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o600, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.WriteString(tw, body)
		return err
	}
	head := formatLine + "\nlogin " + a.login + "\n"
	if a.kind != kindFull {
		head = formatLine2 + "\nlogin " + a.login + "\n" + kindNames[a.kind] + " " + a.token + "\n"
	}
	if err := meta(headerName, head); err != nil {
		return fmt.Errorf("move: archive: %w", err)
	}
	sum := newDigest()
	if a.kind == kindDelta || a.kind == kindFinal {
		if err := meta(opsName, string(a.ops)); err != nil {
			return fmt.Errorf("move: archive: %w", err)
		}
		sum.h.Write(a.ops)
	}
	for _, e := range a.entries {
		h := &tar.Header{Name: homePrefix + e.rel, ModTime: e.mtime, Format: tar.FormatPAX}
		switch e.mode {
		case fs.ModeDir:
			h.Typeflag, h.Mode, h.Name = tar.TypeDir, 0o700, h.Name+"/"
		case fs.ModeSymlink:
			h.Typeflag, h.Mode, h.Linkname = tar.TypeSymlink, 0o777, e.link
		default:
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o600, e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("move: archive %s: %w", e.rel, err)
		}
		sum.entry(e.rel, h.Typeflag, e.link)
		if e.mode != 0 {
			continue
		}
		if err := a.copyFile(io.MultiWriter(tw, sum.h), root, e); err != nil {
			return err
		}
	}
	if err := meta(trailerName, trailerBody(len(a.entries), a.bytes, sum.h.Sum(nil))); err != nil {
		return fmt.Errorf("move: archive: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("move: archive: %w", err)
	}
	return nil
}

// copyFile writes the e.size bytes of e: exactly that many, whatever
// happens to a live home's file meanwhile (the size was announced).
func (a *Archive) copyFile(w io.Writer, root *os.Root, e *entry) error {
	if root == nil {
		_, err := io.CopyN(w, zeros{}, e.size)
		return err
	}
	// stale sends zeros in its place: the file vanished or changed after
	// the scan (a flag rename, an expunge, a rewrite), or while read.
	stale := func() error {
		e.stale = true
		_, err := io.CopyN(w, zeros{}, e.size)
		return err
	}
	f, err := root.OpenFile(e.rel, os.O_RDONLY|noFollow, 0)
	if err != nil {
		if a.live && (gone(err) || errors.Is(err, syscall.ELOOP)) {
			return stale()
		}
		return fmt.Errorf("move: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.size {
		if a.live && err == nil {
			return stale()
		}
		return fmt.Errorf("move: %s changed during the move", e.rel)
	}
	if a.live && !fi.ModTime().Equal(e.mtime) {
		return stale()
	}
	n, err := io.CopyN(w, f, e.size)
	if err != nil {
		if a.live && errors.Is(err, io.EOF) { // truncated meanwhile
			_, err := io.CopyN(w, zeros{}, e.size-n)
			e.stale = true
			return err
		}
		return fmt.Errorf("move: read %s: %w", e.rel, err)
	}
	if a.live {
		if fi, err := f.Stat(); err != nil || !fi.ModTime().Equal(e.mtime) {
			e.stale = true // written to while read
		}
	}
	return nil
}

// gone: the name vanished, or a directory on its path became something
// else (renamed away meanwhile).
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// digest hashes the home part of the stream, as both ends see it.
type digest struct{ h hash.Hash }

func newDigest() *digest { return &digest{h: sha256.New()} }

func (d *digest) entry(rel string, typ byte, link string) {
	d.h.Write([]byte(rel))
	d.h.Write([]byte{0, typ})
	d.h.Write([]byte(link))
	d.h.Write([]byte{0})
}

func trailerBody(entries int, bytes int64, sum []byte) string {
	return fmt.Sprintf("entries %020d\nbytes %020d\nsha256 %x\n", entries, bytes, sum)
}

func parseTrailer(b []byte) (entries int, bytes int64, sum string, err error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) != 4 || lines[3] != "" {
		return 0, 0, "", errors.New("bad trailer")
	}
	e, ok1 := strings.CutPrefix(lines[0], "entries ")
	n, ok2 := strings.CutPrefix(lines[1], "bytes ")
	s, ok3 := strings.CutPrefix(lines[2], "sha256 ")
	en, err1 := strconv.Atoi(e)
	bn, err2 := strconv.ParseInt(n, 10, 64)
	if !ok1 || !ok2 || !ok3 || err1 != nil || err2 != nil || len(s) != 64 {
		return 0, 0, "", errors.New("bad trailer")
	}
	return en, bn, s, nil
}

type countingWriter struct {
	w io.Writer // nil: discard
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.w == nil {
		c.n += int64(len(p))
		return len(p), nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

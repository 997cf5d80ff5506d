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
	"time"
)

// The stream a move sends (a POSIX tar, PAX format, so that names of any
// length and nanosecond mtimes pass):
//
//	courriel-move/header    "courriel-home 1\nlogin <login>\n"
//	home/<rel>              every directory, regular file and the
//	                        ~/.dovecot.sieve link of the home, parents first
//	courriel-move/trailer   "entries N\nbytes N\nsha256 HEX\n" (fixed width)
//
// The trailer counts the home's entries and hashes their names, types,
// link targets and contents: a stream cut at a member boundary, or
// changed on the way, is refused. Owners and modes are not sent: the
// receiving node takes them from its directory and from delivery's rules.
const (
	headerName  = "courriel-move/header"
	trailerName = "courriel-move/trailer"
	homePrefix  = "home/"
	formatLine  = "courriel-home 1"
	maxMetaSize = 1024
)

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
}

// Archive is a scanned home, ready to be written (twice if need be: its
// size is known before its bytes). The home must not change between Scan
// and the end of WriteTo: the move holds it.
type Archive struct {
	login   string
	home    string // absolute
	entries []entry
	files   int
	bytes   int64
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
	lim = lim.withDefaults()
	a := &Archive{login: login, home: home}
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
	return a, nil
}

func (a *Archive) scanDir(root *os.Root, dir string, depth int, lim Limits) error {
	if depth > maxDepth {
		return fmt.Errorf("move: %s: deeper than %d levels", dir, maxDepth)
	}
	f, err := root.Open(dir)
	if err != nil {
		return fmt.Errorf("move: open %s: %w", dir, err)
	}
	des, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
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
		fi, err := root.Lstat(rel)
		if err != nil {
			return fmt.Errorf("move: %w", err)
		}
		e := entry{rel: rel, mtime: fi.ModTime()}
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
	if err := meta(headerName, formatLine+"\nlogin "+a.login+"\n"); err != nil {
		return fmt.Errorf("move: archive: %w", err)
	}
	sum := newDigest()
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
		if err := copyFile(io.MultiWriter(tw, sum.h), root, e); err != nil {
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

func copyFile(w io.Writer, root *os.Root, e entry) error {
	if root == nil {
		_, err := io.CopyN(w, zeros{}, e.size)
		return err
	}
	f, err := root.OpenFile(e.rel, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return fmt.Errorf("move: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() != e.size {
		return fmt.Errorf("move: %s changed during the move", e.rel)
	}
	if _, err := io.CopyN(w, f, e.size); err != nil {
		return fmt.Errorf("move: read %s: %w", e.rel, err)
	}
	return nil
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

package maildirsize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FileName is the quota file in the maildir's root.
const FileName = "maildirsize"

// Limits are a maildir's quota; zero is no limit.
type Limits struct {
	Bytes    int64
	Messages int64
}

// Set reports whether any limit applies.
func (l Limits) Set() bool { return l.Bytes > 0 || l.Messages > 0 }

// String is the file's first line.
func (l Limits) String() string {
	var parts []string
	if l.Bytes > 0 {
		parts = append(parts, strconv.FormatInt(l.Bytes, 10)+"S")
	}
	if l.Messages > 0 {
		parts = append(parts, strconv.FormatInt(l.Messages, 10)+"C")
	}
	if len(parts) == 0 {
		return "0S"
	}
	return strings.Join(parts, ",")
}

// Usage is what a maildir holds.
type Usage struct {
	Bytes    int64
	Messages int64
}

// Fits reports whether adding a message of size bytes stays within l.
func (u Usage) Fits(l Limits, size int64) bool {
	return (l.Bytes <= 0 || u.Bytes+size <= l.Bytes) && (l.Messages <= 0 || u.Messages+1 <= l.Messages)
}

// Owner is who a recomputed file belongs to (uid -1: leave as created).
type Owner struct{ UID, GID int }

var errNotRegular = errors.New("maildirsize: not a regular file")

// Maildir++: a file larger than this is recomputed; so is one with
// removals older than staleAfter.
const (
	maxFileSize = 5120
	staleAfter  = 15 * time.Minute
)

// ParseLimits reads a first line: "1000000S,1000C", "1000000S", "1000C".
func ParseLimits(line string) (Limits, error) {
	var l Limits
	line = strings.TrimSpace(line)
	if line == "" {
		return l, nil
	}
	for _, part := range strings.Split(line, ",") {
		part = strings.TrimSpace(part)
		if len(part) < 2 {
			return Limits{}, fmt.Errorf("maildirsize: bad limit %q", part)
		}
		n, err := strconv.ParseInt(part[:len(part)-1], 10, 64)
		if err != nil || n < 0 {
			return Limits{}, fmt.Errorf("maildirsize: bad limit %q", part)
		}
		switch part[len(part)-1] {
		case 'S':
			l.Bytes = n
		case 'C':
			l.Messages = n
		default:
			return Limits{}, fmt.Errorf("maildirsize: bad limit %q", part)
		}
	}
	return l, nil
}

// parse reads a whole file: its limits, the sum of its lines, and whether
// any line removes something.
func parse(b []byte) (Limits, Usage, bool, error) {
	first, rest, _ := bytes.Cut(b, []byte("\n"))
	l, err := ParseLimits(string(first))
	if err != nil {
		return Limits{}, Usage{}, false, err
	}
	var u Usage
	removals := false
	for _, line := range bytes.Split(rest, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return Limits{}, Usage{}, false, fmt.Errorf("maildirsize: bad line %q", line)
		}
		s, err1 := strconv.ParseInt(f[0], 10, 64)
		c, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			return Limits{}, Usage{}, false, fmt.Errorf("maildirsize: bad line %q", line)
		}
		removals = removals || s < 0 || c < 0
		u.Bytes += s
		u.Messages += c
	}
	return l, u, removals, nil
}

// Read returns the maildir's usage under limits, computing the file afresh
// when the specification says so (see the package doc).
func Read(root *os.Root, limits Limits, owner Owner, now time.Time) (Usage, error) {
	b, mtime, err := readFile(root)
	if err == nil && len(b) <= maxFileSize {
		l, u, removals, perr := parse(b)
		if perr == nil && l == limits && !(removals && now.Sub(mtime) > staleAfter) && u.Bytes >= 0 && u.Messages >= 0 {
			return u, nil
		}
	}
	// Missing, stale, unreadable or not a plain file: counted afresh (the
	// rename replaces a symlink, never its target; a real I/O problem shows
	// again when the new file is written).
	return Recalculate(root, limits, owner)
}

func readFile(root *os.Root) ([]byte, time.Time, error) {
	f, err := root.OpenFile(FileName, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, errNotRegular
	}
	// One byte more than the bound tells "too large, recompute".
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	return b, fi.ModTime(), err
}

// Recalculate counts every message of the maildir (INBOX and every
// Maildir++ folder, new/ and cur/) and writes the file afresh. A name
// starting with ".." is no folder (Dovecot's "..DOVECOT-TRASHED", a
// deleted folder on its way out) and is not counted.
func Recalculate(root *os.Root, limits Limits, owner Owner) (Usage, error) {
	var u Usage
	folders := []string{"."}
	ents, err := readDir(root, ".")
	if err != nil {
		return Usage{}, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && !strings.HasPrefix(e.Name(), "..") && e.IsDir() {
			folders = append(folders, e.Name())
		}
	}
	for _, folder := range folders {
		f, err := FolderUsage(root, folder)
		if err != nil {
			return Usage{}, err
		}
		u.Bytes += f.Bytes
		u.Messages += f.Messages
	}
	content := fmt.Sprintf("%s\n%d %d\n", limits, u.Bytes, u.Messages)
	if err := writeAtomically(root, []byte(content), owner); err != nil {
		return Usage{}, err
	}
	return u, nil
}

// FolderUsage counts the messages of one folder (dir, relative to the
// maildir's root: "." for INBOX) in new/ and cur/, their sizes read from
// their names (",S=") or else their files.
func FolderUsage(root *os.Root, dir string) (Usage, error) {
	var u Usage
	for _, sub := range []string{"new", "cur"} {
		ents, err := readDir(root, dir+"/"+sub)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Usage{}, err
		}
		for _, e := range ents {
			if e.Name()[0] == '.' || !e.Type().IsRegular() {
				continue
			}
			size, ok := sizeFromName(e.Name())
			if !ok {
				fi, err := e.Info()
				if err != nil {
					continue // expunged meanwhile
				}
				size = fi.Size()
			}
			u.Bytes += size
			u.Messages++
		}
	}
	return u, nil
}

func readDir(root *os.Root, name string) ([]os.DirEntry, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// sizeFromName reads Dovecot's ",S=<size>" from a maildir file name.
func sizeFromName(name string) (int64, bool) {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	for _, f := range strings.Split(name, ",")[1:] {
		if v, ok := strings.CutPrefix(f, "S="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil && n >= 0
		}
	}
	return 0, false
}

func writeAtomically(root *os.Root, content []byte, owner Owner) error {
	tmp := fmt.Sprintf("tmp/%s.%d.%d", FileName, os.Getpid(), time.Now().UnixNano())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if owner.UID >= 0 {
		if err := f.Chown(owner.UID, owner.GID); err != nil {
			f.Close()
			root.Remove(tmp)
			return err
		}
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, FileName)
	}
	if err != nil {
		root.Remove(tmp)
	}
	return err
}

// Add appends a change of usage (one message of size bytes: Add(root,
// size, 1); a removal: negative values) with one O_APPEND write, as every
// Maildir++ writer does, so concurrent writers never lose each other's
// lines. A missing file is left missing: the next Read computes it.
func Add(root *os.Root, bytes, messages int64) error {
	f, err := root.OpenFile(FileName, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d %d\n", bytes, messages)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

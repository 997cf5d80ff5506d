package sieve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"

	"courriel/internal/atomicfile"
)

// DuplicateFile is a DuplicateStore in one file, meant for the user's home
// directory (courriel's ~/.courriel.duplicates before it shared
// Pigeonhole's database, see filter/dupes.go): a line per id, "<64 hex
// digits> <expiry, Unix seconds>". The file is hostile input (the user
// owns it): it is read up to MaxSize, and a line that is not exactly that
// form is skipped. Commit rewrites it whole under an exclusive lock (a
// ".lock" file beside it, flock; neither file is followed when it is a
// symbolic link), expired marks dropped and at most
// MaxEntries kept (those expiring last), through a temporary file that is
// fsynced and renamed over it, the directory fsynced after.
type DuplicateFile struct {
	Path       string
	MaxEntries int   // default 10000
	MaxSize    int64 // octets read at most; default 1 MiB
}

const duplicateLineLen = 64 + 1 + 20 + 1

func (f *DuplicateFile) limits() (int, int64) {
	n, size := f.MaxEntries, f.MaxSize
	if n <= 0 {
		n = 10000
	}
	if size <= 0 {
		size = 1 << 20
	}
	return n, size
}

// read returns the unexpired marks of the file; a missing file has none.
func (f *DuplicateFile) read(now time.Time) (map[string]int64, error) {
	_, maxSize := f.limits()
	marks := map[string]int64{}
	// O_NOFOLLOW: the user owns the directory and could link the file
	// to one they cannot read.
	file, err := os.OpenFile(f.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return marks, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sieve: reading duplicate marks: %w", err)
	}
	defer file.Close()
	if st, err := file.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("sieve: duplicate marks %s is not a regular file", f.Path)
	}
	sc := bufio.NewScanner(io.LimitReader(file, maxSize))
	sc.Buffer(make([]byte, 0, 128), 128)
	for sc.Scan() {
		id, exp, ok := parseDuplicateLine(sc.Bytes())
		if ok && exp > now.Unix() {
			marks[id] = exp
		}
	}
	// A line too long for the buffer ends the scan: what came before is
	// kept, the rest is lost, as for a truncated file.
	return marks, nil
}

func parseDuplicateLine(b []byte) (string, int64, bool) {
	id, rest, ok := bytes.Cut(b, []byte(" "))
	if !ok || len(id) != 64 || len(rest) == 0 || len(rest) > 19 {
		return "", 0, false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", 0, false
		}
	}
	exp, err := strconv.ParseInt(string(rest), 10, 64)
	if err != nil || exp <= 0 {
		return "", 0, false
	}
	return string(id), exp, true
}

// Seen implements DuplicateStore.
func (f *DuplicateFile) Seen(id DuplicateID, now time.Time) (bool, error) {
	marks, err := f.read(now)
	if err != nil {
		return false, err
	}
	_, ok := marks[id.File]
	return ok, nil
}

// Commit implements DuplicateStore: the marks of a delivery that
// succeeded, merged into the file.
func (f *DuplicateFile) Commit(marks []DuplicateMark, now time.Time) error {
	if len(marks) == 0 {
		return nil
	}
	maxEntries, _ := f.limits()
	lock, err := os.OpenFile(f.Path+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("sieve: locking duplicate marks: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("sieve: locking duplicate marks: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	cur, err := f.read(now)
	if err != nil {
		return err
	}
	for _, m := range marks {
		if _, _, ok := parseDuplicateLine([]byte(m.ID.File + " 1")); !ok {
			continue // not an id this package made
		}
		if m.Expires.After(now) {
			cur[m.ID.File] = m.Expires.Unix()
		}
	}
	type entry struct {
		id  string
		exp int64
	}
	list := make([]entry, 0, len(cur))
	for id, exp := range cur {
		list = append(list, entry{id, exp})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].exp != list[j].exp {
			return list[i].exp > list[j].exp
		}
		return list[i].id < list[j].id
	})
	if len(list) > maxEntries {
		list = list[:maxEntries]
	}
	var b bytes.Buffer
	b.Grow(len(list) * duplicateLineLen)
	for _, e := range list {
		fmt.Fprintf(&b, "%s %d\n", e.id, e.exp)
	}
	if err := atomicfile.Write(f.Path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("sieve: writing duplicate marks: %w", err)
	}
	return nil
}

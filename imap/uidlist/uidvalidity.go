package uidlist

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// UIDValidityFileName is Dovecot's per-maildir UIDVALIDITY counter, in the
// maildir root: the last value given out, as 8 hex digits. Beside it an
// empty companion file "dovecot-uidvalidity.<8 hex digits>" names the same
// value; taking the next value is a rename of the companion to the next
// name, which only one process can win, so no lock is needed.
const UIDValidityFileName = "dovecot-uidvalidity"

// uidValidityRetries bounds the rescans when other processes keep winning
// the rename (Dovecot retries ten times too).
const uidValidityRetries = 10

// NextUIDValidity returns a UIDVALIDITY for a new folder (or one whose
// uidlist was lost) of the maildir whose root is root, and records it in the
// counter files so that neither courriel nor Dovecot gives it out again.
// The value is greater than floor, than every value given out before, and
// at least now's Unix time: folders created by older versions (and by
// Dovecot without the counter) took the time as UIDVALIDITY, and a folder
// recreated under the same name must get a greater one (RFC 9051 §2.3.1.1).
// When the counter cannot be used the time-based value is returned: failing
// a SELECT for it would be worse.
func NextUIDValidity(root *os.Root, now time.Time, floor uint32, uid, gid int) uint32 {
	base := uint32(now.Unix())
	if base <= floor {
		base = floor + 1
	}
	next := func(cur uint32) uint32 { return max(cur+1, base) }
	if cur, ok := readCounter(root); ok {
		if v := next(cur); renameCompanion(root, cur, v) == nil {
			writeCounter(root, v, uid, gid)
			return v
		}
	}
	// The main file is missing, broken or stale: trust the companions.
	for range uidValidityRetries {
		cur, ok, err := scanCompanions(root)
		if err != nil {
			return base
		}
		if !ok {
			v := base
			f, err := root.OpenFile(companion(v), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o444)
			if errors.Is(err, fs.ErrExist) {
				continue // another process just made one: take it from there
			}
			if err != nil {
				return base
			}
			f.Close()
			// Our O_EXCL won only if nobody holds this name now, but
			// someone may have created it, given it out and renamed it
			// to a greater value already (Dovecot lives with that race):
			// then the value is taken, and the greater one is the
			// counter.
			if hi, _, err := scanCompanions(root); err == nil && hi > v {
				_ = root.Remove(companion(v))
				continue
			}
			if uid >= 0 {
				_ = root.Lchown(companion(v), uid, gid)
			}
			writeCounter(root, v, uid, gid)
			return v
		}
		v := next(cur)
		err = renameCompanion(root, cur, v)
		if err == nil {
			writeCounter(root, v, uid, gid)
			return v
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return base
		}
	}
	return base
}

func companion(v uint32) string { return fmt.Sprintf("%s.%08x", UIDValidityFileName, v) }

func renameCompanion(root *os.Root, from, to uint32) error {
	return root.Rename(companion(from), companion(to))
}

func readCounter(root *os.Root) (uint32, bool) {
	f, err := root.Open(UIDValidityFileName)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var buf [8]byte
	n, _ := io.ReadFull(f, buf[:])
	v, err := strconv.ParseUint(strings.TrimRight(string(buf[:n]), "\n\x00 "), 16, 32)
	if err != nil || v == 0 {
		return 0, false
	}
	return uint32(v), true
}

// writeCounter records v in the main file, as Dovecot does: 8 hex digits
// written over the start of the file.
func writeCounter(root *os.Root, v uint32, uid, gid int) {
	f, err := root.OpenFile(UIDValidityFileName, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	if uid >= 0 {
		_ = f.Chown(uid, gid)
	}
	_, _ = f.WriteAt(fmt.Appendf(nil, "%08x", v), 0)
}

// scanCompanions returns the greatest companion's value, removing a smaller
// duplicate left by a race, as Dovecot does.
func scanCompanions(root *os.Root) (uint32, bool, error) {
	d, err := root.Open(".")
	if err != nil {
		return 0, false, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return 0, false, err
	}
	var lo, hi uint32
	found := false
	for _, n := range names {
		hex, ok := strings.CutPrefix(n, UIDValidityFileName+".")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(hex, 16, 32)
		if err != nil || v == 0 {
			continue
		}
		if !found || uint32(v) < lo {
			lo = uint32(v)
		}
		if !found || uint32(v) > hi {
			hi = uint32(v)
		}
		found = true
	}
	if found && lo != hi {
		_ = root.Remove(companion(lo))
	}
	return hi, found, nil
}

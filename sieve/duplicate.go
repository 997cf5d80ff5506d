package sieve

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// duplicate (RFC 7352): whether a message with the same id (its
// Message-ID, another header's value, or :uniqueid) came within a period.
// Runs only read the DuplicateStore; the ids to remember are in
// Result.DuplicateMarks, committed by the deliverer once the message is
// stored, so that a failed delivery marks nothing.

var duplicateTests = map[string]spec{
	"duplicate": {ext: "duplicate", tags: map[string]tagSpec{
		"handle": {param: vString}, "header": {param: vString, group: "id"}, "uniqueid": {param: vString, group: "id"},
		"seconds": {param: vNumber}, "last": {}}},
}

// Pigeonhole's sieve_duplicate_default_period and max_period.
const (
	duplicateDefaultPeriod = 12 * time.Hour
	duplicateMaxPeriod     = 48 * time.Hour
)

// DuplicateStore remembers the ids of messages delivered.
type DuplicateStore interface {
	// Seen says whether id was marked and its mark has not expired at now.
	Seen(id DuplicateID, now time.Time) (bool, error)
	// Commit records marks, each replacing an earlier mark of its id.
	Commit(marks []DuplicateMark, now time.Time) error
}

// DuplicateID is a duplicate test's id (its handle, value and :last), as
// each store keys it.
type DuplicateID struct {
	// Pigeonhole is Pigeonhole's id (ext_duplicate_hash): the MD5 sum,
	// 16 bytes, of "sieve duplicate", "0" with :last or "+" without,
	// "h-" and the handle or "default", then the value. Dovecot's
	// duplicate database (~/.dovecot.lda-dupes) keys its records by it.
	Pigeonhole string
	// File is courriel's own id, 64 hex digits: DuplicateFile's key.
	File string
}

// DuplicateMark is an id to remember until Expires.
type DuplicateMark struct {
	ID      DuplicateID
	Expires time.Time
	handle  *string // for the oracle tests' listing, as sieve-test's
	last    bool
}

func (s *Script) checkDuplicate(t *Test, n *node) *Error {
	if a, ok := n.tags["header"]; ok {
		if h := a.Strings[0]; h != "" && !s.hasVariables(h) && !validFieldName(h) {
			return errAt(a.Pos, "duplicate: invalid header field name \"%s\"", h)
		}
	}
	return nil
}

// duplicateID is the stored id: a hash of the handle, the value and
// whether :last was given (a :last test measures from the last message,
// the others from the first, so they keep marks apart as Pigeonhole does).
func duplicateID(handle *string, value string, last bool) DuplicateID {
	return DuplicateID{Pigeonhole: pigeonholeDuplicateID(handle, value, last), File: fileDuplicateID(handle, value, last)}
}

// pigeonholeDuplicateID is Pigeonhole 0.5's ext_duplicate_hash.
func pigeonholeDuplicateID(handle *string, value string, last bool) string {
	h := md5.New()
	h.Write([]byte("sieve duplicate"))
	if last {
		h.Write([]byte("0"))
	} else {
		h.Write([]byte("+"))
	}
	if handle != nil {
		h.Write([]byte("h-" + *handle))
	} else {
		h.Write([]byte("default"))
	}
	h.Write([]byte(value))
	return string(h.Sum(nil))
}

// fileDuplicateID is DuplicateFile's id, courriel's own.
func fileDuplicateID(handle *string, value string, last bool) string {
	h := sha256.New()
	if handle != nil {
		h.Write([]byte("h" + *handle))
	} else {
		h.Write([]byte("-"))
	}
	h.Write([]byte{0})
	h.Write([]byte(value))
	if last {
		h.Write([]byte{0, 1})
	} else {
		h.Write([]byte{0, 0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// storeCost is the work of asking the duplicate store (a file read).
const storeCost = 1 << 16

type dupCacheEntry struct {
	id  DuplicateID
	dup bool
}

func (r *runner) duplicateTest(t *Test, n *node) (bool, error) {
	var value string
	if a, ok := n.tags["uniqueid"]; ok {
		value = r.expand(a.Strings[0])
	} else {
		name := "Message-ID"
		if a, ok := n.tags["header"]; ok {
			name = r.expand(a.Strings[0])
		}
		vals := r.headerValues(name)
		if len(vals) == 0 {
			return false, nil // no id: never a duplicate, nothing to mark
		}
		value = strings.TrimSpace(unfold(vals[0]))
	}
	var handle *string
	if a, ok := n.tags["handle"]; ok {
		h := r.expand(a.Strings[0])
		handle = &h
	}
	_, last := n.tags["last"]
	period := duplicateDefaultPeriod
	if a, ok := n.tags["seconds"]; ok {
		period = time.Duration(min(a.Number, uint64(duplicateMaxPeriod/time.Second))) * time.Second
	}
	id := duplicateID(handle, value, last)
	// The same test twice in a run answers the same, as in Pigeonhole.
	r.budget.spend(len(r.dupChecked))
	for _, c := range r.dupChecked {
		if c.id == id {
			return c.dup, nil
		}
	}
	dup := false
	if r.opts.Duplicates != nil {
		r.budget.spend(storeCost)
		var err error
		if dup, err = r.opts.Duplicates.Seen(id, r.now); err != nil {
			return false, r.storeError(t.Pos, err)
		}
		if !dup && last {
			// a mark made without :last counts too
			if dup, err = r.opts.Duplicates.Seen(duplicateID(handle, value, false), r.now); err != nil {
				return false, r.storeError(t.Pos, err)
			}
		}
	}
	if !dup || last {
		r.dups = append(r.dups, DuplicateMark{ID: id, Expires: r.now.Add(period), handle: handle, last: last})
	}
	r.dupChecked = append(r.dupChecked, dupCacheEntry{id: id, dup: dup})
	return dup, nil
}

// storeError is the run's error for a DuplicateStore that failed: the
// store's error kept (Error.Err) for the caller to tell a failure that
// passes (an id locked by another delivery) from one that does not.
func (r *runner) storeError(p Pos, err error) error {
	e := r.errorf(p, "duplicate: %v", err).(*Error)
	e.Err = err
	return e
}
